"""Flat-sky pseudo-C_ell with NaMaster (pymaster): one workspace per (mask, bins), reused for every patch.

A NaMaster bin that holds no Fourier mode makes the coupling matrix singular, and GSL then
aborts the whole Python process (no exception to catch). Bins are therefore checked against the
patch's fundamental mode ``2 pi / L`` before pymaster sees them.

Patches are zero-padded (:data:`PAD_FACTOR`) before NaMaster sees them. NaMaster's flat-sky coupling is a sum
over the grid's own Fourier modes, one fundamental (60 on a 6 deg patch) apart, which is about the width of the
apodized mask's kernel: on the unpadded patch the binned theory of a spectrum with acoustic peaks comes out too
smooth, and the measured/theory ratio of the CMB label zig-zags by 5-10 % from bin to bin (the same on flat
Gaussian fields, so not a projection effect). On a grid four times finer in ell the ratio is 1 within the errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cmbml.common.flatsky import FlatGrid, check_bins


def apodized_mask(npix: int, side_deg: float, apodization_deg: float) -> np.ndarray:
    """Ones with a zeroed border of ``npix // 16`` pixels (at least one), then NaMaster C1 apodization."""
    import pymaster as nmt

    mask = np.ones((npix, npix))
    border = max(1, npix // 16)
    mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = 0, 0, 0, 0
    side = np.radians(side_deg)
    return nmt.mask_apodization_flat(mask, side, side, aposize=apodization_deg, apotype="C1")


PAD_FACTOR = 4
"""Each patch and its mask sit in a zero array this many times wider before NaMaster measures them."""


def zero_pad(maps: np.ndarray, factor: int) -> np.ndarray:
    """A map (n, n) in the corner of zeros (factor n, factor n): the same field, a finer Fourier grid."""
    n = maps.shape[-1]
    out = np.zeros(maps.shape[:-2] + (factor * n, factor * n))
    out[..., :n, :n] = maps
    return out


@dataclass
class FlatSpectra:
    """Pseudo-C_ell estimator for square patches that share a mask and bins.

    Parameters
    ----------
    grid : FlatGrid
        Patch geometry (after any cropping).
    edges : numpy.ndarray
        Bin edges in ell, checked against the grid's fundamental mode and Nyquist multipole.
    spin : int
        0 for one scalar map (an E or B map, or T); 2 for (Q, U) with B-mode purification.
    apodization_deg : float
        C1 apodization scale of the mask.
    spin0_name : str
        Name of the auto-spectrum a spin-0 field gives ("EE" for E maps, "BB" for B maps).
    pad_factor : int
        The patch and its mask are zero-padded to ``pad_factor`` times their side (:data:`PAD_FACTOR`; 1: none).
    """

    grid: FlatGrid
    edges: np.ndarray
    spin: int
    apodization_deg: float
    spin0_name: str = "TT"
    pad_factor: int = PAD_FACTOR

    def __post_init__(self):
        import pymaster as nmt

        check_bins(self.edges, self.grid, self.grid.ell_nyquist)  # against the patch itself, not the padding
        self.padded = FlatGrid(self.grid.npix * self.pad_factor, self.grid.pixel_arcmin)
        self.side_rad = np.radians(self.padded.side_deg)
        self.mask = zero_pad(apodized_mask(self.grid.npix, self.grid.side_deg, self.apodization_deg), self.pad_factor)
        self.bins = nmt.NmtBinFlat(self.edges[:-1], self.edges[1:])
        self.ell = self.bins.get_effective_ells()
        self._workspace = None

    @property
    def names(self) -> tuple[str, ...]:
        """The spectra :meth:`spectra` returns."""
        return (self.spin0_name,) if self.spin == 0 else ("EE", "EB", "BB")

    def field(self, maps: Sequence[np.ndarray]):
        """The NaMaster field of one patch: ``[map]`` for spin 0, ``[Q, U]`` (purified B) for spin 2."""
        import pymaster as nmt

        pad = self.pad_factor
        if self.spin == 0:
            return nmt.NmtFieldFlat(self.side_rad, self.side_rad, self.mask, [zero_pad(maps[0], pad)])
        return nmt.NmtFieldFlat(
            self.side_rad, self.side_rad, self.mask, [zero_pad(maps[0], pad), zero_pad(maps[1], pad)], purify_b=True
        )

    def workspace(self, field):
        import pymaster as nmt

        if self._workspace is None:  # depends only on mask, geometry and bins: computed once
            self._workspace = nmt.NmtWorkspaceFlat()
            self._workspace.compute_coupling_matrix(field, field, self.bins)
        return self._workspace

    def cross(self, field_a, field_b) -> dict[str, np.ndarray]:
        """Decoupled binned cross-spectra of two fields of :meth:`field` (the same mask): ``{spin0_name}`` for
        spin 0; for spin 2 ``{"EE", "EB", "BB"}``, E of ``a`` with E of ``b``, E of ``a`` with B of ``b``, B with B.
        The auto-spectrum when ``field_b is field_a``."""
        import pymaster as nmt

        w = self.workspace(field_a)
        cl = w.decouple_cell(nmt.compute_coupled_cell_flat(field_a, field_b, self.bins))
        if self.spin == 0:
            return {self.spin0_name: cl[0]}
        return {"EE": cl[0], "EB": cl[1], "BB": cl[3]}

    def spectra(self, maps: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Decoupled binned auto-spectra: ``{spin0_name}`` for spin 0, ``{"EE", "EB", "BB"}`` for spin 2."""
        field = self.field(maps)
        return self.cross(field, field)

    def binned_theory(self, cl_by_name: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Theory spectra (``cl[ell]``) through the same coupling and binning as the data.

        Spin 0 takes ``{spin0_name: cl}``; spin 2 takes ``{"EE": cl, "BB": cl}``. Call after :meth:`spectra`.
        """
        if self._workspace is None:
            raise RuntimeError("compute one spectrum first: the workspace is built from a field")
        first = next(iter(cl_by_name.values()))
        ells = np.arange(first.size, dtype=float)
        if self.spin == 0:
            coupled = self._workspace.couple_cell(ells, np.array([cl_by_name[self.spin0_name]]))
            return {self.spin0_name: self._workspace.decouple_cell(coupled)[0]}
        zero = np.zeros_like(first)
        coupled = self._workspace.couple_cell(ells, np.array([cl_by_name["EE"], zero, zero, cl_by_name["BB"]]))
        cl = self._workspace.decouple_cell(coupled)
        return {"EE": cl[0], "BB": cl[3]}
