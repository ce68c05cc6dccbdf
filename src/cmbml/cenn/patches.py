"""Square gnomonic sky patches cut from HEALPix maps.

Each patch's pixel directions and bilinear interpolation weights are computed once; every map
(channels, components, labels) is then read through the same indices and weights, instead of
one projection call per map.

Patch frame: pixel ``[iy, ix]``; ``+x`` points along increasing Galactic longitude (east) and
``+y`` to the north at the centre. Polarization is rotated from each pixel's local meridian frame
into this common frame and put in the flat-sky Stokes convention, so Q/U patches go to NaMaster
directly; without the rotation about 1% of EE leaks into BB on 6.4 deg patches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cmbml.common.flatsky import FlatGrid
from cmbml.common.units import ARCMIN


def gnomonic_to_sphere(lon0: float, lat0: float, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse gnomonic projection about (lon0, lat0) (radians): returns (lon, lat) in radians."""
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    sin_c, cos_c = np.sin(c), np.cos(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(rho > 0, y * sin_c / np.where(rho > 0, rho, 1.0), 0.0)
    lat = np.arcsin(np.clip(cos_c * np.sin(lat0) + ratio * np.cos(lat0), -1.0, 1.0))
    lon = lon0 + np.arctan2(x * sin_c, rho * np.cos(lat0) * cos_c - y * np.sin(lat0) * sin_c)
    return lon, lat


def patch_frame_rotation(
    lon0: float, lat0: float, x: np.ndarray, y: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """``cos 2 psi`` and ``sin 2 psi`` at tangent-plane points ``(x, y)`` of a patch about ``(lon0, lat0)`` (radians),
    ``psi`` the angle of the patch's +y axis from the local meridian (north), towards east, found from a step
    ``eps`` in y."""
    lon, lat = gnomonic_to_sphere(lon0, lat0, x, y)
    lon_up, lat_up = gnomonic_to_sphere(lon0, lat0, x, y + eps)
    d_north = lat_up - lat
    d_east = np.angle(np.exp(1j * (lon_up - lon))) * np.cos(lat)
    psi = np.arctan2(d_east, d_north)
    return np.cos(2 * psi), np.sin(2 * psi)


@dataclass
class PatchSampler:
    """Pixel indices, weights and polarization rotation of one patch on one HEALPix grid."""

    pixels: np.ndarray  # (4, npix*npix) HEALPix indices
    weights: np.ndarray  # (4, npix*npix) bilinear weights
    cos2psi: np.ndarray  # (npix*npix,) rotation from local meridian frame to patch frame
    sin2psi: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def build(cls, nside: int, geometry: FlatGrid, lon_deg: float, lat_deg: float) -> PatchSampler:
        import healpy as hp

        lon0, lat0 = np.radians(lon_deg), np.radians(lat_deg)
        x, y = geometry.tangent_offsets()
        lon, lat = gnomonic_to_sphere(lon0, lat0, x, y)
        theta, phi = np.pi / 2 - lat.ravel(), lon.ravel()
        pixels, weights = hp.get_interp_weights(nside, theta, phi)
        cos2psi, sin2psi = patch_frame_rotation(lon0, lat0, x, y, 1e-3 * geometry.pixel_arcmin * ARCMIN)
        return cls(pixels, weights, cos2psi.ravel(), sin2psi.ravel(), (geometry.npix, geometry.npix))

    def scalar(self, sky_map: np.ndarray) -> np.ndarray:
        """Interpolate a scalar map (or a stack (k, npix_sky)) onto the patch."""
        values = (np.asarray(sky_map)[..., self.pixels] * self.weights).sum(axis=-2)
        return values.reshape(values.shape[:-1] + self.shape)

    def polarization(self, q_map: np.ndarray, u_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interpolate healpy Q and U and express them as flat-sky Stokes maps of the patch.

        ``(Q + iU)`` is rotated by ``e^{2 i psi}`` (local meridian to patch axes) and U changes
        sign, which maps healpy's convention onto the flat-sky one NaMaster uses for arrays
        indexed ``[y, x]``: a pure-E sky then gives no B on the patch (tested).
        """
        q, u = self.scalar(q_map), self.scalar(u_map)
        c, s = self.cos2psi.reshape(self.shape), self.sin2psi.reshape(self.shape)
        return q * c - u * s, -(q * s + u * c)


def _accepted(
    lon: np.ndarray,
    lat: np.ndarray,
    b_min_deg: float,
    bands_lon_deg: Sequence[tuple[float, float]],
    inside: int | None,
    buffer_deg: float,
) -> np.ndarray:
    """Which directions may hold a patch centre (see :func:`random_centres`)."""
    keep = np.abs(lat) > b_min_deg
    for k, (lo, hi) in enumerate(bands_lon_deg):
        in_band = (lon > lo) & (lon < hi)
        to_edge = np.minimum(_meridian_distance_deg(lon, lat, lo), _meridian_distance_deg(lon, lat, hi))
        keep &= (in_band & (to_edge > buffer_deg)) if k == inside else (~in_band & (to_edge > buffer_deg))
    return keep


def _uniform_directions(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    lon = rng.uniform(0.0, 360.0, m)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, m)))
    return lon, lat


def allowed_sky_fraction(
    b_min_deg: float,
    bands_lon_deg: Sequence[tuple[float, float]],
    inside: int | None,
    buffer_deg: float,
    n_draws: int = 20_000,
) -> float:
    """Fraction of the sphere where :func:`random_centres` may put a centre (Monte Carlo, fixed seed).

    The parameter check uses it to refuse bands in which no patch fits before anything is computed.
    """
    lon, lat = _uniform_directions(np.random.default_rng(0), n_draws)
    return float(_accepted(lon, lat, b_min_deg, bands_lon_deg, inside, buffer_deg).mean())


class NoRoomForPatches(ValueError):
    """The sky allowed to a split is (almost) empty: the centre search gave up instead of looping."""


def random_centres(
    n: int,
    rng: np.random.Generator,
    b_min_deg: float,
    bands_lon_deg: Sequence[tuple[float, float]],
    inside: int | None,
    buffer_deg: float,
    max_draws: int = 50_000_000,
) -> np.ndarray:
    """Patch centres (lon, lat) in degrees, uniform on the sphere with ``|b| > b_min_deg``.

    ``bands_lon_deg`` are longitude bands (all latitudes) reserved for held-out splits. With
    ``inside=k`` the centres lie in band ``k``, ``buffer_deg`` from its edges; with ``inside=None``
    they lie outside every band, ``buffer_deg`` away. With a buffer of at least one patch
    diagonal, patches of different bands or of a band and the rest never overlap.

    Raises :class:`NoRoomForPatches` after ``max_draws`` candidate directions without ``n`` accepted
    (an allowed area below about ``n / max_draws`` of the sphere), so no setting can hang the search.
    """
    out = np.empty((0, 2))
    drawn = 0
    while out.shape[0] < n:
        if drawn >= max_draws:
            where = "outside the bands" if inside is None else f"inside band {list(bands_lon_deg[inside])}"
            raise NoRoomForPatches(
                f"only {out.shape[0]} of {n} patch centres found in {drawn} draws: the sky {where} at "
                f"|b| > {b_min_deg:g} deg, {buffer_deg:.2f} deg from every band edge, is (almost) empty; "
                "widen the band or lower cenn_simulate.b_min_deg"
            )
        m = min(4 * (n - out.shape[0]) + 16, 1_000_000)
        drawn += m
        lon, lat = _uniform_directions(rng, m)
        keep = _accepted(lon, lat, b_min_deg, bands_lon_deg, inside, buffer_deg)
        out = np.vstack([out, np.column_stack([lon[keep], lat[keep]])])
    return out[:n]


def _meridian_distance_deg(lon: np.ndarray, lat: np.ndarray, meridian_lon: float) -> np.ndarray:
    """Angular distance (deg) from (lon, lat) to the half great circle at longitude ``meridian_lon``."""
    dlon = np.radians(np.abs((lon - meridian_lon + 180.0) % 360.0 - 180.0))
    b = np.radians(lat)
    near = np.degrees(np.arcsin(np.clip(np.sin(dlon) * np.cos(b), -1, 1)))
    return np.where(dlon <= np.pi / 2, near, 90.0 - np.abs(lat))


def independent_patch_areas(
    lon_deg: np.ndarray, lat_deg: np.ndarray, realisation: np.ndarray, geometry: FlatGrid, nside: int = 128
) -> dict[str, float]:
    """How many independent patches a set of overlapping patches is worth: the sky area they cover, in patch areas.

    ``"cmb"`` sums the covered area over CMB realisations (patches of different realisations are independent
    in the CMB); ``"sky"`` counts the area once, for what all realisations share (one foreground sky).
    Footprints are the patch corners' spherical quadrilaterals, rasterised on a HEALPix grid of ``nside``.
    """
    import healpy as hp

    half = 0.5 * geometry.side_rad
    corners_x, corners_y = np.array([-half, half, half, -half]), np.array([-half, -half, half, half])
    covered: dict[int, set] = {}
    for lon, lat, r in zip(lon_deg, lat_deg, realisation):
        clon, clat = gnomonic_to_sphere(np.radians(lon), np.radians(lat), corners_x, corners_y)
        vertices = hp.ang2vec(np.pi / 2 - clat, clon)
        covered.setdefault(int(r), set()).update(hp.query_polygon(nside, vertices, inclusive=False).tolist())
    pixel_area = hp.nside2pixarea(nside)
    per_realisation = [len(p) * pixel_area / geometry.area_sr for p in covered.values()]
    everywhere = len(set().union(*covered.values())) * pixel_area / geometry.area_sr if covered else 0.0
    n = len(lon_deg)
    return {"cmb": float(min(n, sum(per_realisation))), "sky": float(min(n, everywhere))}
