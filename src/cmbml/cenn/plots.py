"""Component-separation figures: full-sky checks, foreground channels, patches and spectra.

Every axis carries its unit (see cmbml.common.plotting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cmbml.common.plotting import MICROKELVIN, plain_log_ticks, plot_map_columns, pyplot, save_figure


def plot_full_sky_check(
    tqu: np.ndarray, measured_cls: np.ndarray, theory: Mapping[str, np.ndarray], nside: int, path: str | Path
) -> None:
    """Mollweide Q map (µK) and the realisation's TT/EE/BB spectra against the input (pixel window applied)."""
    import healpy as hp

    from cmbml.common.spectra import cl_to_dl

    plt = pyplot()
    fig = plt.figure(figsize=(13, 4.5))
    hp.mollview(
        tqu[1],
        fig=fig.number,
        sub=(1, 2, 1),
        title=f"CMB Q [{MICROKELVIN}], realisation 0",
        unit=MICROKELVIN,
        cmap="RdBu_r",
    )
    ax = fig.add_subplot(1, 2, 2)
    lmax = measured_cls.shape[1] - 1
    ell = np.arange(2, lmax + 1)
    for i, (key, label) in enumerate([("cl_tt_lensed", "TT"), ("cl_ee_lensed", "EE"), ("cl_bb_lensed", "BB")]):
        ax.loglog(ell, cl_to_dl(ell, measured_cls[i][2:]), lw=0.8, label=f"{label} map")
        ax.loglog(ell, cl_to_dl(ell, theory[key][2 : lmax + 1]), "k--", lw=0.8)
    ax.set(
        xlabel=r"multipole $\ell$",
        ylabel=r"$D_\ell$ [µK$^2$]",
        title=f"nside {nside}: anafast (colour) vs CAMB (dashed)",
    )
    ax.legend()
    save_figure(fig, path)


def plot_foreground_channels(q_maps: Mapping[float, np.ndarray], nside: int, path: str | Path) -> None:
    """Mollweide views of the total foreground Q (``q_maps[freq]``, HEALPix, µK_CMB) at each channel,
    log-stretched: ``asinh(Q / sigma_Q)`` with sigma_Q the channel's rms (in each title), so one colour
    bar reads for every channel."""
    import healpy as hp

    plt = pyplot()
    fig = plt.figure(figsize=(5 * len(q_maps), 4.0))
    for i, (freq, q) in enumerate(sorted(q_maps.items())):
        rms = max(float(np.std(q)), 1e-12)
        hp.mollview(
            np.arcsinh(q / rms),
            fig=fig.number,
            sub=(1, len(q_maps), i + 1),
            title=rf"foreground Q, {freq:g} GHz ($\sigma_Q$ = {rms:.3g} {MICROKELVIN})",
            cmap="RdBu_r",
            min=-3,
            max=3,
            cbar=True,
            unit=r"asinh($Q/\sigma_Q$)",
        )
    # healpy writes the unit between the colour bar's end ticks: the long form goes in the super-title
    fig.suptitle(
        r"total polarized foregrounds; colour: asinh($Q/\sigma_Q$), dimensionless, $\sigma_Q$ the "
        "channel's rms",
        y=0.98,
    )
    save_figure(fig, path)


def plot_cenn_patches(
    inputs: np.ndarray,
    labels: np.ndarray,
    outputs: np.ndarray,
    freqs: Sequence[float],
    side_deg: float,
    path: str | Path,
    title: str,
) -> None:
    """Per example: the input channels, the CMB label, the network output and the residual (µK)."""
    maps = {f"input {f:g} GHz": inputs[..., k] for k, f in enumerate(freqs)}
    maps.update({"label (CMB)": labels, "CENN output": outputs, "residual": outputs - labels})
    plot_map_columns(
        maps,
        path,
        side_deg,
        f"{MICROKELVIN} (CMB)",
        title,
        same_scale_as={"CENN output": "label (CMB)", "residual": "label (CMB)"},
    )


def plot_cenn_spectra(
    ell: np.ndarray,
    dl: Mapping[str, np.ndarray],
    theory_dl: np.ndarray,
    path: str | Path,
    title: str,
    labels: Mapping[str, str],
) -> None:
    """Four panels, means over patches: the spectra of the label and of each method's estimate; each method's
    response, its cross-spectrum with the label over the label's power (1: unbiased; the auto-power ratio would
    count noise as signal); the power of each estimate that is uncorrelated with the label (noise, foreground
    residuals, E leaking into B); and the residual power (estimate - label), the network's with its scatter.
    ``dl[name]`` is (patches, bins) in µK^2 for ``"label"``, every method, ``"<method> residual"`` and
    ``"<method> x label"``; ``labels`` maps methods to legend names. The ILCs' power is orders of magnitude above
    the network's: power axes are logarithmic, the theory drawn last, on top."""
    plt = pyplot()
    fig, (ax1, ax2, ax3, ax4) = plt.subplots(1, 4, figsize=(22, 4.8), layout="constrained")
    label_mean = dl["label"].mean(0)
    for method, name in labels.items():
        mean = dl[method].mean(0)
        width = 1.8 if method == "network" else 1
        ax1.plot(ell, mean, "-", lw=width, label=name)
        cross = dl.get(f"{method} x label")
        if cross is not None:
            x = cross.mean(0)
            ax2.plot(ell, x / label_mean, "o-", ms=3, lw=width, label=name)
            ax3.plot(ell, np.maximum(mean - x**2 / label_mean, 1e-12), "o-", ms=3, lw=width, label=name)
        res = dl[f"{method} residual"]
        if method == "network":
            ax4.fill_between(ell, res.mean(0) - res.std(0), res.mean(0) + res.std(0), alpha=0.2)
        ax4.plot(ell, res.mean(0), "o-", ms=3, lw=width, label=name)
    ax1.plot(ell, label_mean, "o", mfc="none", mec="k", ms=5, zorder=9, label="label (mean of patches)")
    ax1.plot(ell, theory_dl, "--", color="0.15", lw=2.2, zorder=10, label="theory × beam × window")
    ax1.set(xscale="log", yscale="log", xlabel=r"multipole $\ell$", ylabel=r"$D_\ell$ [µK$^2$]", title=title)
    ax2.axhline(1, color="k", lw=0.8, ls="--", zorder=10)
    ax2.set(
        xscale="log",
        xlabel=r"multipole $\ell$",
        ylabel="cross(estimate, label) / label power",
        title="response (1: unbiased)",
    )
    ax3.set(
        xscale="log",
        yscale="log",
        xlabel=r"multipole $\ell$",
        ylabel=r"$D_\ell$ [µK$^2$]",
        title="power uncorrelated with the label",
    )
    ax4.set(
        xscale="log",
        yscale="log",
        xlabel=r"multipole $\ell$",
        ylabel=r"residual $D_\ell$ [µK$^2$]",
        title="residual (estimate - label) power",
    )
    for ax in (ax1, ax2, ax3, ax4):
        plain_log_ticks(ax.xaxis)
        ax.legend(fontsize=7)
    save_figure(fig, path)
