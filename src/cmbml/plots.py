"""Figures: theory spectra, maps, training curves and reconstruction quality."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


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


def plot_theory_spectra(spectra: Mapping[str, np.ndarray], path: str | Path) -> None:
    """D_ell of TT (unlensed, lensed), EE, BB and the convergence spectrum C_L^kk."""
    from cmbml.spectra import cl_to_dl

    plt = _plt()
    ell = spectra["ell"]
    sel = ell >= 2
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in [("cl_tt_unlensed", "TT unlensed"), ("cl_tt_lensed", "TT lensed"),
                       ("cl_ee_lensed", "EE lensed"), ("cl_bb_lensed", "BB lensed")]:
        ax1.loglog(ell[sel], cl_to_dl(ell[sel], spectra[key][sel]), label=label)
    ax1.set(xlabel=r"$\ell$", ylabel=r"$D_\ell$ [$\mu$K$^2$]", title="CAMB CMB spectra")
    ax1.legend()
    ax2.loglog(ell[sel], spectra["cl_kk"][sel])
    ax2.set(xlabel=r"$L$", ylabel=r"$C_L^{\kappa\kappa}$", title=r"Convergence spectrum $[L(L+1)]^2 C_L^{\phi\phi}/4$")
    _save(fig, path)


def plot_training_curve(history: Mapping[str, Sequence[float]], path: str | Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("loss", "val_loss"):
        if key in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], "o-", label=key)
    ax.set(xlabel="epoch", ylabel="MSE (standardised)", title=title, yscale="log")
    ax.legend()
    _save(fig, path)


def plot_map_columns(maps: Mapping[str, np.ndarray], path: str | Path, side_deg: float, units: str, title: str,
                      same_scale_as: Mapping[str, str] | None = None) -> None:
    """Rows of examples; columns are the entries of ``maps`` (each (n_examples, n, n)).

    Each panel has its own symmetric colour scale unless ``same_scale_as`` maps its column to
    another one (e.g. prediction and residual on the truth's scale).
    """
    plt = _plt()
    names = list(maps)
    same_scale_as = same_scale_as or {}
    n_rows = next(iter(maps.values())).shape[0]
    fig, axes = plt.subplots(n_rows, len(names), figsize=(3.3 * len(names), 2.9 * n_rows), squeeze=False,
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
                ax.set_xlabel("deg", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.85, label=units)
    fig.suptitle(title)
    _save(fig, path)


def plot_rho(ell: np.ndarray, rho: np.ndarray, path: str | Path, title: str,
             references: Sequence[tuple[np.ndarray, np.ndarray, str]] = ()) -> None:
    """rho(L) of the network, with reference curves ``(ell, rho, label)`` (e.g. quadratic estimators)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ell, rho, "o-", label="CNN")
    for ref_ell, ref_rho, label in references:
        ax.plot(ref_ell, ref_rho, "--", marker=".", label=label)
    ax.axhline(0, color="k", lw=0.5)
    low = min([np.nanmin(rho)] + [np.nanmin(r[1]) for r in references])
    ax.set(xlabel=r"$L$", ylabel=r"$\rho(L)$", title=title, ylim=(min(-0.05, low - 0.05), 1.05))
    ax.legend()
    _save(fig, path)


def plot_binned_spectra(ell: np.ndarray, curves: Mapping[str, np.ndarray], path: str | Path, ylabel: str,
                        title: str) -> None:
    """Binned spectra on a logarithmic axis, one curve per name."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, values in curves.items():
        ax.plot(ell, values, "o-", ms=3, label=name)
    ax.set(xlabel=r"$\ell$", ylabel=ylabel, title=title, yscale="log")
    ax.legend()
    _save(fig, path)


def plot_full_sky_check(tqu: np.ndarray, measured_cls: np.ndarray, theory: Mapping[str, np.ndarray], nside: int,
                        path: str | Path) -> None:
    """Mollweide Q map and the realisation's TT/EE/BB spectra against the input (pixel window applied)."""
    import healpy as hp

    from cmbml.spectra import cl_to_dl

    plt = _plt()
    fig = plt.figure(figsize=(13, 4.5))
    hp.mollview(tqu[1], fig=fig.number, sub=(1, 2, 1), title="CMB Q [uK], realisation 0", unit="uK", cmap="RdBu_r")
    ax = fig.add_subplot(1, 2, 2)
    lmax = measured_cls.shape[1] - 1
    ell = np.arange(2, lmax + 1)
    for i, (key, label) in enumerate([("cl_tt_lensed", "TT"), ("cl_ee_lensed", "EE"), ("cl_bb_lensed", "BB")]):
        ax.loglog(ell, cl_to_dl(ell, measured_cls[i][2:]), lw=0.8, label=f"{label} map")
        ax.loglog(ell, cl_to_dl(ell, theory[key][2 : lmax + 1]), "k--", lw=0.8)
    ax.set(xlabel=r"$\ell$", ylabel=r"$D_\ell$ [$\mu$K$^2$]", title=f"nside {nside}: anafast (colour) vs CAMB (dashed)")
    ax.legend()
    _save(fig, path)


def plot_foreground_channels(maps: Mapping[float, np.ndarray], nside: int, path: str | Path) -> None:
    """Mollweide views of the total foreground Q at each channel (log-stretched)."""
    import healpy as hp

    plt = _plt()
    fig = plt.figure(figsize=(5 * len(maps), 3.6))
    for i, (freq, qu) in enumerate(sorted(maps.items())):
        amp = np.arcsinh(qu[0] / max(np.std(qu[0]), 1e-12))
        hp.mollview(amp, fig=fig.number, sub=(1, len(maps), i + 1), title=f"foreground Q, {freq:g} GHz (asinh/rms)",
                    cmap="RdBu_r", min=-3, max=3, cbar=False)
    _save(fig, path)


def plot_cenn_patches(inputs: np.ndarray, labels: np.ndarray, outputs: np.ndarray, freqs: Sequence[float],
                      side_deg: float, path: str | Path, title: str) -> None:
    """Per example: the input channels, the CMB label, the network output and the residual (uK)."""
    maps = {f"input {f:g} GHz": inputs[..., k] for k, f in enumerate(freqs)}
    maps.update({"label (CMB)": labels, "CENN output": outputs, "residual": outputs - labels})
    plot_map_columns(maps, path, side_deg, "uK", title,
                      same_scale_as={"CENN output": "label (CMB)", "residual": "label (CMB)"})


def plot_cenn_spectra(ell: np.ndarray, dl: Mapping[str, np.ndarray], theory_dl: np.ndarray, path: str | Path,
                      title: str, labels: Mapping[str, str]) -> None:
    """Spectra of the label and of each method's estimate (left), each method's transfer, estimate power
    over label power (middle), and the residual D_ell of each method (right); mean over patches, the
    network's band is the scatter. ``dl[name]`` is (patches, bins); ``labels`` maps methods to legend names."""
    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.5), layout="constrained")
    ax1.plot(ell, theory_dl, "k-", lw=1, label="theory x beam x window")
    ax1.plot(ell, dl["label"].mean(0), "ko", ms=3, label="label")
    label_mean = dl["label"].mean(0)
    for method, name in labels.items():
        mean = dl[method].mean(0)
        ax1.plot(ell, mean, "-", lw=1.5 if method == "network" else 1, label=name)
        ax2.plot(ell, mean / label_mean, "o-", ms=3, label=name)
        res = dl[f"{method} residual"]
        if method == "network":
            ax3.fill_between(ell, res.mean(0) - res.std(0), res.mean(0) + res.std(0), alpha=0.2)
        ax3.plot(ell, res.mean(0), "o-", ms=3, label=name)
    ax1.set(xlabel=r"$\ell$", ylabel=r"$D_\ell$ [$\mu$K$^2$]", title=title, yscale="log")
    ax2.axhline(1, color="k", lw=0.5)
    ax2.set(xlabel=r"$\ell$", ylabel="estimate / label power", title="transfer")
    ax3.set(xlabel=r"$\ell$", ylabel=r"residual $D_\ell$ [$\mu$K$^2$]", title="residual (estimate - label) power",
            yscale="log")
    for ax in (ax1, ax2, ax3):
        ax.legend(fontsize=7)
    _save(fig, path)


def plot_rho_versions(records: Sequence[Mapping], path: str | Path) -> None:
    """rho(L) of every lensing version on one log-L figure: CNN solid, QE dashed, the QE's Wiener limit dotted."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, rec in enumerate(records):
        rows, colour = rec["rows"], colours[k % len(colours)]
        ell = [r["L"] for r in rows]
        ax.plot(ell, [r["rho_cnn"] for r in rows], "-", color=colour, lw=1.6, label=f"{rec['name']} CNN")
        ax.plot(ell, [r["rho_qe"] for r in rows], "--", color=colour, lw=1)
        ax.plot(ell, [r["rho_opt"] for r in rows], ":", color=colour, lw=1)
    ax.plot([], [], "k--", lw=1, label="quadratic estimator")
    ax.plot([], [], "k:", lw=1, label="QE Wiener limit")
    ax.set(xscale="log", xlabel="L", ylabel=r"$\rho(L)$ of estimated and true $\kappa$", ylim=(-0.05, 1.02),
           title="lensing v1-v8 at scale=default: CNN, quadratic estimator and its limit on the same test maps")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)
