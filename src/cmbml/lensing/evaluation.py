"""The lensing evaluation's yardstick and scores: the quadratic estimator built from the simulated sky, its
limit, the first-order response, rho(L) with sampling errors, and the leak guard.

Every figure compares a network with the TT quadratic estimator run on the same test maps, and with the
estimator's limit in linear theory, ``rho_opt = sqrt(C^kk / (C^kk + N0))``. Both are only right when the
estimator's spectra are those of the maps: :func:`sky_estimator` measures them on simulations of the
version's own sky (its band limits, exaggeration and noise), from a random stream that no dataset uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cmbml.common.flatsky import FlatGrid
from cmbml.lensing.metrics import CorrelationSpectra, correlation_spectra, jackknife
from cmbml.lensing.physics import deflection_from_kappa, lens_map, remap_bicubic, remap_fourier
from cmbml.lensing.quadratic_estimator import QuadraticEstimator, binned_wiener_rho, shell_average
from cmbml.lensing.simulate import LensingSimulator

CALIBRATION_STREAM = 3
"""Random stream of the maps that measure the estimator's spectra (the datasets use 0, 1 and 2)."""
N_CALIBRATION_MAPS = 1000
"""Maps that measure the spectra: the per-shell scatter of the total power is then about 2 % on 50 x 50 grids,
which moves rho by far less than its sampling error on 1000 test maps (tested)."""
LEAK_Z = 3.0
"""A network whose mean rho lies this many (paired) standard errors above its leak bound at physical kappa is
flagged (:func:`leak_bound`, :func:`compare`)."""
FIRST_ORDER_EPSILON = 0.05
"""Scale of the kappa used to measure the estimator's first-order response (second order cancels exactly)."""


def _lens(
    grid: FlatGrid, maps: Sequence[np.ndarray], kappa: np.ndarray, remap: str, epsilon: float, oversampling: int = 1
) -> list:
    maps = [np.asarray(m, dtype=np.float64) for m in maps]  # the NUFFT's accuracy needs double precision
    if oversampling != 1:  # as the simulator lenses (band-limited)
        return [lens_map(grid, m, np.asarray(kappa, dtype=np.float64), remap, epsilon, oversampling) for m in maps]
    d_x, d_y = deflection_from_kappa(grid, np.asarray(kappa, dtype=np.float64))
    if remap == "fourier":
        return [remap_fourier(grid, m, d_x, d_y, epsilon) for m in maps]
    return [remap_bicubic(grid, m, d_x, d_y) for m in maps]


def sky_spectra(simulator: LensingSimulator, n_maps: int = N_CALIBRATION_MAPS) -> dict[str, np.ndarray]:
    """The spectra of the simulated sky that the estimator needs, one value per shell of grid modes (uK^2 sr).

    ``cl_weight``: the unlensed T spectrum band-limited at ``T_lmax`` (what the simulator draws);
    ``cl_total``: the mean power of lensed T plus noise; ``cl_response``: the lensed gradient spectrum
    ``C^{T grad T}``, from ``<T~(l)* (grad T)~(l)> = i l C^{T grad T}_l`` with ``(grad T)~`` the unlensed
    gradient remapped by the same deflection. ``n_maps`` maps of :data:`CALIBRATION_STREAM`.
    """
    grid, config = simulator.grid, simulator.config
    lx, ly = grid.ell_xy
    ell2 = np.where(grid.ell > 0, grid.ell**2, 1.0)
    total = cross = 0.0
    for i in range(int(n_maps)):
        s = simulator.sample_stream(CALIBRATION_STREAM, i)
        t_l = np.fft.fft2(s["T_unlensed"])
        grad = [np.fft.ifft2(1j * l_i * t_l).real for l_i in (lx, ly)]
        g_x, g_y = (
            np.fft.fft2(g)
            for g in _lens(grid, grad, s["kappa"], config.remap, config.remap_epsilon, config.oversampling)
        )
        lensed = np.fft.fft2(s["T_lensed"])
        total = total + np.abs(lensed) ** 2
        # noise is independent of the gradient, so it averages out of the cross-spectrum
        cross = cross + (np.conj(lensed) * (g_x * lx + g_y * ly) / (1j * ell2)).real
    norm = grid.dx**2 / grid.npix**2 / int(n_maps)
    weight = shell_average(grid, simulator.cl_tt_grid)
    response = np.where(weight > 0, shell_average(grid, np.where(grid.ell > 0, cross * norm, 0.0)), 0.0)
    return {"cl_weight": weight, "cl_total": shell_average(grid, total * norm), "cl_response": response}


def sky_estimator(simulator: LensingSimulator, n_maps: int = N_CALIBRATION_MAPS) -> QuadraticEstimator:
    """The quadratic estimator consistent with the simulator's maps (:func:`sky_spectra`)."""
    return QuadraticEstimator(simulator.grid, **sky_spectra(simulator, n_maps))


def first_order_response(
    estimator: QuadraticEstimator,
    t_unlensed: np.ndarray,
    kappa: np.ndarray,
    edges: np.ndarray,
    remap: str = "fourier",
    remap_epsilon: float = 1e-10,
    eps: float = FIRST_ORDER_EPSILON,
    oversampling: int = 1,
) -> np.ndarray:
    """The estimator's response to lensing at first order, per bin: ``<k_hat_1 kappa> / <kappa kappa>`` with
    ``k_hat_1 = [QE(T lensed by eps kappa) - QE(T lensed by -eps kappa)] / (2 eps)``; 1 when the estimate is
    normalised right. ``t_unlensed`` and ``kappa`` are (N, npix, npix) maps; no noise is added (it would cancel)."""
    grid = estimator.grid
    plus, minus = [], []
    for t, k in zip(t_unlensed, kappa):
        plus += _lens(grid, [t], eps * k, remap, remap_epsilon, oversampling)
        minus += _lens(grid, [t], -eps * k, remap, remap_epsilon, oversampling)
    k_hat = (estimator.reconstruct(np.stack(plus)) - estimator.reconstruct(np.stack(minus))) / (2 * eps)
    return correlation_spectra(grid, k_hat, np.asarray(kappa, dtype=np.float64), edges).response


def leak_bound(
    estimator: QuadraticEstimator, cl_kk_grid: np.ndarray, edges: np.ndarray, optimal_n0_gain: float
) -> np.ndarray:
    """The highest rho per bin that an estimator of kappa may reach from these maps without a leak.

    The quadratic estimator's limit ``sqrt(C / (C + (1 - g) N0))`` with its noise reduced by ``g``, the largest
    share of N0 that an optimal (likelihood) estimator removes at the maps' noise level: for temperature about
    0.01 at Planck-like noise, 0.1-0.2 at low noise (Hirata & Seljak 2003). On noise-free maps the quadratic
    estimator is not the optimum, so a network may beat it honestly, but not by more than the optimum does.
    """
    if not 0.0 <= optimal_n0_gain < 1.0:
        raise ValueError(f"optimal_n0_gain = {optimal_n0_gain!r}: must lie in [0, 1)")
    return binned_wiener_rho(estimator.grid, cl_kk_grid, (1.0 - optimal_n0_gain) * estimator.n0, edges)[1]


def _mean_rho(s: CorrelationSpectra) -> np.ndarray:
    return np.mean(s.rho)


def compare(
    network: CorrelationSpectra,
    qe: CorrelationSpectra,
    rho_opt: np.ndarray,
    physical: bool,
    prefix: str = "cnn",
    rho_bound: np.ndarray | None = None,
) -> tuple[list[dict], dict[str, float]]:
    """Per-bin rows and summary metrics of a network beside the quadratic estimator on the same maps.

    Rows: ``L``, ``rho_<prefix>`` and ``rho_qe`` with jackknife errors (``_err``), ``rho_opt``, responses.
    Metrics: ``rho_<prefix>_mean``, ``rho_qe_mean`` (errors ``_err``), ``rho_opt_mean``,
    ``<prefix>_over_qe`` (mean rho over mean rho, with the paired error), ``qe_over_limit_max_z`` (the largest
    ``(rho_qe - rho_opt) / err`` over bins: above 2 the estimator beats its own limit, so its spectra are wrong),
    and at physical kappa the leak guard: the reference in each bin is the larger of the estimator's measured
    rho and ``rho_bound`` (:func:`leak_bound`; the estimator alone when None); ``leak_z`` is the network's mean
    excess over it in (paired) jackknife errors and ``leak_suspected`` is 1 above :data:`LEAK_Z`.
    """
    rho_n, err_n = jackknife(lambda s: s.rho, [network])
    rho_q, err_q = jackknife(lambda s: s.rho, [qe])
    rows = [
        {
            "L": float(network.ell[i]),
            f"rho_{prefix}": float(rho_n[i]),
            f"rho_{prefix}_err": float(err_n[i]),
            "rho_qe": float(rho_q[i]),
            "rho_qe_err": float(err_q[i]),
            "rho_opt": float(rho_opt[i]),
            f"response_{prefix}": float(network.response[i]),
            "response_qe": float(qe.response[i]),
            f"noise_{prefix}": float(network.effective_noise[i]),
            "cl_kk": float(network.cl_true[i]),
        }
        for i in range(len(network.ell))
    ]
    mean_n, mean_n_err = jackknife(_mean_rho, [network])
    mean_q, mean_q_err = jackknife(_mean_rho, [qe])
    ratio, ratio_err = jackknife(lambda a, b: np.mean(a.rho) / np.mean(b.rho), [network, qe])
    metrics = {
        f"rho_{prefix}_mean": float(mean_n),
        f"rho_{prefix}_mean_err": float(mean_n_err),
        "rho_qe_mean": float(mean_q),
        "rho_qe_mean_err": float(mean_q_err),
        "rho_opt_mean": float(np.mean(rho_opt)),
        f"{prefix}_over_qe": float(ratio),
        f"{prefix}_over_qe_err": float(ratio_err),
        f"{prefix}_over_qe_min": float(np.min(rho_n / rho_q)),
        "qe_over_limit_max_z": float(np.max((rho_q - rho_opt) / np.maximum(err_q, 1e-12))),
    }
    if physical:
        bound = np.full(len(network.ell), -np.inf) if rho_bound is None else np.asarray(rho_bound, dtype=float)
        excess, excess_err = jackknife(lambda a, b: np.mean(a.rho - np.maximum(bound, b.rho)), [network, qe])
        metrics["leak_z"] = float(excess / max(excess_err, 1e-12))
        if rho_bound is not None:
            metrics["rho_leak_bound_mean"] = float(np.mean(bound))
        metrics["leak_suspected"] = float(metrics["leak_z"] > LEAK_Z)
    return rows, metrics
