"""Flat-sky pseudo-C_ell with NaMaster (pymaster): one workspace per (mask, bins), reused for every patch.

A NaMaster bin that holds no Fourier mode makes the coupling matrix singular, and GSL then
aborts the whole Python process (no exception to catch). Bins are therefore checked against the
patch's fundamental mode ``2 pi / L`` before pymaster sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def check_bins(edges: np.ndarray, side_rad: float, lmax: float) -> None:
    """Raise ``ValueError`` unless every bin is at least one fundamental mode wide and below lmax."""
    fundamental = 2.0 * np.pi / side_rad
    widths = np.diff(edges)
    if edges.size < 2:
        raise ValueError("need at least one bin")
    if np.any(widths < fundamental * (1 - 1e-9)):
        bad = np.flatnonzero(widths < fundamental).tolist()
        raise ValueError(f"bins {bad} are narrower than the patch's fundamental multipole {fundamental:.1f} "
                         f"(2 pi / {np.degrees(side_rad):.2f} deg): NaMaster would abort on an empty bin")
    if edges[0] < 0 or edges[-1] > lmax + 1e-9:
        raise ValueError(f"bins must lie within 0 <= ell <= {lmax:g}; got {edges[0]:g} .. {edges[-1]:g}")


def apodized_mask(npix: int, side_deg: float, apodization_deg: float) -> np.ndarray:
    """Ones with a zeroed border of ``npix // 16`` pixels (at least one), then NaMaster C1 apodization."""
    import pymaster as nmt

    mask = np.ones((npix, npix))
    border = max(1, npix // 16)
    mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = 0, 0, 0, 0
    side = np.radians(side_deg)
    return nmt.mask_apodization_flat(mask, side, side, aposize=apodization_deg, apotype="C1")


@dataclass
class FlatSpectra:
    """Pseudo-C_ell estimator for square patches that share a mask and bins.

    Parameters
    ----------
    npix, side_deg : patch geometry (after any cropping)
    edges : bin edges in ell (checked against the fundamental mode)
    spin : 0 for scalar maps (E or B maps, T); 2 for (Q, U) with B-mode purification
    apodization_deg : C1 apodization scale of the mask
    """

    npix: int
    side_deg: float
    edges: np.ndarray
    spin: int
    apodization_deg: float

    def __post_init__(self):
        import pymaster as nmt

        self.side_rad = np.radians(self.side_deg)
        nyquist = np.pi * self.npix / self.side_rad
        check_bins(np.asarray(self.edges, dtype=float), self.side_rad, nyquist)
        self.mask = apodized_mask(self.npix, self.side_deg, self.apodization_deg)
        self.bins = nmt.NmtBinFlat(self.edges[:-1], self.edges[1:])
        self.ell = self.bins.get_effective_ells()
        self._workspace = None

    def _field(self, maps: Sequence[np.ndarray]):
        import pymaster as nmt

        if self.spin == 0:
            return nmt.NmtFieldFlat(self.side_rad, self.side_rad, self.mask, [maps[0]])
        return nmt.NmtFieldFlat(self.side_rad, self.side_rad, self.mask, [maps[0], maps[1]], purify_b=True)

    def workspace(self, field):
        import pymaster as nmt

        if self._workspace is None:  # depends only on mask, geometry and bins: computed once
            self._workspace = nmt.NmtWorkspaceFlat()
            self._workspace.compute_coupling_matrix(field, field, self.bins)
        return self._workspace

    def spectra(self, maps: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Decoupled binned auto-spectra: ``{"TT"}`` for spin 0 or ``{"EE", "EB", "BB"}`` for spin 2."""
        import pymaster as nmt

        field = self._field(maps)
        w = self.workspace(field)
        cl = w.decouple_cell(nmt.compute_coupled_cell_flat(field, field, self.bins))
        if self.spin == 0:
            return {"TT": cl[0]}
        return {"EE": cl[0], "EB": cl[1], "BB": cl[3]}

    def binned_theory(self, cl_by_name: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Theory spectra (``cl[ell]``) through the same coupling and binning as the data.

        Spin 0 takes ``{"TT": cl}``; spin 2 takes ``{"EE": cl, "BB": cl}``. Call after :meth:`spectra`.
        """
        if self._workspace is None:
            raise RuntimeError("compute one spectrum first: the workspace is built from a field")
        first = next(iter(cl_by_name.values()))
        ells = np.arange(first.size, dtype=float)
        if self.spin == 0:
            coupled = self._workspace.couple_cell(ells, np.array([cl_by_name["TT"]]))
            return {"TT": self._workspace.decouple_cell(coupled)[0]}
        zero = np.zeros_like(first)
        coupled = self._workspace.couple_cell(ells, np.array([cl_by_name["EE"], zero, zero, cl_by_name["BB"]]))
        cl = self._workspace.decouple_cell(coupled)
        return {"EE": cl[0], "BB": cl[3]}
