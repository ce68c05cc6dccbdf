"""Simulated lensing datasets: Gaussian T and kappa realisations, lensing, noise.

Each sample ``i`` of split ``s`` draws from its own generator seeded with
``(seed, split_id, i)``, so the arrays do not depend on chunking, ordering, the
executor or its number of workers, and the same parameters give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cmbml.common.executors import Executor
from cmbml.common.flatsky import FlatGrid, gaussian_realisation
from cmbml.lensing.physics import lens_map, white_noise_sigma_pix

SPLIT_IDS = {"training": 0, "early_stopping": 1, "evaluation": 2}
"""The random stream of each role's samples (fixed: renaming a role must not change its maps)."""
CONVENTIONS = {
    "units_T": "uK (CMB thermodynamic)",
    "units_kappa": "dimensionless convergence (times kappa_exaggeration_factor)",
    "lensing_sign": "T_lensed(x) = T(x + grad phi), kappa = -laplacian(phi) / 2",
    "pixel_layout": "[sample, y, x]",
}
"""File attributes every split carries and the gate requires verbatim."""
SHARED_T_STREAM = 99  # generator stream of the single unlensed T used when same_T_realisation


@dataclass(frozen=True)
class LensingSimConfig:
    """Physics of one lensing parameter set (a version v1..v8)."""

    npix: int
    pixel_arcmin: float
    T_lmax: float | None
    kappa_lmax: float | None
    kappa_exaggeration_factor: float
    same_T_realisation: bool
    noise_uK_arcmin: float
    remap: str = "fourier"
    remap_epsilon: float = 1e-10
    oversampling: int = 1  # fine-grid points per pixel side of the lensing (1: lensed at the pixels, aliased)

    @property
    def grid(self) -> FlatGrid:
        return FlatGrid(self.npix, self.pixel_arcmin)

    def kappa_power_on_grid(self, cl_kk: np.ndarray) -> np.ndarray:
        """The simulated kappa's power on the grid: ``C^kk`` band-limited at ``kappa_lmax``, times the
        exaggeration factor squared."""
        return self.grid.cl_on_grid(cl_kk, self.kappa_lmax) * self.kappa_exaggeration_factor**2

    def t_power_on_grid(self, cl_tt_unlensed: np.ndarray) -> np.ndarray:
        """The unlensed T power on the grid, band-limited at ``T_lmax``."""
        return self.grid.cl_on_grid(cl_tt_unlensed, self.T_lmax)

    def as_attrs(self) -> dict[str, Any]:
        return asdict(self)


class LensingSimulator:
    """Draws (unlensed T, kappa, lensed T) samples for one configuration.

    Parameters
    ----------
    config : LensingSimConfig
    cl_tt_unlensed : numpy.ndarray
        Unlensed TT spectrum, uK^2, indexed by ell.
    cl_kk : numpy.ndarray
        Convergence spectrum (before exaggeration), indexed by L.
    seed : int
        Master seed.
    """

    def __init__(self, config: LensingSimConfig, cl_tt_unlensed: np.ndarray, cl_kk: np.ndarray, seed: int):
        self.config = config
        self.grid = config.grid
        self.seed = int(seed)
        self.cl_tt_grid = config.t_power_on_grid(cl_tt_unlensed)
        self.cl_kk_grid = config.kappa_power_on_grid(cl_kk)
        self.sigma_noise = white_noise_sigma_pix(config.noise_uK_arcmin, config.pixel_arcmin)
        self._shared_t = None
        if config.same_T_realisation:
            rng = np.random.default_rng([self.seed, SHARED_T_STREAM])
            self._shared_t = gaussian_realisation(self.grid, self.cl_tt_grid, rng)

    @property
    def expected_kappa_variance(self) -> float:
        """Per-pixel variance of the (exaggerated) kappa maps implied by the spectrum and cuts."""
        return float(self.cl_kk_grid.sum() / self.grid.area_sr)

    @property
    def kappa_effective_modes(self) -> float:
        """Effective number of independent real modes in one kappa map, ``(sum C)^2 / sum C^2``.

        The relative standard deviation of one map's variance is ``sqrt(2 / n_eff)``.
        """
        c = self.cl_kk_grid
        return float(c.sum() ** 2 / max((c**2).sum(), 1e-300))

    def sample(self, split: str, index: int) -> dict[str, np.ndarray]:
        """One sample: ``T_unlensed``, ``kappa`` and ``T_lensed`` (noise included), float64."""
        return self.sample_stream(SPLIT_IDS[split], index)

    def sample_stream(self, stream: int, index: int) -> dict[str, np.ndarray]:
        """Sample ``index`` of random stream ``stream`` (a role's, :data:`SPLIT_IDS`, or another, e.g. the
        maps that measure the estimator's spectra)."""
        rng = np.random.default_rng([self.seed, int(stream), int(index)])
        t_map = self._shared_t if self._shared_t is not None else gaussian_realisation(self.grid, self.cl_tt_grid, rng)
        kappa = gaussian_realisation(self.grid, self.cl_kk_grid, rng)
        t_lensed = lens_map(
            self.grid,
            t_map,
            kappa,
            method=self.config.remap,
            epsilon=self.config.remap_epsilon,
            oversampling=self.config.oversampling,
        )
        if self.sigma_noise > 0:
            t_lensed = t_lensed + self.sigma_noise * rng.standard_normal(t_lensed.shape)
        return {"T_unlensed": t_map, "kappa": kappa, "T_lensed": t_lensed}

    def chunk(self, split: str, sl: slice) -> dict[str, np.ndarray]:
        """Samples ``sl`` of a split stacked into (len, npix, npix) float32 arrays."""
        samples = [self.sample(split, i) for i in range(sl.start, sl.stop)]
        return {k: np.stack([s[k] for s in samples]).astype(np.float32) for k in samples[0]}

    def batches(
        self, split: str, n: int, chunk: int, executor: Executor | None = None
    ) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
        """Yield ``(slice, arrays)`` chunks of ``n`` samples in order, simulated by ``executor`` (this process
        when None): every sample has its own generator, so the arrays do not depend on the executor or ``chunk``.
        """
        slices = [slice(start, min(n, start + chunk)) for start in range(0, n, chunk)]
        executor = executor or Executor()
        yield from zip(slices, executor.map(simulate_chunk, self, [(split, sl) for sl in slices]))


def simulate_chunk(simulator: LensingSimulator, job: tuple[str, slice]) -> dict[str, np.ndarray]:
    """One job of :meth:`LensingSimulator.batches`: ``simulator.chunk(split, slice)``."""
    return simulator.chunk(*job)


def write_split(
    path,
    simulator: LensingSimulator,
    split: str,
    n: int,
    chunk: int,
    attrs: Mapping[str, Any],
    progress: Callable[[int], None] | None = None,
    executor: Executor | None = None,
) -> None:
    """Stream one split to an HDF5 file: ``T_lensed`` and ``kappa`` (and ``T_unlensed`` for evaluation).

    Memory stays at a few chunks per worker whatever ``n`` is; the file appears only when complete.
    """
    from cmbml.common.io import h5_dataset_writer

    shape = (n, simulator.grid.npix, simulator.grid.npix)
    from cmbml.common.integrity import pair_digests

    names = ["T_lensed", "kappa"] + (["T_unlensed"] if split == "evaluation" else [])
    arrays = {name: (shape, "float32") for name in names}
    arrays["pair_digest"] = ((n,), "S32")  # binds each T_lensed to its kappa and index
    all_attrs = {
        "split": split,
        "n_samples": n,
        **CONVENTIONS,
        "expected_kappa_variance": simulator.expected_kappa_variance,
        "kappa_effective_modes": simulator.kappa_effective_modes,
        "noise_sigma_pix_uK": simulator.sigma_noise,
        "seed": simulator.seed,
        **simulator.config.as_attrs(),
        **attrs,
    }
    with h5_dataset_writer(path, arrays, all_attrs, chunk_samples=min(chunk, 64)) as h5:
        for sl, batch in simulator.batches(split, n, chunk, executor):
            for name in names:
                h5[name][sl] = batch[name]
            h5["pair_digest"][sl] = pair_digests(sl.start, batch["T_lensed"], batch["kappa"])
            if progress is not None:
                progress(sl.stop - sl.start)
