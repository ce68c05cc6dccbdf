"""Full-sky component separation with a patch network: read HEALPix frequency maps, tile the sky outside a
Galactic cut with overlapping gnomonic patches of the network's geometry, apply the network, and reproject
the patch estimates onto HEALPix with smooth overlap weights.

Reprojection. Every HEALPix pixel inside a patch is projected onto that patch's tangent plane; the patch
estimate is interpolated bilinearly there and enters the pixel's weighted mean with the weight
``w = cos^2(pi x / L) cos^2(pi y / L)`` (``x, y`` from the patch centre, ``L`` the patch side). The weight falls
to zero at every patch edge, where the network's convolutions see padding, so no seam can show; centres on a
HEALPix grid about half a patch side apart give every pixel several patches.

Polarization. Patch Q/U are in the flat-sky Stokes convention of :mod:`cmbml.cenn.patches`; the map from
healpy's local-meridian frame to the patch frame is its own inverse, so the same rotation brings the estimate
back before patches are averaged.

Conventions of the maps read (:func:`read_frequency_map`): units from the FITS column units (``K_CMB``,
``mK_CMB``, ``uK_CMB``) converted to uK_CMB, NESTED or RING ordering from ``ORDERING`` (returned RING), Stokes
columns by name (``Q_STOKES``/``U_STOKES`` as Planck writes them, or ``Q``/``U``), Galactic coordinates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmbml.cenn.patches import PatchSampler, patch_frame_rotation
from cmbml.common.flatsky import FlatGrid

UNIT_FACTORS_TO_UK = {"k": 1e6, "mk": 1e3, "uk": 1.0}
"""Thermodynamic CMB temperature units a map may be in, to uK_CMB."""

STOKES_COLUMNS = {
    "Q": ("Q_STOKES", "Q", "Q_POLARISATION", "Q_POLARIZATION", "Q-POL"),
    "U": ("U_STOKES", "U", "U_POLARISATION", "U_POLARIZATION", "U-POL"),
}
"""Column names read as Stokes Q and U (case-insensitive), Planck's first."""


class SkyMapError(ValueError):
    """A full-sky map that cannot be read as the network needs it; the message names the file and the reason."""


def unit_factor_to_uk_cmb(unit: str | None, source: str) -> float:
    """Factor converting a map in ``unit`` (``K_CMB``, ``KCMB``, ``mK_CMB``, ``uK_CMB``, ``µK_CMB``) to uK_CMB.

    Brightness units (``K_RJ``, ``MJy/sr``) and a missing unit are refused: the network's inputs are CMB
    thermodynamic temperatures, and a map in K read as uK would pass every shape check."""
    if not unit or not unit.strip():
        raise SkyMapError(f"{source}: the file states no unit (TUNITn); write K_CMB or uK_CMB")
    u = unit.strip().lower().replace("µ", "u").replace("mu", "u").replace(" ", "").replace("-", "_")
    for suffix in ("_cmb", "cmb"):
        if u.endswith(suffix):
            u = u[: -len(suffix)]
            break
    else:
        if "rj" in u or "jy" in u:
            raise SkyMapError(f"{source}: maps in {unit}; convert them to thermodynamic CMB units (K_CMB) first")
    if u not in UNIT_FACTORS_TO_UK:
        raise SkyMapError(f"{source}: unknown unit {unit!r}; allowed K_CMB, mK_CMB or uK_CMB")
    return UNIT_FACTORS_TO_UK[u]


def read_frequency_map(path: str | Path, nside: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stokes Q and U of one frequency map, in uK_CMB, RING ordering.

    Parameters
    ----------
    path : str or Path
        HEALPix FITS map (binary table), Galactic coordinates, with Stokes columns named as in
        :data:`STOKES_COLUMNS` and their units in ``TUNITn``.
    nside : int, optional
        Required resolution; a map of another nside is refused (resampling would change its beam).

    Returns
    -------
    qu : ndarray, shape (2, 12 nside^2)
        Q and U in uK_CMB, RING; unobserved pixels (``UNSEEN``, NaN) are 0.
    observed : ndarray of bool, shape (12 nside^2,)
        Pixels with finite Q and U.
    """
    import healpy as hp
    from astropy.io import fits

    source = str(path)
    try:
        with fits.open(path, memmap=True) as hdul:
            if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                raise SkyMapError(f"{source}: not a HEALPix map (no binary table in extension 1)")
            header = hdul[1].header
            names = [n.upper() for n in hdul[1].columns.names]
            units = [c.unit for c in hdul[1].columns]
    except OSError as err:
        raise SkyMapError(f"{source}: unreadable FITS file ({err})") from None
    coord = str(header.get("COORDSYS", "G")).strip().upper()[:1]
    if coord != "G":
        raise SkyMapError(
            f"{source}: COORDSYS {header.get('COORDSYS')!r}; the network works in Galactic coordinates (G)"
        )
    fields = []
    for stokes, candidates in STOKES_COLUMNS.items():
        found = [i for i, n in enumerate(names) if n in candidates]
        if not found:
            raise SkyMapError(
                f"{source}: no Stokes {stokes} column (columns {', '.join(names)}; expected {' or '.join(candidates[:2])})"
            )
        fields.append(found[0])
    factors = [unit_factor_to_uk_cmb(units[i] or header.get("BUNIT"), f"{source} column {names[i]}") for i in fields]
    ordering = str(header.get("ORDERING", "RING")).strip().upper()
    if ordering not in ("RING", "NESTED"):
        raise SkyMapError(f"{source}: ORDERING {ordering!r}; allowed RING or NESTED")
    qu = np.atleast_2d(hp.read_map(source, field=tuple(fields), dtype=np.float64, nest=False))
    if nside is not None and hp.get_nside(qu[0]) != nside:
        raise SkyMapError(
            f"{source}: nside {hp.get_nside(qu[0])}; the other maps (or the network's sky) have nside {nside}"
        )
    observed = np.all(np.isfinite(qu) & (qu != hp.UNSEEN) & (np.abs(qu) < 1e30), axis=0)
    qu = np.where(observed, qu, 0.0) * np.array(factors)[:, None]
    return qu, observed


@dataclass(frozen=True)
class Tiling:
    """Patch centres covering the sky outside a Galactic cut, and how patch estimates go back to HEALPix.

    Attributes
    ----------
    centres_deg : ndarray, shape (N, 2)
        Galactic (lon, lat) of every patch centre, degrees.
    geometry : FlatGrid
        The network's patch grid.
    nside : int
        The HEALPix resolution of the maps.
    b_min_deg : float
        The cut: the estimate is kept at ``|b| > b_min_deg``.
    """

    centres_deg: np.ndarray
    geometry: FlatGrid
    nside: int
    b_min_deg: float

    @classmethod
    def covering(cls, geometry: FlatGrid, nside: int, b_min_deg: float, spacing_in_sides: float = 0.5) -> Tiling:
        """Centres at the pixel centres of a HEALPix grid whose spacing is ``spacing_in_sides`` of the patch side,
        at ``|b| > b_min_deg - side / 2``: every pixel above the cut lies well inside some patches."""
        import healpy as hp

        spacing_deg = np.degrees(np.sqrt(4 * np.pi / 12))  # the spacing of nside 1, degrees
        grid_nside = int(np.ceil(spacing_deg / (spacing_in_sides * geometry.side_deg)))
        theta, phi = hp.pix2ang(grid_nside, np.arange(12 * grid_nside**2))
        lat, lon = 90.0 - np.degrees(theta), np.degrees(phi)
        keep = np.abs(lat) > b_min_deg - 0.5 * geometry.side_deg
        return cls(np.column_stack([lon[keep], lat[keep]]), geometry, nside, float(b_min_deg))

    @property
    def n_patches(self) -> int:
        return int(self.centres_deg.shape[0])

    def sampler(self, i: int) -> PatchSampler:
        """Interpolation from the HEALPix maps onto patch ``i`` (as the training patches were cut)."""
        return PatchSampler.build(self.nside, self.geometry, *self.centres_deg[i])

    def footprint(self, i: int) -> Footprint:
        """The HEALPix pixels inside patch ``i`` and where they fall on it."""
        return Footprint.build(self.nside, self.geometry, *self.centres_deg[i])

    def sky_mask(self) -> np.ndarray:
        """``|b| > b_min_deg`` on the maps' grid, bool (12 nside^2,)."""
        from cmbml.cenn.fullsky import galactic_latitude_deg

        return np.abs(galactic_latitude_deg(self.nside)) > self.b_min_deg


def overlap_weight(u: np.ndarray, npix: int) -> np.ndarray:
    """``cos^2(pi u / npix)`` of a pixel coordinate ``u`` measured from the patch centre (pixels): 1 at the centre,
    0 half a pixel beyond the outermost pixel centres."""
    return np.cos(np.pi * u / npix) ** 2


@dataclass(frozen=True)
class Footprint:
    """HEALPix pixels that fall inside one patch, their position on it and their overlap weight.

    Attributes
    ----------
    pixels : ndarray of int, shape (m,)
    fx, fy : ndarray, shape (m,)
        Fractional patch pixel coordinates (``[iy, ix]`` indexing, 0 at the first pixel centre).
    weight : ndarray, shape (m,)
        :func:`overlap_weight` in x times that in y.
    cos2psi, sin2psi : ndarray, shape (m,)
        Rotation between the pixel's local meridian frame and the patch frame.
    """

    pixels: np.ndarray
    fx: np.ndarray
    fy: np.ndarray
    weight: np.ndarray
    cos2psi: np.ndarray
    sin2psi: np.ndarray

    @classmethod
    def build(cls, nside: int, geometry: FlatGrid, lon_deg: float, lat_deg: float) -> Footprint:
        import healpy as hp

        lon0, lat0 = np.radians(lon_deg), np.radians(lat_deg)
        centre = hp.ang2vec(np.pi / 2 - lat0, lon0)
        pixels = hp.query_disc(nside, centre, np.radians(geometry.half_diagonal_deg) * 1.01, inclusive=False)
        theta, phi = hp.pix2ang(nside, pixels)
        lat, dlon = np.pi / 2 - theta, phi - lon0
        cos_c = np.sin(lat0) * np.sin(lat) + np.cos(lat0) * np.cos(lat) * np.cos(dlon)
        # Forward gnomonic projection: the inverse of cmbml.cenn.patches.gnomonic_to_sphere.
        x = np.cos(lat) * np.sin(dlon) / cos_c
        y = (np.cos(lat0) * np.sin(lat) - np.sin(lat0) * np.cos(lat) * np.cos(dlon)) / cos_c
        n, dx = geometry.npix, geometry.dx
        fx, fy = x / dx + (n - 1) / 2.0, y / dx + (n - 1) / 2.0
        inside = (cos_c > 0) & (fx >= 0) & (fx <= n - 1) & (fy >= 0) & (fy <= n - 1)
        pixels, x, y, fx, fy = pixels[inside], x[inside], y[inside], fx[inside], fy[inside]
        weight = overlap_weight(fx - (n - 1) / 2.0, n) * overlap_weight(fy - (n - 1) / 2.0, n)
        cos2psi, sin2psi = patch_frame_rotation(lon0, lat0, x, y, 1e-3 * dx)
        return cls(pixels, fx, fy, weight, cos2psi, sin2psi)

    def interpolate(self, patch: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of ``patch`` ((n, n) or (n, n, k), ``[iy, ix]``) at the footprint's pixels:
        (m,) or (m, k)."""
        n = patch.shape[0]
        ix, iy = np.minimum(np.floor(self.fx).astype(int), n - 2), np.minimum(np.floor(self.fy).astype(int), n - 2)
        tx, ty = self.fx - ix, self.fy - iy
        if patch.ndim == 3:
            tx, ty = tx[:, None], ty[:, None]
        return (
            (1 - tx) * (1 - ty) * patch[iy, ix]
            + tx * (1 - ty) * patch[iy, ix + 1]
            + (1 - tx) * ty * patch[iy + 1, ix]
            + tx * ty * patch[iy + 1, ix + 1]
        )


def e_b_maps(qu: np.ndarray, nside: int, components: Sequence[str]) -> np.ndarray:
    """Scalar E and/or B maps (len(components), npix) of a polarization map (2, npix), band-limited at 3 nside - 1,
    as the simulation forms them (:func:`cmbml.cenn.simulate.component_maps_from_alm`)."""
    from cmbml.cenn.fullsky import alm_from_qu
    from cmbml.common.sht import synthesis

    alm_e, alm_b = alm_from_qu(qu[0], qu[1], 3 * nside - 1)
    return np.stack([synthesis({"E": alm_e, "B": alm_b}[c], nside) for c in components])


@dataclass
class FullSkyEstimate:
    """A network's (or any patch method's) full-sky estimate.

    Attributes
    ----------
    maps : ndarray, shape (k, npix)
        The estimate per component (E; B; or Q, U), uK_CMB, RING; 0 where ``weight`` is 0.
    weight : ndarray, shape (npix,)
        Sum of the overlap weights of the patches that saw each pixel (the hit map).
    mask : ndarray of bool, shape (npix,)
        Pixels of the estimate: above the cut, seen by patches with total weight at least ``min_weight``.
    """

    maps: np.ndarray
    weight: np.ndarray
    mask: np.ndarray
    interior_residual_var: float | None = None
    """Mean variance of ``estimate - reference`` over the central half (in each axis) of the patches, uK^2, where
    a reference was given: the patch-level error the full-sky residual is compared with (a seam would add to it)."""


def separate(
    component_maps: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    tiling: Tiling,
    components: Sequence[str],
    batch: int = 128,
    min_weight: float = 0.25,
    progress: Callable[[int], None] | None = None,
    reference: np.ndarray | None = None,
) -> FullSkyEstimate:
    """Apply a patch method to the whole sky above the tiling's cut.

    Parameters
    ----------
    component_maps : ndarray, shape (n_components, n_channels, npix)
        The input per component (E; B; or Q, U) and frequency channel, uK_CMB, RING.
    predict : callable
        ``(batch, n, n, n_components * n_channels) -> (batch, n, n, n_components)``, the channels ordered
        component by component (``Q 100GHz, Q 143GHz, ..., U 217GHz``), as the network's model card says.
    tiling : Tiling
    components : sequence of str
        ``("E",)``, ``("B",)`` or ``("Q", "U")``: Q and U are rotated into each patch's frame and back.
    batch : int
        Patches cut, predicted and reprojected at a time (memory: ``batch`` patches of every channel).
    min_weight : float
        Smallest total overlap weight a pixel of the mask has.
    progress : callable, optional
        Called with the number of patches done after each batch.
    reference : ndarray, shape (n_components, npix), optional
        The truth (the label's maps): each patch's interior residual is measured against it, cut as the inputs are.
    """
    polarized = tuple(components) == ("Q", "U")
    n_comp = len(components)
    npix_sky = component_maps.shape[-1]
    total = np.zeros((n_comp, npix_sky))
    weight = np.zeros(npix_sky)
    n = tiling.geometry.npix
    interior = slice(n // 4, n - n // 4)
    residual_var = []
    for start in range(0, tiling.n_patches, batch):
        idx = range(start, min(tiling.n_patches, start + batch))
        stacks, truths = [], []
        for i in idx:
            sampler = tiling.sampler(i)
            cut = _cut(sampler, component_maps, polarized)  # (n_components * n_channels, n, n)
            stacks.append(np.moveaxis(cut, 0, -1))
            if reference is not None:
                truths.append(np.moveaxis(_cut(sampler, reference[:, None], polarized), 0, -1))
        out = np.asarray(predict(np.stack(stacks).astype(np.float32)), dtype=np.float64)
        if reference is not None:
            diff = out - np.stack(truths)
            residual_var.extend(np.mean(diff[:, interior, interior] ** 2, axis=(1, 2, 3)))
        for k, i in enumerate(idx):
            fp = tiling.footprint(i)
            values = fp.interpolate(out[k])  # (m, n_comp)
            if polarized:  # the patch frame's flat-sky Stokes back to healpy's (the rotation is an involution)
                qf, uf = values[:, 0], values[:, 1]
                values = np.column_stack([qf * fp.cos2psi - uf * fp.sin2psi, -(qf * fp.sin2psi + uf * fp.cos2psi)])
            np.add.at(total.T, fp.pixels, fp.weight[:, None] * values)
            np.add.at(weight, fp.pixels, fp.weight)
        if progress is not None:
            progress(len(idx))
    mask = tiling.sky_mask() & (weight >= min_weight)
    maps = np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), 0.0)
    return FullSkyEstimate(maps * mask, weight, mask, float(np.mean(residual_var)) if residual_var else None)


def _cut(sampler: PatchSampler, maps: np.ndarray, polarized: bool) -> np.ndarray:
    """Patch of component maps (n_components, n_channels, npix): (n_components * n_channels, n, n), component by
    component; Q and U in the patch frame."""
    if polarized:
        q, u = sampler.polarization(maps[0], maps[1])
        return np.concatenate([q, u])
    return np.concatenate([sampler.scalar(m) for m in maps])


def harmonic_ilc(
    component_maps: np.ndarray,
    beams: np.ndarray,
    target_beam: np.ndarray,
    mask: np.ndarray,
    components: Sequence[str],
    bin_width: int = 30,
    signal_cl: Sequence[np.ndarray] | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The harmonic internal linear combination of the channels on the masked sky: per multipole bin, the
    weights ``w = C^-1 1 / (1^T C^-1 1)`` of the channels' empirical covariance ``C`` (beams corrected to the
    target's), which keep the CMB and minimise everything else.

    Parameters
    ----------
    component_maps : ndarray, shape (n_components, n_channels, npix)
        E; B; or Q, U per channel, uK_CMB, RING.
    beams : ndarray, shape (n_channels, lmax + 1)
        Each channel's transfer function; ``target_beam`` (lmax + 1,) is the estimate's.
    mask : ndarray, shape (npix,)
        Weights of the sky used (apodized; 0 in the Galactic plane).
    components : sequence of str
        ``("E",)``, ``("B",)`` or ``("Q", "U")`` (E and B combined separately, then Q and U synthesised).
    bin_width : int
        Multipoles sharing one set of weights.
    signal_cl : sequence of ndarray, optional
        The CMB's spectrum through the target beam per harmonic field (EE; BB; or EE and BB for Q, U), uK^2: the
        ILC is then also Wiener filtered, ``W = min(1, C_signal / C_ILC)`` per bin with ``C_ILC`` the ILC map's power
        on the masked sky (theory and data only).

    Returns
    -------
    ndarray, shape (n_components, npix)
        The estimate on the masked sky (uK_CMB), with the target beam; with ``signal_cl``, the tuple
        (ILC, Wiener-filtered ILC).
    """
    import healpy as hp

    from cmbml.common.sht import analysis, synthesis

    n_comp, n_ch, npix = component_maps.shape
    nside = hp.npix2nside(npix)
    lmax = beams.shape[1] - 1
    polarized = tuple(components) == ("Q", "U")
    # alms (n_fields, n_ch, n_alm): E and B of Q/U, or the scalar map's
    if polarized:
        alms = np.stack(
            [analysis(mask * component_maps[:, c], lmax, spin=2, iterations=3) for c in range(n_ch)], axis=1
        )
    else:
        alms = np.stack([[analysis(mask * component_maps[0, c], lmax, iterations=3) for c in range(n_ch)]])
    ell, m = hp.Alm.getlm(lmax)
    ratio = np.where(beams > 1e-6, target_beam / np.where(beams > 1e-6, beams, 1.0), 0.0)  # (n_ch, lmax+1)
    alms = alms * ratio[None, :, ell]
    out = np.zeros((alms.shape[0], alms.shape[2]), dtype=complex)
    modes = np.where(m == 0, 1.0, 2.0)  # each m > 0 alm stands for two real modes
    for lo in range(2, lmax + 1, bin_width):
        sel = (ell >= lo) & (ell < lo + bin_width)
        for f in range(alms.shape[0]):
            a = alms[f][:, sel]
            cov = np.real((a * modes[sel]) @ a.conj().T)
            ones = np.ones(n_ch)
            w = np.linalg.solve(cov + 1e-12 * np.trace(cov) * np.eye(n_ch), ones)
            out[f, sel] = (w / w.sum()) @ a
    maps = [out]
    if signal_cl is not None:
        w2 = float(np.mean(mask**2))  # the masked sky's pseudo power is f_sky times the sky's
        filtered = out.copy()
        for lo in range(2, lmax + 1, bin_width):
            sel = (ell >= lo) & (ell < lo + bin_width)
            for f in range(out.shape[0]):
                power = np.sum(modes[sel] * np.abs(out[f, sel]) ** 2) / np.sum(modes[sel]) / w2
                signal = np.mean(np.asarray(signal_cl[f])[ell[sel]])
                filtered[f, sel] *= min(1.0, signal / power) if power > 0 else 0.0
        maps.append(filtered)
    if polarized:
        result = [synthesis(a, nside, spin=2) for a in maps]
    else:
        result = [synthesis(a[0], nside)[None] for a in maps]
    return result[0] if signal_cl is None else (result[0], result[1])


@dataclass(frozen=True)
class FullSkySpectra:
    """Masked full-sky NaMaster spectra in the bins of the patch evaluation; the coupling matrix is computed once
    (every field shares the mask) and reused for every pair.

    Parameters
    ----------
    mask : ndarray, shape (npix,)
        Apodized mask.
    bin_edges : ndarray
        Multipole bin edges (the patch evaluation's).
    spin : int
        0 for scalar E or B maps, 2 for Q, U (B-mode purification).
    """

    mask: np.ndarray
    bin_edges: np.ndarray
    spin: int

    def __post_init__(self):
        import healpy as hp
        import pymaster as nmt

        lmax = 3 * hp.npix2nside(self.mask.size) - 1
        edges = np.unique(np.round(np.asarray(self.bin_edges)).astype(int))
        edges = edges[edges <= lmax + 1]
        # NaMaster's bins must reach the fields' band limit: one more bin to it, measured and dropped.
        tail = [lmax + 1] if edges[-1] < lmax + 1 else []
        bins = nmt.NmtBin.from_edges(
            np.r_[edges[:-1], edges[-1:]][: len(edges) - 1 + len(tail)], np.r_[edges[1:], tail]
        )
        object.__setattr__(self, "bins", bins)
        object.__setattr__(self, "n_bins", len(edges) - 1)
        object.__setattr__(self, "_workspace", None)

    @property
    def ell(self) -> np.ndarray:
        return self.bins.get_effective_ells()[: self.n_bins]

    def field(self, maps: np.ndarray):
        import pymaster as nmt

        if self.spin == 2:
            return nmt.NmtField(self.mask, [maps[0], maps[1]], purify_b=True, n_iter=1)
        return nmt.NmtField(self.mask, [maps[0]], n_iter=1)

    def cross(self, field_a, field_b) -> dict[str, np.ndarray]:
        """Decoupled ``{EE, BB}`` (spin 2) or the one scalar spectrum ``{"cl"}`` of two fields, per bin."""
        import pymaster as nmt

        if self._workspace is None:
            object.__setattr__(self, "_workspace", nmt.NmtWorkspace.from_fields(field_a, field_b, self.bins))
        cl = self._workspace.decouple_cell(nmt.compute_coupled_cell(field_a, field_b))[:, : self.n_bins]
        if self.spin == 2:
            return {"EE": cl[0], "BB": cl[3]}
        return {"cl": cl[0]}


def effective_modes(mask: np.ndarray, bin_edges: np.ndarray, ell: np.ndarray | None = None) -> np.ndarray:
    """Independent modes per bin on the masked sky: ``f_sky (2 ell + 1) delta ell`` with
    ``f_sky = <w^2>^2 / <w^4>`` of the mask's weights ``w``."""
    fsky = float(np.mean(mask**2) ** 2 / np.mean(mask**4))
    lo, hi = np.asarray(bin_edges[:-1], float), np.asarray(bin_edges[1:], float)
    return fsky * (hi**2 - lo**2)  # sum of (2 ell + 1) over [lo, hi)


def cross_diagnostics(auto: np.ndarray, cross: np.ndarray, truth: np.ndarray, n_modes: np.ndarray) -> dict:
    """Response ``X / T``, correlation ``X / sqrt(A T)`` and uncorrelated power ``A - X^2 / T`` per bin of an
    estimate (auto ``A``, cross with the truth ``X``, truth ``T``), with Gaussian errors from ``n_modes``:
    ``sigma(response)^2 = (A - X^2/T) / (T n_modes)``, ``sigma(correlation) = (1 - rho^2) / sqrt(n_modes)``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        response = cross / truth
        rho = cross / np.sqrt(auto * truth)
        uncorrelated = auto - cross**2 / truth
        return {
            "response": response,
            "response_err": np.sqrt(np.clip(uncorrelated, 0, None) / (truth * n_modes)),
            "correlation": rho,
            "correlation_err": (1 - rho**2) / np.sqrt(n_modes),
            "uncorrelated": uncorrelated,
        }


def write_frequency_map(path: str | Path, qu_uk: np.ndarray, planck_conventions: bool = True) -> None:
    """Write Q and U (uK_CMB, RING) as a HEALPix FITS map; the file appears only when complete.

    With ``planck_conventions`` the map is written as Planck's frequency maps are: K_CMB, NESTED ordering,
    columns ``Q_STOKES`` and ``U_STOKES``; otherwise in the pipeline's own (uK_CMB, RING, ``Q``, ``U``)."""
    import healpy as hp

    from cmbml.common.io import atomic_path

    qu = np.asarray(qu_uk, dtype=np.float64)
    if planck_conventions:
        qu = hp.reorder(qu, r2n=True) * 1e-6
    with atomic_path(path) as tmp:
        hp.write_map(
            str(tmp),
            [m.astype(np.float32) for m in qu],
            nest=planck_conventions,
            column_names=["Q_STOKES", "U_STOKES"] if planck_conventions else ["Q", "U"],
            column_units="K_CMB" if planck_conventions else "uK_CMB",
            coord="G",
            overwrite=True,
            dtype=np.float32,
        )


def frequency_maps_of_sky(
    cmb_qu: np.ndarray,
    foreground_qu,
    channels,
    target: int,
    nside: int,
    rng: np.random.Generator,
    noise_transfer: np.ndarray | None = None,
):
    """Frequency maps of one full sky as the patches' skies are built (:func:`cmbml.cenn.simulate.build_component_skies`:
    each channel's beam on CMB plus foregrounds), with noise at each channel's depth.

    The noise is white per HEALPix pixel, as in a detector map, or, with ``noise_transfer`` (lmax + 1,), a Gaussian
    field of power ``depth^2 / noise_transfer^2``: with the interpolation window onto the patches as the transfer,
    the noise a patch cut from the map carries is white at the patch's resolution, as in the training and evaluation
    patches (whose noise is drawn per patch pixel).

    Parameters
    ----------
    cmb_qu : ndarray, shape (2, npix)
        The CMB's Q and U, uK_CMB.
    foreground_qu : iterable of ndarray, shape (2, npix)
        Each channel's total foreground, uK_CMB.
    channels : sequence of cmbml.cenn.simulate.Channel
    target : int
        The channel whose beam the label carries.
    rng : numpy.random.Generator
        The noise's generator.

    Returns
    -------
    channel_qu : ndarray, shape (n_channels, 2, npix)
        Q and U of every channel, uK_CMB.
    label_qu : ndarray, shape (2, npix)
        The CMB with the target channel's beam.
    """
    from cmbml.cenn.fullsky import pixel_arcmin
    from cmbml.cenn.simulate import build_component_skies

    inputs, labels = build_component_skies([cmb_qu], foreground_qu, channels, target, nside, ["Q", "U"])
    channel_qu = np.stack([inputs[(0, "Q")], inputs[(0, "U")]], axis=1).astype(np.float64)
    if noise_transfer is None:
        sigma = np.array([ch.noise_uk_arcmin for ch in channels]) / pixel_arcmin(nside)
        channel_qu += sigma[:, None, None] * rng.standard_normal(channel_qu.shape)
    else:
        from cmbml.cenn.fullsky import gaussian_alm, tqu_from_alm
        from cmbml.common.units import ARCMIN

        lmax = noise_transfer.size - 1
        shape = np.zeros(lmax + 1)
        shape[2:] = 1.0 / noise_transfer[2:] ** 2
        for k, ch in enumerate(channels):
            n_ell = (ch.noise_uk_arcmin * ARCMIN) ** 2 * shape
            channel_qu[k] += tqu_from_alm(gaussian_alm(0 * n_ell, n_ell, n_ell, 0 * n_ell, lmax, rng), nside)[1:]
    return channel_qu, np.stack([labels[(0, "Q")], labels[(0, "U")]]).astype(np.float64)


def score_full_sky(
    estimates: dict[str, np.ndarray],
    truth: np.ndarray,
    mask: np.ndarray,
    bin_edges: np.ndarray,
    spectra: Sequence[str],
    apodization_deg: float,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Score full-sky estimates against the truth inside a mask: map residual rms and, per multipole bin, masked
    NaMaster cross-spectra (response, correlation with errors, residual power).

    Parameters
    ----------
    estimates : dict
        Method name -> (k, npix) maps (E; B; or Q, U), uK_CMB.
    truth : ndarray, shape (k, npix)
        The true CMB seen as the estimates are (the same beam and interpolations).
    mask : ndarray of bool, shape (npix,)
        The pixels scored; apodized (C1, ``apodization_deg``) inside itself for the spectra.
    bin_edges : ndarray
        Multipole bin edges.
    spectra : sequence of str
        The spectra measured (``["EE"]``, ``["BB"]``, ``["EE", "BB"]`` for Q, U).

    Returns
    -------
    metrics : dict
        ``<method>_residual_rms_uK``, ``<method>_residual_over_truth_rms``, ``f_sky``.
    rows : list of dict
        Per bin: ``ell``, ``truth_<S>_dl``, and per method ``<method>_<S>_{response, correlation}`` with ``_err``,
        ``<method>_<S>_residual_dl``.
    """
    import pymaster as nmt

    from cmbml.common.spectra import cl_to_dl

    spin = 2 if truth.shape[0] == 2 else 0
    apodized = nmt.mask_apodization(mask.astype(np.float64), apodization_deg, apotype="C1")
    estimator = FullSkySpectra(apodized, bin_edges, spin)
    ell = estimator.ell
    n_modes = effective_modes(apodized, estimator_edges(estimator))
    names = list(spectra)

    def per_spectrum(cl: dict) -> dict:
        return {s: cl["cl"] if spin == 0 else cl[s] for s in names}

    f_truth = estimator.field(truth)
    cl_truth = per_spectrum(estimator.cross(f_truth, f_truth))
    metrics = {"f_sky": float(np.mean(apodized**2) ** 2 / np.mean(apodized**4)), "n_pixels": int(mask.sum())}
    truth_rms = float(np.sqrt(np.mean(truth[:, mask] ** 2)))
    per_method = {}
    for name, maps in estimates.items():
        residual = maps - truth
        rms = float(np.sqrt(np.mean(residual[:, mask] ** 2)))
        metrics[f"{name}_residual_rms_uK"] = rms
        metrics[f"{name}_residual_over_truth_rms"] = rms / truth_rms
        f_est, f_res = estimator.field(maps), estimator.field(residual)
        auto, cross = per_spectrum(estimator.cross(f_est, f_est)), per_spectrum(estimator.cross(f_est, f_truth))
        res = per_spectrum(estimator.cross(f_res, f_res))
        per_method[name] = {s: (cross_diagnostics(auto[s], cross[s], cl_truth[s], n_modes), res[s]) for s in names}
    rows = []
    for i, e in enumerate(ell):
        row = {"ell": float(e)}
        for s in names:
            row[f"truth_{s}_dl"] = float(cl_to_dl(e, cl_truth[s][i]))
            for name, by_s in per_method.items():
                diag, res = by_s[s]
                for k in ("response", "correlation"):
                    row[f"{name}_{s}_{k}"] = float(diag[k][i])
                    row[f"{name}_{s}_{k}_err"] = float(diag[f"{k}_err"][i])
                row[f"{name}_{s}_residual_dl"] = float(cl_to_dl(e, res[i]))
        rows.append(row)
    return metrics, rows


def estimator_edges(estimator: FullSkySpectra) -> np.ndarray:
    """The bin edges NaMaster uses (the requested ones below the band limit)."""
    b, n = estimator.bins, estimator.n_bins
    return np.array([b.get_ell_min(i) for i in range(n)] + [b.get_ell_max(n - 1) + 1])


def patch_diagnostics(
    estimate: np.ndarray,
    truth: np.ndarray,
    centres_deg: np.ndarray,
    nside: int,
    geometry,
    estimator,
    components: Sequence[str],
    spectra: Sequence[str],
    sky_groups: np.ndarray | None = None,
) -> list[dict[str, float]]:
    """The patch-level evaluation's cross diagnostics measured on patches cut from full-sky maps: the same centres,
    crop and flat-sky NaMaster estimator, so that the full-sky estimate is measured exactly as the evaluation
    patches were.

    Parameters
    ----------
    estimate, truth : ndarray, shape (k, npix)
        Full-sky estimate and truth (E; B; or Q, U), uK_CMB.
    centres_deg : ndarray, shape (N, 2)
        Patch centres (lon, lat), degrees.
    geometry : cmbml.cenn.schema.CennGeometry
        The patch and its crop.
    estimator : cmbml.cenn.namaster_flat.FlatSpectra
    sky_groups : ndarray of int, shape (N,), optional
        Sky blocks of the jackknife that gives the errors.

    Returns
    -------
    list of dict
        Per bin: ``ell``, ``network_<S>_{response, correlation}`` and their ``_err``.
    """
    from cmbml.cenn.evaluation import CrossDiagnostics, cross_name, patch_spectra
    from cmbml.common.jackknife import group_jackknife

    polarized = tuple(components) == ("Q", "U")
    cuts = {"network": [], "label": []}
    for lon, lat in centres_deg:
        sampler = PatchSampler.build(nside, geometry.patch, lon, lat)
        for name, maps in (("network", estimate), ("label", truth)):
            cuts[name].append(_cut(sampler, maps[:, None], polarized))  # (k, n, n)
    stacks = {name: geometry.crop(np.moveaxis(np.stack(v), 1, -1)) for name, v in cuts.items()}  # (N, n', n', k)
    maps = {c: {name: stacks[name][..., k] for name in stacks} for k, c in enumerate(components)}
    for c in components:
        maps[c]["network residual"] = maps[c]["network"] - maps[c]["label"]
    names = ("label", "network", "network residual")
    cl = patch_spectra(estimator, maps, components, spectra, names=names, crossed=["network"])
    dl_factor = estimator.ell * (estimator.ell + 1) / (2 * np.pi)
    rows = [{"ell": float(e)} for e in estimator.ell]
    for s in spectra:
        diag = CrossDiagnostics(cl["network"][s], cl[cross_name("network")][s], cl["label"][s])
        per_bin = diag.per_bin()
        errors = {}
        if sky_groups is not None and np.unique(sky_groups).size >= 2:
            errors = {
                q: group_jackknife(lambda keep, q=q: diag.per_bin(keep)[q], sky_groups)[1]
                for q in ("response", "correlation")
            }
        residual = cl["network residual"][s]
        for i, row in enumerate(rows):
            row[f"network_{s}_residual_dl"] = float(dl_factor[i] * residual[:, i].mean())
            for q in ("response", "correlation"):
                row[f"network_{s}_{q}"] = float(per_bin[q][i])
                if q in errors:
                    row[f"network_{s}_{q}_err"] = float(errors[q][i])
    return rows


def compare_with_patches(
    fullsky_rows: Sequence[dict], patch_rows: Sequence[dict], spectra: Sequence[str], ell_max: float
) -> dict[str, float]:
    """How the full-sky estimate, measured on patches (:func:`patch_diagnostics`), agrees with the evaluation patches,
    bin by bin (the bins are the same), over the bins centred at or below ``ell_max``.

    ``ell_max`` is ``2 nside``: above it the HEALPix grid no longer samples the sky faithfully, and the interpolations
    onto and off it (three for a full-sky estimate cut back into patches, one for the evaluation patches) fold
    power from low multipoles there, which correlates estimate and truth alike.

    Returns, per spectrum ``S`` and quantity (the network's cross ``response`` and ``correlation``),
    ``<S>_<quantity>_max_pull``, the largest ``|full sky - evaluation| / sqrt(err_full^2 + err_eval^2)`` over the
    bins (below 3 in every bin: agreement within the errors; the skies' CMB are independent, so the errors add),
    ``_chi2_per_bin`` (the mean squared pull, about 1 when they agree) and ``_n_bins_compared``."""
    out: dict[str, float] = {}
    for s in spectra:
        for q in ("response", "correlation"):
            key, pulls = f"network_{s}_{q}", []
            for r, p in zip(fullsky_rows, patch_rows):
                if abs(r["ell"] - p["ell"]) > 1e-6 * max(1.0, p["ell"]) or r["ell"] > ell_max:
                    continue
                if f"{key}_err" in p and f"{key}_err" in r:
                    pulls.append(abs(r[key] - p[key]) / np.hypot(r[f"{key}_err"], p[f"{key}_err"]))
            pulls = np.array(pulls)
            out[f"{s}_{q}_max_pull"] = float(pulls.max()) if pulls.size else float("nan")
            out[f"{s}_{q}_chi2_per_bin"] = float(np.mean(pulls**2)) if pulls.size else float("nan")
            out[f"{s}_{q}_n_bins_compared"] = int(pulls.size)
        first = fullsky_rows[0], patch_rows[0]
        if f"network_{s}_residual_dl" in first[1]:  # the residual power at the patch scale (the lowest bin)
            out[f"{s}_patch_scale_residual_over_evaluation"] = (
                first[0][f"network_{s}_residual_dl"] / first[1][f"network_{s}_residual_dl"]
            )
    return out
