"""Lensing figures: rho(L), kappa power and the version comparison.

Every axis carries its unit (see cmbml.common.plotting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cmbml.common.plotting import KAPPA_POWER_LABEL, plain_log_ticks, power_error, pyplot, save_figure


def kappa_units(exaggeration: float) -> str:
    """Colour-bar / axis unit of a convergence map simulated with ``kappa_exaggeration_factor``."""
    return rf"$\kappa$ (× {exaggeration:g}), dimensionless"


def rho_error(rho: np.ndarray, n_modes: np.ndarray) -> np.ndarray:
    """Standard error of a correlation coefficient measured on ``n_modes`` independent Gaussian pairs,
    ``sigma_rho = (1 - rho^2) / sqrt(n - 1)``.

    A real map's Fourier modes at ``l`` and ``-l`` are complex conjugates, so the full-plane count of grid
    modes in a bin equals its number of independent real degrees of freedom; summed over independent
    maps it is the ``n`` here. This is the large-``n`` Gaussian result; tests/unit/common/test_plots.py checks it
    against the scatter of rho(L) over simulated map stacks.
    """
    rho = np.asarray(rho, dtype=float)
    n = np.asarray(n_modes, dtype=float)
    return (1.0 - rho**2) / np.sqrt(np.maximum(n - 1.0, 1.0))


def plot_rho(
    ell: np.ndarray,
    rho: np.ndarray,
    path: str | Path,
    title: str,
    references: Sequence[tuple[np.ndarray, np.ndarray, str]] = (),
    limits: Sequence[tuple[np.ndarray, np.ndarray, str]] = (),
    n_modes: np.ndarray | None = None,
    exaggeration: float | None = None,
) -> None:
    """rho(L) of the network on a log-L axis, beside other estimators measured on the same maps
    (``references``, ``(ell, rho, label)``) and theoretical limits (``limits``, same form).

    Parameters
    ----------
    n_modes : numpy.ndarray, optional
        Per bin, the grid modes in the bin times the number of independent maps. With it the measured
        curves get 1-sigma error bars ``(1 - rho^2) / sqrt(n - 1)`` (:func:`rho_error`), the standard
        error of a correlation coefficient from ``n`` independent Gaussian modes (maps assumed independent:
        with ``same_T_realisation`` the reconstruction noise may correlate across maps, and the bars are
        then lower bounds). The estimators share the test maps, so their errors are correlated: their
        difference is better measured than the bars suggest. The limits are theory: no error bars.
    exaggeration : float, optional
        The simulation's ``kappa_exaggeration_factor``, stated in the title: rho depends on it through
        the signal-to-noise ratio.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))

    def draw(x, y, style, label, **kwargs):
        err = None if n_modes is None else rho_error(y, n_modes)
        ax.errorbar(x, y, yerr=err, fmt=style, capsize=3 if err is not None else 0, label=label, **kwargs)

    draw(ell, rho, "o-", "CNN", zorder=3)
    for ref_ell, ref_rho, label in references:
        draw(ref_ell, ref_rho, "s--", label, ms=4)
    for lim_ell, lim_rho, label in limits:
        ax.plot(lim_ell, lim_rho, ":", marker=".", label=label)
    ax.axhline(0, color="k", lw=0.5)
    curves = [np.asarray(rho)] + [np.asarray(r[1]) for r in (*references, *limits)]
    low = min(float(np.nanmin(c)) for c in curves)
    if exaggeration is not None:
        title = rf"{title} ($\kappa$ × {exaggeration:g})"
    ax.set(
        xscale="log",
        xlabel=r"multipole $L$",
        ylabel=r"$\rho(L)$ (dimensionless)",
        title=title,
        ylim=(min(-0.05, low - 0.05), 1.05),
    )
    plain_log_ticks(ax.xaxis)
    if n_modes is not None:
        ax.plot([], [], " ", label=r"bars: $1\sigma = (1-\rho^2)/\sqrt{n_\mathrm{modes}-1}$")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_kappa_power(
    ell: np.ndarray,
    measured: Mapping[str, np.ndarray],
    noise: Mapping[str, np.ndarray],
    n_modes: np.ndarray,
    path: str | Path,
    title: str,
    cl_kk: np.ndarray | None = None,
    exaggeration: float = 1.0,
) -> None:
    """Binned convergence power of maps and reconstruction noise on log-log axes, with the theory.

    Parameters
    ----------
    ell : numpy.ndarray
        Bin centres (mean multipole L of the grid modes in each bin).
    measured : mapping of str to numpy.ndarray
        Power measured on the maps (e.g. true and predicted kappa), dimensionless (kappa exaggerated):
        drawn with Gaussian error bars ``C sqrt(2 / n_modes)`` (:func:`power_error`).
    noise : mapping of str to numpy.ndarray
        Noise spectra (e.g. the CNN's effective noise, the quadratic estimator's N0), drawn as lines.
    n_modes : numpy.ndarray
        Per bin, the grid modes in the bin times the number of independent maps averaged.
    cl_kk : numpy.ndarray, optional
        CAMB convergence spectrum indexed by L, before exaggeration; drawn times ``exaggeration**2``
        over the multipoles the bins span.
    exaggeration : float
        The simulation's ``kappa_exaggeration_factor``.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if cl_kk is not None:
        L = np.arange(int(np.floor(ell.min())), min(int(np.ceil(ell.max())), len(cl_kk) - 1) + 1)
        ax.plot(
            L,
            cl_kk[L] * exaggeration**2,
            "k-",
            lw=1.2,
            zorder=4,
            label=rf"CAMB $C_L^{{\kappa\kappa}}$ × {exaggeration:g}$^2$",
        )
    for name, values in measured.items():
        ax.errorbar(ell, values, yerr=power_error(values, n_modes), fmt="o", ms=4, capsize=3, label=name, zorder=5)
    for name, values in noise.items():
        ax.plot(ell, values, "--", lw=1.2, label=name)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=r"multipole $L$ of $\kappa$",
        ylabel=KAPPA_POWER_LABEL,
        title=rf"{title} ($\kappa$ × {exaggeration:g})",
    )
    plain_log_ticks(ax.xaxis)
    ax.plot([], [], " ", label=r"bars: cosmic variance $C\sqrt{2/n_\mathrm{modes}}$")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_rho_versions(records: Sequence[Mapping], path: str | Path) -> None:
    """rho(L) of every lensing version on one log-L figure: for each version its best network solid (the
    architecture in the legend), the QE dashed, the QE's Wiener limit dotted; each version's kappa exaggeration
    factor (from its ``params``) in the legend. ``records`` may hold several runs (architectures) per version."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    best: dict[str, Mapping] = {}
    for rec in records:
        if rec["name"] not in best or rec["metrics"]["rho_cnn_mean"] > best[rec["name"]]["metrics"]["rho_cnn_mean"]:
            best[rec["name"]] = rec
    for k, rec in enumerate(best.values()):
        rows, colour = rec["rows"], colours[k % len(colours)]
        ell = [r["L"] for r in rows]
        # rho depends on the signal-to-noise ratio, so each version's kappa exaggeration is in its legend entry
        params = rec.get("params", {})
        factor = params.get("kappa_exaggeration_factor")
        boost = rf" ($\kappa$ × {float(factor):g})" if factor is not None else ""
        arch = params.get("lensing_net.architecture", "original")
        ax.plot(ell, [r["rho_cnn"] for r in rows], "-", color=colour, lw=1.6, label=f"{rec['name']} {arch}{boost}")
        ax.plot(ell, [r["rho_qe"] for r in rows], "--", color=colour, lw=1)
        ax.plot(ell, [r["rho_opt"] for r in rows], ":", color=colour, lw=1)
    ax.plot([], [], "k--", lw=1, label="quadratic estimator")
    ax.plot([], [], "k:", lw=1, label="QE Wiener limit")
    ax.set(
        xscale="log",
        xlabel=r"multipole $L$",
        ylabel=r"$\rho(L)$ of estimated and true $\kappa$ (dimensionless)",
        ylim=(-0.05, 1.02),
        title="lensing v1-v8 at scale=default: best network, quadratic estimator and its limit on the same test maps",
    )
    ax.axhline(0, color="k", lw=0.5)
    plain_log_ticks(ax.xaxis)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)
