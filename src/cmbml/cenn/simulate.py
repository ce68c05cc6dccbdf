"""Multi-frequency sky patches for CMB component separation (after CENN).

Per channel the sky is ``beam_ch * (CMB + dust + synchrotron + sources)``, decomposed into the
variant's components (E and B scalar maps, or Q and U), band-limited at ``3 nside - 1``. Maps are
synthesised at pixel centres (no pixel averaging, hence no HEALPix pixel window). The label
is the CMB alone with the target channel's beam. Patches are cut through per-patch interpolation
weights, then white noise is added per patch pixel with ``sigma = depth / pixel side`` and
independent seeds per (split, patch, channel): the noise level is exact at the patch resolution
and every pixel's noise is independent, as for a real detector map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmbml.cenn.patches import PatchSampler, random_centres
from cmbml.common.executors import Executor
from cmbml.common.flatsky import FlatGrid

SPLIT_IDS = {"Train": 0, "Test": 1, "Validation": 2}


@dataclass(frozen=True)
class Channel:
    freq_ghz: float
    fwhm_arcmin: float
    noise_uk_arcmin: float


def read_instrument(path) -> list[Channel]:
    """Channels from the instrument table (``freq_GHz, fwhm_arcmin, noise_uK_deg``)."""
    import csv

    with open(path) as fh:
        rows = list(csv.DictReader(line for line in fh if not line.lstrip().startswith("#")))
    return [Channel(float(r["freq_GHz"]), float(r["fwhm_arcmin"]), 60.0 * float(r["noise_uK_deg"])) for r in rows]


@dataclass(frozen=True)
class Instrument:
    """The channels of an instrument table and the one whose beam the label carries."""

    channels: tuple[Channel, ...]
    target: int  # index of the target channel

    @classmethod
    def read(cls, path, target_ghz: float) -> Instrument:
        """Read the table; ``ValueError`` if ``target_ghz`` is not one of its channels."""
        channels = tuple(read_instrument(path))
        freqs = [ch.freq_ghz for ch in channels]
        if not channels:
            raise ValueError(f"{path} lists no channel")
        if target_ghz not in freqs:
            raise ValueError(f"the target {target_ghz:g} GHz is not a channel of the table; allowed {freqs}")
        return cls(channels, freqs.index(target_ghz))

    @property
    def freqs_ghz(self) -> list[float]:
        return [ch.freq_ghz for ch in self.channels]

    @property
    def target_channel(self) -> Channel:
        return self.channels[self.target]


def component_maps_from_alm(alm_e: np.ndarray, alm_b: np.ndarray, nside: int, components: Sequence[str]) -> dict:
    """Maps of the requested components (``E``, ``B``, ``Q``, ``U``) from E/B alms, float32."""
    from cmbml.common.sht import synthesis

    out = {}
    if {"Q", "U"} & set(components):
        out["Q"], out["U"] = synthesis(np.stack([alm_e, alm_b]), nside, spin=2)
    if "E" in components:
        out["E"] = synthesis(alm_e, nside)
    if "B" in components:
        out["B"] = synthesis(alm_b, nside)
    return {c: np.asarray(out[c], dtype=np.float32) for c in components}


def build_component_skies(
    cmb_qu: Iterable[np.ndarray],
    foreground_qu: Iterable[np.ndarray],
    channels: Sequence[Channel],
    target: int,
    nside: int,
    components: Sequence[str],
) -> tuple[dict, dict]:
    """Full-sky input and label maps.

    ``cmb_qu`` ((Q, U) per CMB realisation) and ``foreground_qu`` ((Q, U) per channel) may be generators:
    each map is used once, so a generator that reads it from disk keeps one full-sky map in memory at a time.

    Returns ``inputs[(r, comp)] -> (n_channels, npix_sky)`` for each CMB realisation ``r`` and
    ``labels[(r, comp)] -> (npix_sky,)``, all float32 uK_CMB.
    """
    import healpy as hp

    from cmbml.cenn.fullsky import alm_from_qu, gauss_beam

    lmax = 3 * nside - 1
    fg_alm = [alm_from_qu(q_u[0], q_u[1], lmax) for q_u in foreground_qu]
    inputs: dict = {}
    labels: dict = {}
    for r, (q, u) in enumerate(cmb_qu):
        cmb_e, cmb_b = alm_from_qu(q, u, lmax)
        per_channel = []
        for ch, (fg_e, fg_b) in zip(channels, fg_alm):
            b = gauss_beam(ch.fwhm_arcmin, lmax)
            per_channel.append(
                component_maps_from_alm(hp.almxfl(cmb_e + fg_e, b), hp.almxfl(cmb_b + fg_b, b), nside, components)
            )
        b_target = gauss_beam(channels[target].fwhm_arcmin, lmax)
        label = component_maps_from_alm(hp.almxfl(cmb_e, b_target), hp.almxfl(cmb_b, b_target), nside, components)
        for comp in components:
            inputs[(r, comp)] = np.stack([m[comp] for m in per_channel])
            labels[(r, comp)] = label[comp]
    return inputs, labels


@dataclass(frozen=True)
class PatchPlan:
    """Where each patch of a split comes from."""

    split: str
    centres_deg: np.ndarray  # (N, 2) lon, lat
    realisation: np.ndarray  # (N,) CMB realisation index


def plan_split(
    split: str,
    n: int,
    seed: int,
    n_realisations: int,
    b_min_deg: float,
    holdout_lon_deg: Sequence[float],
    early_stopping_lon_deg: Sequence[float],
    geometry: FlatGrid,
) -> PatchPlan:
    """Random centres in disjoint sky: Validation in the held-out band, Test (early stopping) in its own
    band, Train outside both, one patch diagonal from every band edge, so no two splits share sky."""
    rng = np.random.default_rng([seed, 7, SPLIT_IDS[split]])
    bands = [tuple(holdout_lon_deg), tuple(early_stopping_lon_deg)]
    inside = {"Validation": 0, "Test": 1}.get(split)
    centres = random_centres(n, rng, b_min_deg, bands, inside=inside, buffer_deg=geometry.half_diagonal_deg)
    return PatchPlan(split, centres, np.arange(n) % n_realisations)


CONVENTIONS = {
    "units": "uK_CMB (thermodynamic)",
    "layout": "M[sample, y, x, channel], M0[sample, y, x, 0]; +x east (Galactic longitude), +y north",
}
"""File attributes every patch file carries and the gate requires verbatim."""


@dataclass(frozen=True)
class PatchCutter:
    """What every patch-cutting job reads: the split's plan, the full-sky component maps and the noise.

    One object, handed once to each worker (forked: inherited; Dask: sent once), so that a job is
    only a list of patch indices."""

    plan: PatchPlan
    inputs: Mapping
    labels: Mapping
    channels: list
    nside: int
    geometry: FlatGrid
    components: list
    seed: int
    noise: bool


def cut_patches(cutter: PatchCutter, indices: Sequence[int]) -> tuple[list[int], dict]:
    """Patches ``indices`` of the plan: ``(indices, {component: (M, M0)})``, each patch's noise from its own seed."""
    s, plan, geometry = cutter, cutter.plan, cutter.geometry
    out = {comp: ([], []) for comp in s.components}
    sigma = np.array([ch.noise_uk_arcmin / geometry.pixel_arcmin for ch in s.channels]) if s.noise else None
    for i in indices:
        lon, lat = plan.centres_deg[i]
        r = int(plan.realisation[i])
        sampler = PatchSampler.build(s.nside, geometry, lon, lat)
        if s.components == ["Q", "U"]:
            q_in, u_in = sampler.polarization(s.inputs[(r, "Q")], s.inputs[(r, "U")])
            q_lab, u_lab = sampler.polarization(s.labels[(r, "Q")], s.labels[(r, "U")])
            cut = {"Q": (q_in, q_lab), "U": (u_in, u_lab)}
        else:
            cut = {c: (sampler.scalar(s.inputs[(r, c)]), sampler.scalar(s.labels[(r, c)])) for c in s.components}
        for k, comp in enumerate(s.components):
            m, m0 = cut[comp]
            m = np.moveaxis(m, 0, -1)  # (n, n, channels)
            if sigma is not None:
                rng = np.random.default_rng([s.seed, 11, SPLIT_IDS[plan.split], int(i), k])
                m = m + sigma * rng.standard_normal(m.shape)
            out[comp][0].append(m.astype(np.float32))
            out[comp][1].append(m0[..., None].astype(np.float32))
    return list(indices), {c: (np.stack(a), np.stack(b)) for c, (a, b) in out.items()}


def cut_split(
    plan: PatchPlan,
    inputs: Mapping,
    labels: Mapping,
    channels: Sequence[Channel],
    nside: int,
    geometry: FlatGrid,
    components: Sequence[str],
    seed: int,
    noise: bool,
    executor: Executor | None = None,
    chunk: int = 32,
) -> Iterator[tuple[slice, dict]]:
    """Yield ``(slice, {comp: (M, M0)})`` chunks in order; patches are cut by ``executor`` (this process when None).

    The result does not depend on the executor or ``chunk``: every patch's noise has its own seed.
    """
    cutter = PatchCutter(plan, inputs, labels, list(channels), nside, geometry, list(components), seed, noise)
    n = plan.centres_deg.shape[0]
    batches = [list(range(a, min(n, a + chunk))) for a in range(0, n, chunk)]
    for idx, arrays in (executor or Executor()).map(cut_patches, cutter, batches):
        yield slice(idx[0], idx[-1] + 1), arrays


def write_split(
    paths: Mapping[str, Any],
    plan: PatchPlan,
    chunks,
    npix: int,
    n_channels: int,
    attrs: Mapping[str, Any],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Stream the chunks of :func:`cut_split` into one HDF5 file per component (``M``, ``M0``, centres)."""
    import contextlib

    from cmbml.common.io import h5_dataset_writer

    n = plan.centres_deg.shape[0]
    from cmbml.common.integrity import pair_digests

    arrays = {
        "M": ((n, npix, npix, n_channels), "float32"),
        "M0": ((n, npix, npix, 1), "float32"),
        "pair_digest": ((n,), "S32"),  # binds each input stack to its label and index
        "centre_lon_deg": ((n,), "float64"),
        "centre_lat_deg": ((n,), "float64"),
        "cmb_realisation": ((n,), "int32"),
    }
    with contextlib.ExitStack() as stack:
        files = {
            comp: stack.enter_context(h5_dataset_writer(path, arrays, {**CONVENTIONS, **attrs, "component": comp}, 32))
            for comp, path in paths.items()
        }
        for h5 in files.values():
            h5["centre_lon_deg"][:] = plan.centres_deg[:, 0]
            h5["centre_lat_deg"][:] = plan.centres_deg[:, 1]
            h5["cmb_realisation"][:] = plan.realisation
        for sl, chunk in chunks:
            for comp, (m, m0) in chunk.items():
                files[comp]["M"][sl] = m
                files[comp]["M0"][sl] = m0
                files[comp]["pair_digest"][sl] = pair_digests(sl.start, m, m0)
            if progress is not None:
                progress(sl.stop - sl.start)
