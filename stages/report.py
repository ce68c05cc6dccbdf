"""Results tables and figures from finished evaluations, written into the README between markers.

Pure functions on plain records: each record is one evaluated run, ``{"name", "params", "metrics", "rows"}``
(``rows`` the per-bin table of the evaluation). Collecting the records (from the MLflow store) is the caller's.
The CENN tables' method columns and their headers come from the baseline registry
(:data:`cmbml.cenn.baselines.BASELINES`: each baseline's ``label`` and ``shown_in``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from cmbml.cenn.baselines import FOREGROUND_TABLE, METHODS_TABLE, RESIDUALS
from cmbml.cenn.evaluation import NETWORK, REFERENCE, UNSEEN_PREFIX, method_labels, shown

LENSING_MARKER = "lensing-results"
CENN_MARKER = "cenn-results"
N_L_RANGES = 3


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _sig(value: float | None, digits: int) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def lensing_table(records: Sequence[Mapping]) -> str:
    """Markdown: per version, rho of the CNN / the quadratic estimator / the QE's Wiener limit, mean over all
    L bins and over three L ranges (thirds of the bins), with the test-set size."""
    head = ("| version | test maps | all L: CNN / QE / limit | " +
            " | ".join(f"L range {k + 1}: CNN / QE / limit" for k in range(N_L_RANGES)) + " |")
    lines = [head, "|" + "---|" * (3 + N_L_RANGES)]
    for rec in records:
        m, rows = rec["metrics"], rec["rows"]
        cells = [rec["name"], str(int(m["n_evaluation"])),
                 f"{_fmt(m['rho_cnn_mean'])} / {_fmt(m['rho_qe_mean'])} / {_fmt(m['rho_opt_mean'])}"]
        for part in np.array_split(np.arange(len(rows)), N_L_RANGES):
            if len(part) == 0:
                cells.append("-")
                continue
            sel = [rows[i] for i in part]
            mean = {k: float(np.mean([r[k] for r in sel])) for k in ("rho_cnn", "rho_qe", "rho_opt")}
            span = f"{sel[0]['L']:.0f}" + (f"-{sel[-1]['L']:.0f}" if len(sel) > 1 else "")
            cells.append(f"L {span}: {_fmt(mean['rho_cnn'])} / "
                         f"{_fmt(mean['rho_qe'])} / {_fmt(mean['rho_opt'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio_header() -> str:
    """``CENN / Wiener``: the network over the reference baseline, in their labels."""
    labels = method_labels(oracles=True)
    return f"{labels[NETWORK]} / {labels.get(REFERENCE, REFERENCE)}"


def cenn_table(records: Sequence[Mapping]) -> str:
    """Markdown: per variant, map MSE +- error (uK^2, error from the independent patch count) of the network and
    each baseline of the methods table, the Wiener filter's predicted MSE, the network's MSE over the Wiener
    filter's, and the independent patch areas of the Validation, Train and early-stopping (Test) patches."""
    columns = shown(METHODS_TABLE)
    reference = method_labels(oracles=True).get(REFERENCE, REFERENCE)
    head = ("| variant | Validation patches (independent) | independent Train / Test | " +
            " | ".join(n for _, n in columns) + f" | {reference} predicted | {_ratio_header()} |")
    lines = [head, "|" + "---|" * (len(columns) + 5)]
    for rec in records:
        m = rec["metrics"]
        cells = [rec["name"], f"{int(m['n_evaluation'])} ({m['n_independent_evaluation']:.0f})",
                 f"{_fmt(m.get('n_independent_training'), 0)} / {_fmt(m.get('n_independent_early_stopping'), 0)}"]
        for key, _ in columns:
            cells.append(f"{_sig(m.get(f'map_mse_{key}_uK2'), 4)} +- {_sig(m.get(f'map_mse_{key}_err_uK2'), 2)}")
        cells.append(_sig(m.get(f"map_mse_{REFERENCE}_predicted_uK2"), 4))
        cells.append(f"{_fmt(m.get(f'mse_over_{REFERENCE}'))} +- {_fmt(m.get(f'mse_over_{REFERENCE}_err'))}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cenn_transfer_table(records: Sequence[Mapping], ell_ranges: Sequence[Sequence[float]]) -> str:
    """Markdown: per variant, spectrum and multipole range, each method's transfer (estimate power / label power)."""
    columns = shown(METHODS_TABLE)
    head = "| variant | spectrum | ell range | " + " | ".join(n for _, n in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 3)]
    for rec in records:
        m = rec["metrics"]
        for spectrum in ("ee", "bb"):
            for lo, hi in ell_ranges:
                tag = f"{spectrum}_ell{lo}_{hi}"
                if f"{tag}_network_transfer" not in m:
                    continue
                cells = [rec["name"], spectrum.upper(), f"{lo}-{hi}"]
                cells += [_fmt(m.get(f"{tag}_{key}_transfer"), 2) for key, _ in columns]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


FOREGROUND_MARKER = "cenn-foreground-models"


def foreground_model_table(records: Sequence[Mapping], ell_ranges: Sequence[Sequence[float]]) -> str:
    """Markdown: per variant and training foreground model, the scores on the training model's Validation
    patches and on the unseen model's (metrics prefixed ``unseen_``): map MSE +- error (uK^2) of the network
    and the baselines of the foreground table, the network over the Wiener filter (fitted on Train, as the
    network), and the mean residual D_ell (uK^2, estimate - label) in each multipole range for the network and
    the baselines shown with residuals (Wiener filter, harmonic ILC). ``records`` carry ``params`` with
    ``foregrounds.model`` and ``unseen_model``."""
    spectrum = {"E": "ee", "B": "bb"}
    columns, residuals = shown(FOREGROUND_TABLE), shown(RESIDUALS)
    head = ("| variant | trained on | tested on | " + " | ".join(f"{n} MSE" for _, n in columns)
            + f" | {_ratio_header()} | "
            + " | ".join(f"residual D_ell {lo}-{hi}: " + " / ".join(n for _, n in residuals) for lo, hi in ell_ranges)
            + " |")
    lines = [head, "|" + "---|" * (4 + len(columns) + len(ell_ranges))]
    for rec in records:
        m, trained = rec["metrics"], rec["params"].get("foregrounds.model", "gaussian")
        for prefix, tested in (("", trained), (UNSEEN_PREFIX, rec.get("unseen_model"))):
            if f"{prefix}map_mse_{NETWORK}_uK2" not in m:
                continue
            cells = [rec["params"].get("cenn.variant", rec["name"]), trained, tested or "-"]
            for key, _ in columns:
                cells.append(f"{_sig(m.get(f'{prefix}map_mse_{key}_uK2'), 4)}"
                             + (f" +- {_sig(m.get(f'{prefix}map_mse_{key}_err_uK2'), 2)}"
                                if f"{prefix}map_mse_{key}_err_uK2" in m else ""))
            cells.append(f"{_fmt(m.get(f'{prefix}mse_over_{REFERENCE}'))} +- "
                         f"{_fmt(m.get(f'{prefix}mse_over_{REFERENCE}_err'))}")
            s = spectrum.get(rec["params"].get("cenn.variant", ""), "ee")
            for lo, hi in ell_ranges:
                cells.append(" / ".join(_sig(m.get(f"{prefix}{s}_ell{lo}_{hi}_{key}_residual_dl_uK2"), 3)
                                        for key, _ in residuals))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_between_markers(text: str, marker: str, content: str) -> str:
    """Replace what lies between ``<!-- marker -->`` and ``<!-- /marker -->`` (both kept); the markers must exist."""
    pattern = re.compile(rf"(<!-- {re.escape(marker)} -->\n).*?(<!-- /{re.escape(marker)} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"README has no '<!-- {marker} -->' ... '<!-- /{marker} -->' block")
    return pattern.sub(lambda m: m.group(1) + content.rstrip() + "\n" + m.group(2), text)
