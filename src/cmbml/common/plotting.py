"""Figures shared by both experiments (theory spectra, maps, training curves) and the helpers every figure uses.

Every axis carries its unit: temperatures and polarization in µK (CMB thermodynamic), power in µK^2,
convergence, correlation coefficients and transfers dimensionless (kappa times the simulation's
exaggeration factor where the maps were exaggerated), angles in degrees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

MICROKELVIN = "µK"
KAPPA_POWER_LABEL = r"$C_L^{\kappa\kappa}$ (dimensionless)"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> None:
    from cmbml.common.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=Path(path).suffix.lstrip("."))
    pyplot().close(fig)


def plain_log_ticks(axis) -> None:
    """Log-axis labels as plain numbers (20, 30, 100; 0.7, 0.8), not 2x10^1, which reads badly over short spans."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):  # LogFormatter's choice of ticks to label, written with %g
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}"

    axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


def power_error(cl: np.ndarray, n_modes: np.ndarray) -> np.ndarray:
    """Gaussian (cosmic-variance) error of a binned power averaged over ``n_modes`` full-plane grid modes of
    real maps: half of them are independent complex modes, so ``sigma_C = C sqrt(2 / n_modes)``."""
    return np.asarray(cl, dtype=float) * np.sqrt(2.0 / np.asarray(n_modes, dtype=float))


def plot_theory_spectra(spectra: Mapping[str, np.ndarray], path: str | Path) -> None:
    """D_ell of TT (unlensed, lensed), EE, BB (µK^2) and the convergence spectrum C_L^kk (dimensionless)."""
    from cmbml.common.spectra import cl_to_dl

    plt = pyplot()
    ell = spectra["ell"]
    sel = ell >= 2
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in [
        ("cl_tt_unlensed", "TT unlensed"),
        ("cl_tt_lensed", "TT lensed"),
        ("cl_ee_lensed", "EE lensed"),
        ("cl_bb_lensed", "BB lensed"),
    ]:
        ax1.loglog(ell[sel], cl_to_dl(ell[sel], spectra[key][sel]), label=label)
    ax1.set(xlabel=r"multipole $\ell$", ylabel=r"$D_\ell = \ell(\ell+1)C_\ell/2\pi$ [µK$^2$]", title="CAMB CMB spectra")
    ax1.legend()
    ax2.loglog(ell[sel], spectra["cl_kk"][sel])
    ax2.set(
        xlabel=r"multipole $L$", ylabel=KAPPA_POWER_LABEL, title=r"Convergence spectrum $[L(L+1)]^2 C_L^{\phi\phi}/4$"
    )
    save_figure(fig, path)


def plot_training_curve(history: Mapping[str, Sequence[float]], path: str | Path, title: str) -> None:
    """Training and validation loss per epoch (log scale), with the best epoch (lowest ``val_loss``, the
    weights that are kept) marked."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("loss", "val_loss"):
        if key in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], "o-", ms=4, label=key)
    if len(history.get("val_loss", [])):
        best = int(np.argmin(history["val_loss"])) + 1
        ax.axvline(best, color="k", ls=":", lw=1, label=f"best epoch {best} (lowest val_loss)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="loss: standardised MSE (dimensionless)", title=title, yscale="log")
    plain_log_ticks(ax.yaxis)
    ax.legend()
    save_figure(fig, path)


def plot_map_columns(
    maps: Mapping[str, np.ndarray],
    path: str | Path,
    side_deg: float,
    units: str,
    title: str,
    same_scale_as: Mapping[str, str] | None = None,
    column_units: Mapping[str, str] | None = None,
) -> None:
    """Rows of examples; columns are the entries of ``maps`` (each (n_examples, n, n)).

    Each panel has its own symmetric colour scale unless ``same_scale_as`` maps its column to
    another one (e.g. prediction and residual on the truth's scale). ``units`` labels every colour
    bar, unless ``column_units`` gives a column its own (e.g. T in µK beside kappa maps).
    """
    plt = pyplot()
    names = list(maps)
    same_scale_as = same_scale_as or {}
    column_units = column_units or {}
    n_rows = next(iter(maps.values())).shape[0]
    fig, axes = plt.subplots(
        n_rows, len(names), figsize=(3.4 * len(names), 2.9 * n_rows), squeeze=False, layout="constrained"
    )
    extent = [0, side_deg, 0, side_deg]
    for i in range(n_rows):
        for j, name in enumerate(names):
            ax = axes[i, j]
            lim = float(np.abs(maps[same_scale_as.get(name, name)][i]).max()) or 1.0
            im = ax.imshow(maps[name][i], origin="lower", cmap="RdBu_r", extent=extent, vmin=-lim, vmax=lim)
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelsize=7)
            if i == n_rows - 1:
                ax.set_xlabel("x [deg]", fontsize=8)
            if j == 0:
                ax.set_ylabel("y [deg]", fontsize=8)
            cbar = fig.colorbar(im, ax=ax, shrink=0.85)
            cbar.set_label(column_units.get(name, units), fontsize=8)
            cbar.ax.tick_params(labelsize=7)
    fig.suptitle(title)
    save_figure(fig, path)
