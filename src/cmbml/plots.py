"""Figures: theory spectra, maps, training curves and reconstruction quality.

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


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    from cmbml.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=Path(path).suffix.lstrip("."))
    _plt().close(fig)


def _plain_log_ticks(axis) -> None:
    """Log-axis labels as plain numbers (20, 30, 100; 0.7, 0.8), not 2x10^1, which reads badly over short spans."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):  # LogFormatter's choice of ticks to label, written with %g
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}"

    axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


def kappa_units(exaggeration: float) -> str:
    """Colour-bar / axis unit of a convergence map simulated with ``kappa_exaggeration_factor``."""
    return rf"$\kappa$ (× {exaggeration:g}), dimensionless"


def rho_error(rho: np.ndarray, n_modes: np.ndarray) -> np.ndarray:
    """Standard error of a correlation coefficient measured on ``n_modes`` independent Gaussian pairs,
    ``sigma_rho = (1 - rho^2) / sqrt(n - 1)``.

    A real map's Fourier modes at ``l`` and ``-l`` are complex conjugates, so the full-plane count of grid
    modes in a bin equals its number of independent real degrees of freedom; summed over independent
    maps it is the ``n`` here. This is the large-``n`` Gaussian result; tests/unit/test_plots.py checks it
    against the scatter of rho(L) over simulated map stacks.
    """
    rho = np.asarray(rho, dtype=float)
    n = np.asarray(n_modes, dtype=float)
    return (1.0 - rho**2) / np.sqrt(np.maximum(n - 1.0, 1.0))


def power_error(cl: np.ndarray, n_modes: np.ndarray) -> np.ndarray:
    """Gaussian (cosmic-variance) error of a binned power averaged over ``n_modes`` full-plane grid modes of
    real maps: half of them are independent complex modes, so ``sigma_C = C sqrt(2 / n_modes)``."""
    return np.asarray(cl, dtype=float) * np.sqrt(2.0 / np.asarray(n_modes, dtype=float))


def plot_theory_spectra(spectra: Mapping[str, np.ndarray], path: str | Path) -> None:
    """D_ell of TT (unlensed, lensed), EE, BB (µK^2) and the convergence spectrum C_L^kk (dimensionless)."""
    from cmbml.spectra import cl_to_dl

    plt = _plt()
    ell = spectra["ell"]
    sel = ell >= 2
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in [("cl_tt_unlensed", "TT unlensed"), ("cl_tt_lensed", "TT lensed"),
                       ("cl_ee_lensed", "EE lensed"), ("cl_bb_lensed", "BB lensed")]:
        ax1.loglog(ell[sel], cl_to_dl(ell[sel], spectra[key][sel]), label=label)
    ax1.set(xlabel=r"multipole $\ell$", ylabel=r"$D_\ell = \ell(\ell+1)C_\ell/2\pi$ [µK$^2$]",
            title="CAMB CMB spectra")
    ax1.legend()
    ax2.loglog(ell[sel], spectra["cl_kk"][sel])
    ax2.set(xlabel=r"multipole $L$", ylabel=KAPPA_POWER_LABEL,
            title=r"Convergence spectrum $[L(L+1)]^2 C_L^{\phi\phi}/4$")
    _save(fig, path)


def plot_training_curve(history: Mapping[str, Sequence[float]], path: str | Path, title: str) -> None:
    """Training and validation loss per epoch (log scale), with the best epoch (lowest ``val_loss``, the
    weights that are kept) marked."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("loss", "val_loss"):
        if key in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], "o-", ms=4, label=key)
    if len(history.get("val_loss", [])):
        best = int(np.argmin(history["val_loss"])) + 1
        ax.axvline(best, color="k", ls=":", lw=1, label=f"best epoch {best} (lowest val_loss)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="loss: standardised MSE (dimensionless)", title=title, yscale="log")
    _plain_log_ticks(ax.yaxis)
    ax.legend()
    _save(fig, path)


def plot_map_columns(maps: Mapping[str, np.ndarray], path: str | Path, side_deg: float, units: str, title: str,
                     same_scale_as: Mapping[str, str] | None = None,
                     column_units: Mapping[str, str] | None = None) -> None:
    """Rows of examples; columns are the entries of ``maps`` (each (n_examples, n, n)).

    Each panel has its own symmetric colour scale unless ``same_scale_as`` maps its column to
    another one (e.g. prediction and residual on the truth's scale). ``units`` labels every colour
    bar, unless ``column_units`` gives a column its own (e.g. T in µK beside kappa maps).
    """
    plt = _plt()
    names = list(maps)
    same_scale_as = same_scale_as or {}
    column_units = column_units or {}
    n_rows = next(iter(maps.values())).shape[0]
    fig, axes = plt.subplots(n_rows, len(names), figsize=(3.4 * len(names), 2.9 * n_rows), squeeze=False,
                             layout="constrained")
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
    _save(fig, path)


def plot_rho(ell: np.ndarray, rho: np.ndarray, path: str | Path, title: str,
             references: Sequence[tuple[np.ndarray, np.ndarray, str]] = (),
             limits: Sequence[tuple[np.ndarray, np.ndarray, str]] = (),
             n_modes: np.ndarray | None = None, exaggeration: float | None = None) -> None:
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
    plt = _plt()
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
    ax.set(xscale="log", xlabel=r"multipole $L$", ylabel=r"$\rho(L)$ (dimensionless)", title=title,
           ylim=(min(-0.05, low - 0.05), 1.05))
    _plain_log_ticks(ax.xaxis)
    if n_modes is not None:
        ax.plot([], [], " ", label=r"bars: $1\sigma = (1-\rho^2)/\sqrt{n_\mathrm{modes}-1}$")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_kappa_power(ell: np.ndarray, measured: Mapping[str, np.ndarray], noise: Mapping[str, np.ndarray],
                     n_modes: np.ndarray, path: str | Path, title: str, cl_kk: np.ndarray | None = None,
                     exaggeration: float = 1.0) -> None:
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
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if cl_kk is not None:
        L = np.arange(int(np.floor(ell.min())), min(int(np.ceil(ell.max())), len(cl_kk) - 1) + 1)
        ax.plot(L, cl_kk[L] * exaggeration**2, "k-", lw=1.2, zorder=4,
                label=rf"CAMB $C_L^{{\kappa\kappa}}$ × {exaggeration:g}$^2$")
    for name, values in measured.items():
        ax.errorbar(ell, values, yerr=power_error(values, n_modes), fmt="o", ms=4, capsize=3, label=name, zorder=5)
    for name, values in noise.items():
        ax.plot(ell, values, "--", lw=1.2, label=name)
    ax.set(xscale="log", yscale="log", xlabel=r"multipole $L$ of $\kappa$", ylabel=KAPPA_POWER_LABEL,
           title=rf"{title} ($\kappa$ × {exaggeration:g})")
    _plain_log_ticks(ax.xaxis)
    ax.plot([], [], " ", label=r"bars: cosmic variance $C\sqrt{2/n_\mathrm{modes}}$")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_full_sky_check(tqu: np.ndarray, measured_cls: np.ndarray, theory: Mapping[str, np.ndarray], nside: int,
                        path: str | Path) -> None:
    """Mollweide Q map (µK) and the realisation's TT/EE/BB spectra against the input (pixel window applied)."""
    import healpy as hp

    from cmbml.spectra import cl_to_dl

    plt = _plt()
    fig = plt.figure(figsize=(13, 4.5))
    hp.mollview(tqu[1], fig=fig.number, sub=(1, 2, 1), title=f"CMB Q [{MICROKELVIN}], realisation 0",
                unit=MICROKELVIN, cmap="RdBu_r")
    ax = fig.add_subplot(1, 2, 2)
    lmax = measured_cls.shape[1] - 1
    ell = np.arange(2, lmax + 1)
    for i, (key, label) in enumerate([("cl_tt_lensed", "TT"), ("cl_ee_lensed", "EE"), ("cl_bb_lensed", "BB")]):
        ax.loglog(ell, cl_to_dl(ell, measured_cls[i][2:]), lw=0.8, label=f"{label} map")
        ax.loglog(ell, cl_to_dl(ell, theory[key][2 : lmax + 1]), "k--", lw=0.8)
    ax.set(xlabel=r"multipole $\ell$", ylabel=r"$D_\ell$ [µK$^2$]",
           title=f"nside {nside}: anafast (colour) vs CAMB (dashed)")
    ax.legend()
    _save(fig, path)


def plot_foreground_channels(q_maps: Mapping[float, np.ndarray], nside: int, path: str | Path) -> None:
    """Mollweide views of the total foreground Q (``q_maps[freq]``, HEALPix, µK_CMB) at each channel,
    log-stretched: ``asinh(Q / sigma_Q)`` with sigma_Q the channel's rms (in each title), so one colour
    bar reads for every channel."""
    import healpy as hp

    plt = _plt()
    fig = plt.figure(figsize=(5 * len(q_maps), 4.0))
    for i, (freq, q) in enumerate(sorted(q_maps.items())):
        rms = max(float(np.std(q)), 1e-12)
        hp.mollview(np.arcsinh(q / rms), fig=fig.number, sub=(1, len(q_maps), i + 1),
                    title=rf"foreground Q, {freq:g} GHz ($\sigma_Q$ = {rms:.3g} {MICROKELVIN})",
                    cmap="RdBu_r", min=-3, max=3, cbar=True, unit=r"asinh($Q/\sigma_Q$)")
    # healpy writes the unit between the colour bar's end ticks: the long form goes in the super-title
    fig.suptitle(r"total polarized foregrounds; colour: asinh($Q/\sigma_Q$), dimensionless, $\sigma_Q$ the "
                 "channel's rms", y=0.98)
    _save(fig, path)


def plot_cenn_patches(inputs: np.ndarray, labels: np.ndarray, outputs: np.ndarray, freqs: Sequence[float],
                      side_deg: float, path: str | Path, title: str) -> None:
    """Per example: the input channels, the CMB label, the network output and the residual (µK)."""
    maps = {f"input {f:g} GHz": inputs[..., k] for k, f in enumerate(freqs)}
    maps.update({"label (CMB)": labels, "CENN output": outputs, "residual": outputs - labels})
    plot_map_columns(maps, path, side_deg, f"{MICROKELVIN} (CMB)", title,
                     same_scale_as={"CENN output": "label (CMB)", "residual": "label (CMB)"})


def plot_cenn_spectra(ell: np.ndarray, dl: Mapping[str, np.ndarray], theory_dl: np.ndarray, path: str | Path,
                      title: str, labels: Mapping[str, str]) -> None:
    """Spectra of the label and of each method's estimate (left), each method's transfer, estimate power
    over label power (middle), and the residual D_ell of each method (right); mean over patches, the
    network's band is the scatter. ``dl[name]`` is (patches, bins) in µK^2; ``labels`` maps methods to
    legend names. All axes are logarithmic: the ILCs' power is orders of magnitude above the network's,
    and the theory is drawn last, on top."""
    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.8), layout="constrained")
    label_mean = dl["label"].mean(0)
    for method, name in labels.items():
        mean = dl[method].mean(0)
        ax1.plot(ell, mean, "-", lw=1.8 if method == "network" else 1, label=name)
        ax2.plot(ell, mean / label_mean, "o-", ms=3, label=name)
        res = dl[f"{method} residual"]
        if method == "network":
            ax3.fill_between(ell, res.mean(0) - res.std(0), res.mean(0) + res.std(0), alpha=0.2)
        ax3.plot(ell, res.mean(0), "o-", ms=3, label=name)
    ax1.plot(ell, label_mean, "o", mfc="none", mec="k", ms=5, zorder=9, label="label (mean of patches)")
    ax1.plot(ell, theory_dl, "--", color="0.15", lw=2.2, zorder=10, label="theory × beam × window")
    ax1.set(xscale="log", yscale="log", xlabel=r"multipole $\ell$", ylabel=r"$D_\ell$ [µK$^2$]", title=title)
    ax2.axhline(1, color="k", lw=0.8, ls="--", zorder=10)
    ax2.set(xscale="log", yscale="log", xlabel=r"multipole $\ell$",
            ylabel="estimate / label power (dimensionless)", title="transfer")
    ax3.set(xscale="log", yscale="log", xlabel=r"multipole $\ell$", ylabel=r"residual $D_\ell$ [µK$^2$]",
            title="residual (estimate - label) power")
    for ax in (ax1, ax2, ax3):
        _plain_log_ticks(ax.xaxis)
        ax.legend(fontsize=7)
    _save(fig, path)


def plot_rho_versions(records: Sequence[Mapping], path: str | Path) -> None:
    """rho(L) of every lensing version on one log-L figure: CNN solid, QE dashed, the QE's Wiener limit dotted;
    each version's kappa exaggeration factor (from its ``params``) in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, rec in enumerate(records):
        rows, colour = rec["rows"], colours[k % len(colours)]
        ell = [r["L"] for r in rows]
        # rho depends on the signal-to-noise ratio, so each version's kappa exaggeration is in its legend entry
        factor = rec.get("params", {}).get("kappa_exaggeration_factor")
        boost = rf" ($\kappa$ × {float(factor):g})" if factor is not None else ""
        ax.plot(ell, [r["rho_cnn"] for r in rows], "-", color=colour, lw=1.6, label=f"{rec['name']} CNN{boost}")
        ax.plot(ell, [r["rho_qe"] for r in rows], "--", color=colour, lw=1)
        ax.plot(ell, [r["rho_opt"] for r in rows], ":", color=colour, lw=1)
    ax.plot([], [], "k--", lw=1, label="quadratic estimator")
    ax.plot([], [], "k:", lw=1, label="QE Wiener limit")
    ax.set(xscale="log", xlabel=r"multipole $L$", ylabel=r"$\rho(L)$ of estimated and true $\kappa$ (dimensionless)",
           ylim=(-0.05, 1.02),
           title="lensing v1-v8 at scale=default: CNN, quadratic estimator and its limit on the same test maps")
    ax.axhline(0, color="k", lw=0.5)
    _plain_log_ticks(ax.xaxis)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)
