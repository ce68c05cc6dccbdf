"""CENN evaluation: the network and the classical answers on the same Validation patches, scored by one code
path (map MSE with errors from the independent patch count and jackknives over CMB realisations and sky blocks,
NaMaster auto- and cross-spectra: the response, correlation and uncorrelated power of every estimate per
multipole, its residual power, the network's MSE over the Wiener filter's).

The classical answers are the registered baselines (:data:`cmbml.cenn.baselines.BASELINES`): every metric name,
table column and legend entry below is derived from that registry, so a baseline is added in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmbml.cenn.baselines import BASELINES, SUMMARY, UNSEEN_SUMMARY, Baseline, BaselineSetup
from cmbml.common.io import iter_chunks
from cmbml.common.pixel_metrics import pixel_metric_name, pixel_scores

NETWORK = "network"
"""The network's key among the methods (``map_mse_network_uK2``)."""
NETWORK_LABEL = "CENN"
"""The network's text in tables and figures."""
REFERENCE = "wiener"
"""The baseline the network is measured against (``mse_over_wiener``): on Gaussian skies the optimum."""


def methods(oracles: bool = False) -> tuple[str, ...]:
    """The estimates compared on every CENN patch, each scored by the same code: the network, then every
    registered baseline in registration order (the oracles only when asked)."""
    return (NETWORK, *(name for name, b in BASELINES.items() if oracles or not b.oracle))


def method_labels(oracles: bool = False) -> dict[str, str]:
    """Each method's text in tables and figure legends, ``{name: label}`` in the order of :func:`methods`."""
    return {name: NETWORK_LABEL if name == NETWORK else BASELINES[name].label for name in methods(oracles)}


def shown(view: str) -> list[tuple[str, str]]:
    """``(name, label)`` of the network and of every registered baseline shown in ``view`` (one of
    :data:`cmbml.cenn.baselines.VIEWS`), in registration order."""
    return [(NETWORK, NETWORK_LABEL), *((name, b.label) for name, b in BASELINES.items() if view in b.shown_in)]


def spectra_map_names() -> tuple[str, ...]:
    """The maps whose spectra are measured: the label, every method's estimate and its residual (estimate -
    label); oracles are scored by their map MSE alone."""
    return ("label", *methods(), *(f"{m} residual" for m in methods()))


def cross_name(method: str) -> str:
    """The key of a method's cross-spectrum with the label in :func:`patch_spectra`."""
    return f"{method} x label"


LEAK_Z = 3.0
"""A network whose MSE lies this many standard errors below the Wiener filter's floor is flagged (see
:func:`cenn_metrics`): on Gaussian skies it cannot beat the optimum, so something (labels, overlapping samples)
leaks."""

JACKKNIFE_SKY_BLOCKS = 10
"""Sky blocks of the delete-a-block jackknife (:func:`cmbml.common.jackknife.sky_blocks`)."""


def cenn_maps(
    inputs: np.ndarray, labels: np.ndarray, estimates: Mapping[str, np.ndarray], target: int
) -> dict[str, np.ndarray]:
    """The maps compared on (already cropped) patches: ``inputs`` (N, n, n, channels), ``labels`` (N, n, n, 1)
    and each method's estimate (N, n, n). Adds every residual, the uncleaned target channel as ``"input"`` and its residual."""
    maps = {"label": labels[..., 0], "input": inputs[..., target]}
    maps["uncleaned residual"] = maps["input"] - maps["label"]
    for method, estimate in estimates.items():
        maps[method] = estimate
        maps[f"{method} residual"] = estimate - maps["label"]
    return maps


def iter_train_chunks(files: Mapping[str, str | Path], chunk: int = 256):
    """``(inputs, labels)`` per chunk of a split, ``{component: (n, npix, npix, C)}`` in float64."""
    import h5py

    handles = {c: h5py.File(p, "r") for c, p in files.items()}
    try:
        n = next(iter(handles.values()))["M"].shape[0]
        for sl in iter_chunks(n, chunk):
            yield (
                {c: h["M"][sl].astype(np.float64) for c, h in handles.items()},
                {c: h["M0"][sl].astype(np.float64) for c, h in handles.items()},
            )
    finally:
        for h in handles.values():
            h.close()


def patch_spectra(
    estimator,
    maps: Mapping[str, Mapping[str, np.ndarray]],
    components: Sequence[str],
    measured: Sequence[str],
    names: Sequence[str] | None = None,
    crossed: Sequence[str] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """NaMaster spectra of every patch: ``cl[name][spectrum] -> (N, n_bins)``.

    ``maps[component][name]`` is a stack (N, n, n); a spin-2 estimator takes the Q and U maps of a
    patch together, a spin-0 one the single scalar map. ``names`` default: :func:`spectra_map_names`. Each
    method in ``crossed`` (default: every method of :func:`methods` among ``names``) also gets its cross-spectrum
    with the label, ``cl[cross_name(method)]`` (EE of the estimate's E with the label's E, BB likewise).
    ``estimator`` has ``field(maps)`` and ``cross(field_a, field_b)`` (:class:`FlatSpectra`).
    """
    names = spectra_map_names() if names is None else names
    crossed = [m for m in methods() if m in names] if crossed is None else list(crossed)
    n = maps[components[0]][names[0]].shape[0]
    keys = [*names, *(cross_name(m) for m in crossed)]
    per_patch: dict[str, list] = {key: [] for key in keys}
    for i in range(n):
        fields = {name: estimator.field([maps[comp][name][i] for comp in components]) for name in names}
        for name in names:
            per_patch[name].append(estimator.cross(fields[name], fields[name]))
        for m in crossed:
            per_patch[cross_name(m)].append(estimator.cross(fields[m], fields["label"]))
    return {key: {s: np.array([p[s] for p in per_patch[key]]) for s in measured} for key in keys}


def _mse_per_patch(maps: Mapping[str, Mapping[str, np.ndarray]], name: str) -> np.ndarray:
    return np.mean([np.mean(maps[k][name] ** 2, axis=(1, 2)) for k in maps], axis=0)


UNSEEN_PREFIX = "unseen_"
"""Scores on the Validation patches of the unseen foreground sky carry this prefix."""


def summary_metric_names() -> tuple[str, ...]:
    """The handful of :func:`cenn_metrics` an experiment table shows (the rest: per-range spectra scores, errors):
    the map MSE of the network and of the baselines shown in the summary, and the comparison with the reference."""
    return (
        *(f"map_mse_{m}_uK2" for m, _ in shown(SUMMARY)),
        "map_mse_zero_prediction_uK2",
        f"mse_over_{REFERENCE}",
        f"mse_over_{REFERENCE}_err",
        "leak_suspected",
        "n_independent_evaluation",
    )


def unseen_summary_metric_names() -> tuple[str, ...]:
    """The unseen sky's scores an experiment table shows (without :data:`UNSEEN_PREFIX`)."""
    return (
        *(f"map_mse_{m}_uK2" for m, _ in shown(UNSEEN_SUMMARY)),
        f"mse_over_{REFERENCE}",
        f"mse_over_{REFERENCE}_err",
    )


def summary_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The :func:`summary_metric_names` present in ``metrics``, and the :func:`unseen_summary_metric_names`
    (prefixed): what the DVC metrics file and the MLflow run show."""
    return {
        **{k: metrics[k] for k in summary_metric_names() if k in metrics},
        **{
            UNSEEN_PREFIX + k: metrics[UNSEEN_PREFIX + k]
            for k in unseen_summary_metric_names()
            if UNSEEN_PREFIX + k in metrics
        },
    }


@dataclass(frozen=True)
class CrossDiagnostics:
    """How an estimate relates to the label per bin, from auto- and cross-spectra averaged over patches.

    Auto-spectra count noise and foreground residuals as signal; the cross-spectrum with the label does not.
    With ``A`` the estimate's power, ``X`` its cross-power with the label and ``L`` the label's power (means over
    the selected patches, per bin):

    - ``response = X / L``: the fraction of the label the estimate passes (1: unbiased);
    - ``correlation = X / sqrt(A L)``;
    - ``uncorrelated = A - X^2 / L``: the estimate's power that is not a multiple of the label (noise,
      foreground residuals, E in B), the power of ``estimate - response * label``;
    - ``auto_ratio = A / L``: the old "transfer", which counts the uncorrelated power as signal.

    Attributes hold (N, n_bins) per-patch spectra ``auto``, ``cross``, ``label``, in any common units.
    """

    auto: np.ndarray
    cross: np.ndarray
    label: np.ndarray

    def _means(self, keep, bins):
        keep = slice(None) if keep is None else keep
        bins = slice(None) if bins is None else bins
        return (self.auto[keep][:, bins].mean(0), self.cross[keep][:, bins].mean(0), self.label[keep][:, bins].mean(0))

    def per_bin(self, keep=None) -> dict[str, np.ndarray]:
        """``{response, correlation, uncorrelated, auto_ratio}`` per bin, over the patches ``keep`` (all by default)."""
        a, x, lab = self._means(keep, None)
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "response": x / lab,
                "correlation": x / np.sqrt(a * lab),
                "uncorrelated": a - x**2 / lab,
                "auto_ratio": a / lab,
            }

    def over_range(self, bins, keep=None) -> dict[str, float]:
        """The same over the bins ``bins`` together: power-weighted ratios (sums over bins), the mean uncorrelated
        power per bin."""
        a, x, lab = self._means(keep, bins)
        return {
            "response": float(x.sum() / lab.sum()),
            "correlation": float(x.sum() / np.sqrt(a.sum() * lab.sum())),
            "uncorrelated": float(np.mean(a - x**2 / lab)),
            "auto_ratio": float(a.sum() / lab.sum()),
        }


def jackknife_groups(cmb_realisation: np.ndarray, lon_deg: np.ndarray, lat_deg: np.ndarray) -> dict[str, np.ndarray]:
    """The groups of the two jackknives: ``cmb`` (the patch's CMB realisation) and ``sky`` (contiguous sky blocks,
    :data:`JACKKNIFE_SKY_BLOCKS`), one label per patch."""
    from cmbml.common.jackknife import sky_blocks

    return {"cmb": np.asarray(cmb_realisation), "sky": sky_blocks(lon_deg, lat_deg, JACKKNIFE_SKY_BLOCKS)}


def _jackknife_errors(statistic, groups: Mapping[str, np.ndarray] | None) -> dict[str, float]:
    """``{"_jk_<group>": error}`` of a scalar ``statistic(keep)`` for every grouping with at least two groups."""
    from cmbml.common.jackknife import group_jackknife

    out = {}
    for kind, labels in (groups or {}).items():
        if np.unique(labels).size >= 2:
            out[f"_jk_{kind}"] = float(group_jackknife(statistic, labels)[1])
    return out


def cenn_metrics(
    maps: Mapping[str, Mapping[str, np.ndarray]],
    ell: np.ndarray,
    cl: Mapping[str, Mapping[str, np.ndarray]],
    ell_ranges: Sequence[Sequence[float]],
    n_independent: float,
    groups: Mapping[str, np.ndarray] | None = None,
    reference_floor_uK2: float | None = None,
) -> dict[str, float]:
    """Scores of every method by one code path, averaged over components; error bars from ``n_independent``
    and, with ``groups`` (:func:`jackknife_groups`), delete-a-group jackknife errors beside them.

    - ``map_mse_<method>_uK2`` (the network's also as ``map_mse_uK2``) with ``_err`` = scatter over patches
      / sqrt(n_independent) and ``_err_jk_cmb``, ``_err_jk_sky``; uncleaned input and zero prediction for scale.
      Oracle baselines present in ``maps`` get their ``map_mse_<name>_uK2`` alone.
    - pixel metrics of every method (:mod:`cmbml.common.pixel_metrics`), named by :func:`cmbml.common.pixel_metrics.pixel_metric_name`.
    - ``mse_over_wiener``: network MSE / Wiener MSE, with the error of the paired per-patch difference (and its
      jackknife errors). ``leak_suspected`` is 1 when the network's MSE lies more than ``LEAK_Z`` paired errors
      below the floor ``min(Wiener MSE, reference_floor_uK2)``: the Wiener filter assumes periodic, stationary,
      Gaussian patches, so a network may beat it by its measured excess over the MSE it predicts for such
      patches (``reference_floor_uK2``, :meth:`WienerFilter.predicted_mse`) without a leak. ``leak_floor_uK2``
      records the floor.
    - per spectrum and multipole range, from the NaMaster spectra ``cl`` (N, n_bins; with the cross-spectra of
      :func:`patch_spectra`): the residual power ``<method>_residual_dl_uK2`` (mean D_ell of estimate - label) and
      the :class:`CrossDiagnostics` ``<method>_response``, ``_correlation``, ``_uncorrelated_dl_uK2`` (each with
      ``_err`` from the sky-block jackknife when ``groups`` are given) and ``_auto_ratio``.
    """
    present = next(iter(maps.values()))
    scored = [m for m in methods() if m in present]
    oracles = [m for m in methods(oracles=True) if m not in scored and m in present]
    root_n = np.sqrt(max(n_independent, 1.0))
    metrics: dict[str, float] = {}
    per_patch = {m: _mse_per_patch(maps, f"{m} residual") for m in scored}
    for m in scored:
        metrics[f"map_mse_{m}_uK2"] = float(per_patch[m].mean())
        metrics[f"map_mse_{m}_err_uK2"] = float(per_patch[m].std() / root_n)
        for suffix, err in _jackknife_errors(lambda keep, v=per_patch[m]: v[keep].mean(), groups).items():
            metrics[f"map_mse_{m}_err{suffix}_uK2"] = err
    metrics["map_mse_uK2"] = metrics[f"map_mse_{NETWORK}_uK2"]
    metrics["map_mse_uncleaned_uK2"] = float(_mse_per_patch(maps, "uncleaned residual").mean())
    metrics["map_mse_zero_prediction_uK2"] = float(_mse_per_patch(maps, "label").mean())
    if REFERENCE in per_patch:
        net, ref = per_patch[NETWORK], per_patch[REFERENCE]
        diff = net - ref
        err = diff.std() / root_n
        metrics[f"mse_over_{REFERENCE}"] = float(net.mean() / ref.mean())
        metrics[f"mse_over_{REFERENCE}_err"] = float(err / ref.mean())
        for suffix, jk in _jackknife_errors(lambda keep: net[keep].mean() / ref[keep].mean(), groups).items():
            metrics[f"mse_over_{REFERENCE}_err{suffix}"] = jk
        floor = float(ref.mean()) if reference_floor_uK2 is None else min(float(ref.mean()), reference_floor_uK2)
        metrics["leak_floor_uK2"] = floor
        metrics["leak_suspected"] = float(net.mean() < floor - LEAK_Z * err)
    for m in oracles:  # over all pixels at once: the same number, with no per-patch scatter to report
        metrics[f"map_mse_{m}_uK2"] = float(np.mean([np.mean(maps[k][f"{m} residual"] ** 2) for k in maps]))
    # Pixel metrics of every method, per patch over all its components, errors as for the map MSE.
    truth = np.stack([maps[k]["label"] for k in maps], axis=-1)
    for m in (*scored, *oracles):
        for key, value in pixel_scores(np.stack([maps[k][m] for k in maps], axis=-1), truth, n_independent).items():
            metrics[pixel_metric_name(key, m, "uK")] = value
    metrics["n_independent_evaluation"] = float(n_independent)
    factor = ell * (ell + 1) / (2 * np.pi)
    dl = {name: {s: c * factor for s, c in by_s.items()} for name, by_s in cl.items()}
    sky = None if groups is None else {"sky": groups["sky"]}
    for s in dl["label"]:
        for lo, hi in ell_ranges:
            sel = (ell >= lo) & (ell < hi)
            if not sel.any():
                continue
            tag = f"{s.lower()}_ell{lo}_{hi}"
            for m in scored:
                metrics[f"{tag}_{m}_residual_dl_uK2"] = float(dl[f"{m} residual"][s][:, sel].mean())
                if cross_name(m) not in dl:
                    continue
                diag = CrossDiagnostics(dl[m][s], dl[cross_name(m)][s], dl["label"][s])
                values = diag.over_range(sel)
                for key, unit in (
                    ("response", ""),
                    ("correlation", ""),
                    ("uncorrelated", "_dl_uK2"),
                    ("auto_ratio", ""),
                ):
                    metrics[f"{tag}_{m}_{key}{unit}"] = values[key]
                    if key != "auto_ratio":
                        for _sky_only, jk in _jackknife_errors(
                            lambda keep, k=key: diag.over_range(sel, keep)[k], sky
                        ).items():
                            metrics[
                                f"{tag}_{m}_{key}{unit.replace('_dl_uK2', '_dl')}_err" + ("_uK2" if unit else "")
                            ] = jk
            diff = (dl[NETWORK][s][:, sel] - dl["label"][s][:, sel]).mean(axis=1)
            metrics[f"{tag}_output_minus_label_dl_mean_uK2"] = float(diff.mean())
            metrics[f"{tag}_output_minus_label_dl_err_uK2"] = float(diff.std() / root_n)
    return metrics


def spectra_rows(
    ell: np.ndarray,
    cl: Mapping[str, Mapping[str, np.ndarray]],
    theory_dl: Mapping[str, np.ndarray],
    n_independent: float,
    groups: Mapping[str, np.ndarray] | None = None,
) -> list[dict[str, float]]:
    """Per NaMaster bin (the DVC plot file of the evaluation): mean D_ell of the label, with its ratio to the theory
    and that ratio's error, and of every method; each method's residual D_ell with its error from the
    independent patch count; its :class:`CrossDiagnostics` (``response``, ``correlation``, ``uncorrelated_dl``,
    each with ``_err`` from the sky-block jackknife when ``groups`` are given, and ``auto_ratio``)."""
    from cmbml.common.jackknife import group_jackknife

    root_n = np.sqrt(max(n_independent, 1.0))
    factor = ell * (ell + 1) / (2 * np.pi)
    diags = {
        (m, s): CrossDiagnostics(cl[m][s], cl[cross_name(m)][s], cl["label"][s])
        for m in methods()
        if m in cl and cross_name(m) in cl
        for s in theory_dl
    }
    per_bin = {key: d.per_bin() for key, d in diags.items()}
    errors = {}
    if groups is not None and np.unique(groups["sky"]).size >= 2:
        for key, d in diags.items():
            errors[key] = {
                k: group_jackknife(lambda keep, k=k: d.per_bin(keep)[k], groups["sky"])[1]
                for k in ("response", "correlation", "uncorrelated")
            }
    rows = []
    for i, e in enumerate(ell):
        row = {"ell": float(e)}
        for s, th in theory_dl.items():
            label_dl = factor[i] * cl["label"][s][:, i]
            row[f"theory_{s}_dl"] = float(th[i])
            row[f"label_{s}_dl"] = float(label_dl.mean())
            row[f"label_{s}_over_theory"] = float(label_dl.mean() / th[i]) if th[i] > 0 else float("nan")
            row[f"label_{s}_over_theory_err"] = float(label_dl.std() / root_n / th[i]) if th[i] > 0 else float("nan")
            for m in methods():
                if m not in cl:
                    continue
                res = factor[i] * cl[f"{m} residual"][s][:, i]
                row[f"{m}_{s}_dl"] = float(factor[i] * cl[m][s][:, i].mean())
                row[f"{m}_{s}_residual_dl"] = float(res.mean())
                row[f"{m}_{s}_residual_dl_err"] = float(res.std() / root_n)
                if (m, s) not in per_bin:
                    continue
                scale = {"response": 1.0, "correlation": 1.0, "uncorrelated": factor[i], "auto_ratio": 1.0}
                for k, v in per_bin[m, s].items():
                    name = f"{m}_{s}_{k}" + ("_dl" if k == "uncorrelated" else "")
                    row[name] = float(scale[k] * v[i])
                    if (m, s) in errors and k in errors[m, s]:
                        row[f"{name}_err"] = float(scale[k] * errors[m, s][k][i])
        rows.append(row)
    return rows


@dataclass(frozen=True)
class ClassicalBaselines:
    """Every registered baseline (:data:`cmbml.cenn.baselines.BASELINES`), fitted once on the Train patches and
    applied to any patches; oracles are fitted on the patches they clean, with their labels.

    Attributes
    ----------
    setup : BaselineSetup
        Geometry, channel responses, label spectra and ILC bin width.
    fitted : dict
        ``{name: fitted baseline}`` for every non-oracle baseline, in registration order.
    """

    setup: BaselineSetup
    fitted: Mapping[str, Baseline]

    @classmethod
    def fit(cls, train_files: Mapping[str, str | Path], setup: BaselineSetup) -> ClassicalBaselines:
        """``train_files``: ``{component: HDF5 path}`` (datasets ``M`` and ``M0``), read in chunks, once per
        baseline that learns from them."""

        def chunks():
            return iter_train_chunks(train_files)

        return cls(setup, {name: b.fit(setup, chunks) for name, b in BASELINES.items() if not b.oracle})

    def fit_metrics(self) -> dict[str, float]:
        """Every fitted baseline's scores known from its fit (the Wiener filter's predicted MSE)."""
        return {k: v for b in self.fitted.values() for k, v in b.fit_metrics().items()}

    def estimates(
        self, inputs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, dict[str, np.ndarray]]:
        """``{baseline: {component: (N, n, n)}}`` for ``inputs`` ``{component: (N, n, n, C)}`` (uncropped patches).
        With ``labels`` ``{component: (N, n, n, 1)}`` the oracles too, each fitted on these very patches."""
        out = {name: b.apply(inputs) for name, b in self.fitted.items()}
        if labels is not None:
            own = [
                (
                    {c: np.asarray(m, dtype=np.float64) for c, m in inputs.items()},
                    {c: np.asarray(m, dtype=np.float64) for c, m in labels.items()},
                )
            ]
            for name, b in BASELINES.items():
                if b.oracle:
                    out[name] = b.fit(self.setup, lambda: iter(own)).apply(inputs)
        return out
