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


def plot_full_sky_estimate(
    estimate: np.ndarray,
    truth: np.ndarray,
    weight: np.ndarray,
    mask: np.ndarray,
    component: str,
    path: str | Path,
    title: str,
) -> None:
    """Mollweide maps (µK) of the full-sky estimate, the truth and their difference, and the overlap weight map."""
    import healpy as hp

    plt = pyplot()
    fig = plt.figure(figsize=(13, 8))
    shown = lambda m: np.where(mask, m, hp.UNSEEN)  # noqa: E731 - masked pixels grey
    lim = float(np.percentile(np.abs(truth[mask]), 99.5)) if mask.any() else 1.0
    panels = [
        (estimate, f"estimate, {component} [{MICROKELVIN}]", lim, MICROKELVIN),
        (truth, f"true CMB, {component} [{MICROKELVIN}]", lim, MICROKELVIN),
        (estimate - truth, f"estimate - truth [{MICROKELVIN}]", lim, MICROKELVIN),
    ]
    for k, (m, name, v, unit) in enumerate(panels):
        hp.mollview(shown(m), fig=fig.number, sub=(2, 2, k + 1), title=name, unit=unit, cmap="RdBu_r", min=-v, max=v)
    hp.mollview(weight, fig=fig.number, sub=(2, 2, 4), title="sum of patch overlap weights", unit="dimensionless")
    fig.suptitle(title)
    save_figure(fig, path)


def plot_full_sky_spectra(
    rows: Sequence[Mapping[str, float]],
    patch_rows: Sequence[Mapping[str, float]],
    on_patches: Sequence[Mapping[str, float]],
    methods: Mapping[str, str],
    spectrum: str,
    path: str | Path,
    title: str,
    ell_reliable: float | None = None,
) -> None:
    """Cross response and correlation per multipole bin of each full-sky method (with errors), of the full-sky network
    estimate measured on the evaluation patches (``on_patches``) and of the network on the evaluation patches
    (``patch_rows``), and the residual power D_ell (µK^2) against the truth's."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ell = np.array([r["ell"] for r in rows])
    for k, q in enumerate(("response", "correlation")):
        ax = axes[k]
        for name, label in methods.items():
            y = [r[f"{name}_{spectrum}_{q}"] for r in rows]
            e = [r[f"{name}_{spectrum}_{q}_err"] for r in rows]
            ax.errorbar(ell, y, e, marker="o", ms=3, lw=1, capsize=2, label=f"{label}, full sky")
        key = f"network_{spectrum}_{q}"
        for shown, style, name in (
            (on_patches, dict(marker="D", color="C3", ls=":"), "network full sky, cut at the evaluation patches"),
            (patch_rows, dict(marker="s", color="k", ls="--"), "network, evaluation patches"),
        ):
            if shown and key in shown[0]:
                ax.errorbar(
                    [r["ell"] for r in shown],
                    [r[key] for r in shown],
                    [r.get(key + "_err", 0.0) for r in shown],
                    ms=3,
                    lw=1,
                    capsize=2,
                    label=name,
                    **style,
                )
        ax.axhline(1.0, color="grey", lw=0.5)
        if ell_reliable is not None:  # above 2 nside the HEALPix grid no longer samples the sky faithfully
            ax.axvspan(ell_reliable, ell[-1] + 60, color="grey", alpha=0.15, lw=0, label=r"$\ell > 2\,n_{side}$")
        ax.set(xlabel=r"multipole $\ell$", ylabel=f"{spectrum} {q} (cross with truth), dimensionless")
        ax.legend(fontsize=8)
    ax = axes[2]
    ax.semilogy(ell, [r[f"truth_{spectrum}_dl"] for r in rows], "k--", lw=1.5, label="true CMB (through the tiling)")
    for name, label in methods.items():
        ax.semilogy(
            ell, [r[f"{name}_{spectrum}_residual_dl"] for r in rows], marker="o", ms=3, lw=1, label=f"{label} residual"
        )
    ax.set(xlabel=r"multipole $\ell$", ylabel=f"$D_\\ell^{{{spectrum}}}$ [{MICROKELVIN}$^2$]")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)
