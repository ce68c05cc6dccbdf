"""Results tables and figures from finished evaluations, written between markers into the pages that hold them
(README.md and docs/*.md).

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
from cmbml.cenn.evaluation import NETWORK, REFERENCE, UNSEEN_PREFIX, method_labels, methods, shown

LENSING_MARKER = "lensing-results"
CENN_MARKER = "cenn-results"
N_L_RANGES = 3


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _sig(value: float | None, digits: int) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


ARCHITECTURE_PARAM = "lensing_net.architecture"


def lensing_kind(architecture: str) -> str:
    """``original`` (the cnn_lensing network), ``t_only`` (a network given the lensed T alone) or ``physics`` (one
    also given the quadratic estimator's inputs), from the architecture registry."""
    from cmbml.lensing.networks import ARCHITECTURES

    if architecture == "original":
        return "original"
    return "physics" if architecture in ARCHITECTURES and ARCHITECTURES[architecture].inputs != ("T",) else "t_only"


def lensing_columns(records: Sequence[Mapping]) -> list[dict]:
    """Per version (in order of first appearance), the three networks shown: ``{"name", "qe" (a record for the
    estimator and its limit: any of the version's), "original", "t_only", "physics", "entered"}``, each network the
    record of highest mean rho of its kind (the best network not given the estimator's inputs may be the original);
    ``entered`` lists the methods scored with ``cmbml score`` (run parameter ``method``)."""
    versions: dict[str, dict] = {}
    for rec in records:
        method = rec.get("params", {}).get("method", "")
        if method:
            entry = versions.setdefault(rec["name"], {"name": rec["name"], "qe": rec})
            entry.setdefault("entered", []).append({**rec, "architecture": method})
            continue
        arch = rec.get("params", {}).get(ARCHITECTURE_PARAM, "original")
        rec = {**rec, "architecture": arch}
        entry = versions.setdefault(rec["name"], {"name": rec["name"], "qe": rec})
        kinds = {"original": ("original", "t_only"), "t_only": ("t_only",), "physics": ("physics",)}[lensing_kind(arch)]
        for kind in kinds:
            if kind not in entry or rec["metrics"]["rho_cnn_mean"] > entry[kind]["metrics"]["rho_cnn_mean"]:
                entry[kind] = rec
    return list(versions.values())


def _rho_cell(rec: Mapping | None) -> str:
    if rec is None:
        return "-"
    m = rec["metrics"]
    flag = " **leak?**" if m.get("leak_suspected") else ""
    ratio = (
        f" ({_fmt(m.get('cnn_over_qe'), 2)} +- {_fmt(m.get('cnn_over_qe_err'), 2)} of QE)" if "cnn_over_qe" in m else ""
    )
    seconds = m.get("train_seconds")
    cost = "" if seconds is None else f", {seconds:.0f} s" if seconds < 90 else f", {seconds / 60:.0f} min"
    return f"{_fmt(m['rho_cnn_mean'])} +- {_fmt(m.get('rho_cnn_mean_err'))}{ratio}{flag}{cost}"


def _qe_against_limit(rows: Sequence[Mapping]) -> str:
    """``max z (k/n)``: the largest excess of the estimator's measured rho over its limit, in errors, and how many of
    the ``n`` bins lie more than 2 errors above (by chance about 2 % of them would)."""
    if not rows or any("rho_qe_err" not in r for r in rows):
        return "-"
    z = np.array([(r["rho_qe"] - r["rho_opt"]) / max(r["rho_qe_err"], 1e-12) for r in rows])
    return f"{z.max():.1f} ({int((z > 2).sum())}/{len(z)})"


KIND_HEADERS = {
    "original": "original network",
    "t_only": "best network from T alone",
    "physics": "physics-informed network",
}


def lensing_table(records: Sequence[Mapping]) -> str:
    """Markdown: per version, rho averaged over the L bins (+- jackknife error) of the quadratic estimator with the
    spectra of the version's sky, its limit, and three networks on the same test maps (the original, the best
    given T alone, the physics-informed one; architecture named, ratio to the estimator with its paired error);
    then the same per L range (thirds of the bins). "QE - limit" is the largest excess of the estimator over its
    limit in errors, with the number of bins more than 2 errors above. At physical kappa "leak bound" is what an optimal estimator
    could reach (the limit with N0 reduced by ``lensing_evaluate.optimal_n0_gain``); a leak flag marks a network
    above both it and the estimator by more than the scatter; a network's training time (``train_seconds``) is
    given in minutes. Methods entered with ``cmbml score`` follow in a column of their own."""
    columns = lensing_columns(records)
    head = (
        "| version | kappa x | test maps | QE | QE limit | QE - limit, max z (bins > 2) | leak bound | "
        + " | ".join(KIND_HEADERS.values())
        + " | methods entered with `cmbml score` |"
    )
    lines = [head, "|" + "---|" * (8 + len(KIND_HEADERS))]
    for v in columns:
        m = v["qe"]["metrics"]
        factor = v["qe"].get("params", {}).get("kappa_exaggeration_factor", "-")
        cells = [
            v["name"],
            str(factor),
            str(int(m["n_evaluation"])),
            f"{_fmt(m['rho_qe_mean'])} +- {_fmt(m.get('rho_qe_mean_err'))}",
            _fmt(m["rho_opt_mean"]),
            _qe_against_limit(v["qe"]["rows"]),
            _fmt(m["rho_leak_bound_mean"]) if "rho_leak_bound_mean" in m else "-",
        ]
        for kind in KIND_HEADERS:
            rec = v.get(kind)
            cells.append("-" if rec is None else f"{rec['architecture']}: {_rho_cell(rec)}")
        cells.append("; ".join(f"{rec['architecture']}: {_rho_cell(rec)}" for rec in v.get("entered", [])) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "By L range (thirds of the bins; rho averaged over each range's bins):",
        "",
        "| version | L range | QE / limit | " + " | ".join(KIND_HEADERS.values()) + " |",
        "|" + "---|" * (3 + len(KIND_HEADERS)),
    ]
    for v in columns:
        rows = v["qe"]["rows"]
        for part in np.array_split(np.arange(len(rows)), N_L_RANGES):
            if len(part) == 0:
                continue
            sel = [rows[i] for i in part]
            span = f"{sel[0]['L']:.0f}" + (f"-{sel[-1]['L']:.0f}" if len(sel) > 1 else "")
            cells = [
                v["name"],
                span,
                f"{_fmt(np.mean([r['rho_qe'] for r in sel]))} / {_fmt(np.mean([r['rho_opt'] for r in sel]))}",
            ]
            for kind in KIND_HEADERS:
                rec = v.get(kind)
                net_rows = [] if rec is None else [rec["rows"][i] for i in part if i < len(rec["rows"])]
                cells.append(_fmt(np.mean([r["rho_cnn"] for r in net_rows])) if net_rows else "-")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def lensing_pixel_table(records: Sequence[Mapping]) -> str:
    """Markdown: per version and estimate (the networks and the entered methods of :func:`lensing_columns`), pixel RMSE
    and R^2 (mean over maps +- error) of the estimate and of the Wiener-filtered quadratic estimator on the same
    maps; only runs that logged them."""
    lines = ["| version | estimate | RMSE | R^2 | QE, Wiener-filtered: RMSE | R^2 |", "|---|---|---|---|---|---|"]
    for v in lensing_columns(records):
        shown_recs = [v[k] for k in KIND_HEADERS if k in v] + v.get("entered", [])
        seen = set()
        for rec in shown_recs:
            m = rec["metrics"]
            if "pixel_rmse_cnn" not in m or id(rec) in seen:
                continue
            seen.add(id(rec))
            lines.append(
                "| "
                + " | ".join(
                    [v["name"], rec["architecture"]]
                    + [
                        f"{_sig(m.get(f'pixel_{k}_{who}'), 4)} +- {_sig(m.get(f'pixel_{k}_{who}_err'), 2)}"
                        for who in ("cnn", "qe_wiener")
                        for k in ("rmse", "r2")
                    ]
                )
                + " |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def cenn_pixel_table(records: Sequence[Mapping]) -> str:
    """Markdown: per variant and network (or entered method), the pixel RMSE (uK) and R^2 (mean over patches +- error
    from the independent patch areas) of the network and each baseline of the methods table; only runs that
    logged them."""
    columns = [(key, name) for key, name in shown(METHODS_TABLE)]
    lines = [
        "| variant | network | " + " | ".join(f"{n} RMSE / R^2" for _, n in columns) + " |",
        "|" + "---|" * (2 + len(columns)),
    ]
    for rec in records:
        m = rec["metrics"]
        if f"pixel_rmse_{NETWORK}_uK" not in m:
            continue
        cells = [rec["name"], rec.get("architecture", "original")]
        for key, _ in columns:
            rmse, r2 = m.get(f"pixel_rmse_{key}_uK"), m.get(f"pixel_r2_{key}")
            cells.append(
                "-"
                if rmse is None
                else f"{_sig(rmse, 4)} +- {_sig(m.get(f'pixel_rmse_{key}_err_uK'), 2)} / "
                f"{_fmt(r2)} +- {_fmt(m.get(f'pixel_r2_{key}_err'))}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _ratio_header() -> str:
    """``CENN / Wiener``: the network over the reference baseline, in their labels."""
    labels = method_labels(oracles=True)
    return f"{labels[NETWORK]} / {labels.get(REFERENCE, REFERENCE)}"


def cenn_table(records: Sequence[Mapping]) -> str:
    """Markdown: per variant, map MSE +- error (uK^2, error from the independent patch count) of the network and
    each baseline of the methods table, the Wiener filter's predicted MSE, the network's MSE over the Wiener
    filter's (error from the independent patch areas, and from the jackknives over CMB realisations and sky
    blocks), and the independent patch areas of the Validation, Train and early-stopping (Test) patches."""
    columns = shown(METHODS_TABLE)
    reference = method_labels(oracles=True).get(REFERENCE, REFERENCE)
    head = (
        "| variant | network | Validation patches (independent) | independent Train / Test | "
        + " | ".join(n for _, n in columns)
        + f" | {reference} predicted | {_ratio_header()} |"
    )
    lines = [head, "|" + "---|" * (len(columns) + 6)]
    for rec in records:
        m = rec["metrics"]
        cells = [
            rec["name"],
            rec.get("architecture", "original"),
            f"{int(m['n_evaluation'])} ({m['n_independent_evaluation']:.0f})",
            f"{_fmt(m.get('n_independent_training'), 0)} / {_fmt(m.get('n_independent_early_stopping'), 0)}",
        ]
        for key, _ in columns:
            cells.append(
                f"{_sig(m.get(f'map_mse_{key}_uK2'), 4)}"
                + (f" +- {_sig(m[f'map_mse_{key}_err_uK2'], 2)}" if f"map_mse_{key}_err_uK2" in m else "")
            )
        cells.append(_sig(m.get(f"map_mse_{REFERENCE}_predicted_uK2"), 4))
        ratio = f"mse_over_{REFERENCE}"
        cells.append(
            f"{_fmt(m.get(ratio))} +- {_fmt(m.get(ratio + '_err'))}"
            + (
                f" (jackknife: CMB {_fmt(m[ratio + '_err_jk_cmb'])}, sky {_fmt(m[ratio + '_err_jk_sky'])})"
                if ratio + "_err_jk_sky" in m and ratio + "_err_jk_cmb" in m
                else ""
            )
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cenn_response_table(records: Sequence[Mapping], ell_ranges: Sequence[Sequence[float]]) -> str:
    """Markdown: per variant, spectrum and multipole range, each method's response (cross-spectrum with the label
    over the label's power, with its sky-block jackknife error) and the power uncorrelated with the label
    (D_ell, uK^2): what an auto-power "transfer" mixes together. Oracles are scored by their map MSE alone."""
    columns = [(key, name) for key, name in shown(METHODS_TABLE) if key in methods()]
    head = (
        "| variant | network | spectrum | ell range | "
        + " | ".join(f"{n} response" for _, n in columns)
        + " | "
        + " | ".join(f"{n} uncorrelated D_ell" for _, n in columns)
        + " |"
    )
    lines = [head, "|" + "---|" * (2 * len(columns) + 4)]
    for rec in records:
        m = rec["metrics"]
        for spectrum in ("ee", "bb"):
            for lo, hi in ell_ranges:
                tag = f"{spectrum}_ell{lo}_{hi}"
                if f"{tag}_network_response" not in m:
                    continue
                cells = [rec["name"], rec.get("architecture", "original"), spectrum.upper(), f"{lo}-{hi}"]
                cells += [
                    _fmt(m.get(f"{tag}_{key}_response"), 3)
                    + (f" +- {_fmt(m[f'{tag}_{key}_response_err'], 3)}" if f"{tag}_{key}_response_err" in m else "")
                    for key, _ in columns
                ]
                cells += [_sig(m.get(f"{tag}_{key}_uncorrelated_dl_uK2"), 3) for key, _ in columns]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


FOREGROUND_MARKER = "cenn-foreground-models"


def cenn_network_name(
    architecture: str, b_mode_weight: str | float = 0.0, method: str = "", b_modes: str = "learned"
) -> str:
    """A CENN run's estimate as the tables name it: a method entered with ``cmbml score`` by its name; a network by
    its architecture, its B-mode loss weight where it has one (``cenn_train.b_mode_weight``; runs from before it
    existed had none) and an E-only B output (``cenn_net.eb.b_modes = zero``)."""
    if method:
        return f"{method} (entered)"
    weight = float(b_mode_weight or 0.0)
    name = architecture if weight == 0 else f"{architecture}, B-mode loss {weight:g}"
    return name + (", B = 0" if architecture == "eb" and b_modes == "zero" else "")


def instrument_name(table: str | None) -> str:
    """The instrument of a run, from its table's file name (``data/instrument_so_sat_baseline.csv`` ->
    ``so_sat_baseline``); ``-`` for a run that logged none."""
    from pathlib import PurePosixPath

    return "-" if not table else PurePosixPath(table).stem.removeprefix("instrument_")


ORACLE = "wiener_per_patch"
"""The per-patch Wiener oracle: its gap to the global Wiener filter is the room an adaptive estimator has."""


def foreground_model_table(records: Sequence[Mapping], ell_ranges: Sequence[Sequence[float]]) -> str:
    """Markdown: per variant, instrument and training foreground model, the scores on the training model's Validation
    patches and on the unseen model's (metrics prefixed ``unseen_``): map MSE +- error (uK^2) of the network
    and the baselines of the foreground table, the network over the Wiener filter (fitted on Train, as the
    network), the room the per-patch Wiener oracle shows (``1 - oracle / Wiener``: the fraction of the global
    filter's MSE that knowing each patch's own foregrounds removes) and the mean residual D_ell (uK^2, estimate -
    label) in each multipole range for the network and the baselines shown with residuals (Wiener filter,
    harmonic ILC; of EE for QU). ``records`` carry ``params`` with ``foregrounds.model``, ``instrument.table`` and
    ``unseen_model``."""
    spectrum = {"E": "ee", "B": "bb", "QU": "ee"}
    columns, residuals = shown(FOREGROUND_TABLE), shown(RESIDUALS)
    head = (
        "| variant | network | instrument | trained on | tested on | "
        + " | ".join(f"{n} MSE" for _, n in columns)
        + f" | {_ratio_header()} | room: 1 - oracle / Wiener | "
        + " | ".join(f"residual D_ell {lo}-{hi}: " + " / ".join(n for _, n in residuals) for lo, hi in ell_ranges)
        + " |"
    )
    lines = [head, "|" + "---|" * (7 + len(columns) + len(ell_ranges))]
    for rec in records:
        m, trained = rec["metrics"], rec["params"].get("foregrounds.model", "gaussian")
        variant = rec["params"].get("cenn.variant", rec["name"])
        for prefix, tested in (("", trained), (UNSEEN_PREFIX, rec.get("unseen_model"))):
            if f"{prefix}map_mse_{NETWORK}_uK2" not in m:
                continue
            cells = [
                variant,
                rec.get("architecture", "original"),
                instrument_name(rec["params"].get("instrument.table")),
                trained,
                tested or "-",
            ]
            for key, _ in columns:
                cells.append(
                    f"{_sig(m.get(f'{prefix}map_mse_{key}_uK2'), 4)}"
                    + (
                        f" +- {_sig(m.get(f'{prefix}map_mse_{key}_err_uK2'), 2)}"
                        if f"{prefix}map_mse_{key}_err_uK2" in m
                        else ""
                    )
                )
            cells.append(
                f"{_fmt(m.get(f'{prefix}mse_over_{REFERENCE}'))} +- {_fmt(m.get(f'{prefix}mse_over_{REFERENCE}_err'))}"
            )
            oracle, wiener = m.get(f"{prefix}map_mse_{ORACLE}_uK2"), m.get(f"{prefix}map_mse_{REFERENCE}_uK2")
            cells.append("-" if oracle is None or not wiener else _fmt(1.0 - oracle / wiener))
            s = spectrum.get(variant, "ee")
            for lo, hi in ell_ranges:
                cells.append(
                    " / ".join(
                        _sig(m.get(f"{prefix}{s}_ell{lo}_{hi}_{key}_residual_dl_uK2"), 3) for key, _ in residuals
                    )
                )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


FULLSKY_MARKER = "cenn-full-sky"


def fullsky_table(records: Sequence[Mapping]) -> str:
    """Markdown: per variant, the network applied to a whole test sky (stage cenn_separate): the sky fraction
    scored, the residual rms against the truth (uK, every method through the same tiling) of the network, the
    harmonic ILC and the Wiener-filtered harmonic ILC, the agreement of the network's cross response and correlation
    with the evaluation patches (largest pull and chi^2 per bin over the bins up to 2 nside), and the full-sky
    residual variance over the patch interiors' (above 1 where seams add error). Empty without records."""
    if not records:
        return ""
    head = (
        "| variant | network | sky fraction | residual rms, network (uK) | harmonic ILC | harmonic ILC, Wiener "
        "filtered | response vs patches: largest pull, chi2/bin | correlation vs patches: largest pull, chi2/bin "
        "| residual / patch interiors |"
    )
    lines = [head, "|" + "---|" * 9]
    for rec in records:
        m = rec["metrics"]
        s = next((k.split("_")[0] for k in m if k.endswith("_response_max_pull")), "EE")
        cells = [
            rec["name"],
            rec.get("architecture", "original"),
            f"{_fmt(m.get('f_sky'), 2)} (\\|b\\| > {_fmt(m.get('b_min_deg'), 0)} deg)"
            if "b_min_deg" in m
            else _fmt(m.get("f_sky"), 2),
            _fmt(m.get("network_residual_rms_uK")),
            _fmt(m.get("ilc_residual_rms_uK")),
            _fmt(m.get("ilc_wiener_residual_rms_uK")),
        ]
        for q in ("response", "correlation"):
            cells.append(
                f"{s}: {_fmt(m.get(f'{s}_{q}_max_pull'), 2)}, {_fmt(m.get(f'{s}_{q}_chi2_per_bin'), 2)} "
                f"({_fmt(m.get(f'{s}_{q}_n_bins_compared'), 0)} bins)"
            )
        cells.append(_fmt(m.get("residual_var_over_patch_interiors")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _tables(block: str) -> list[list[str]]:
    """The markdown tables of ``block``, each as its lines (header, separator, rows)."""
    tables, current = [], []
    for line in block.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def first_table(block: str) -> str:
    """The first markdown table of ``block`` ("" when it has none)."""
    tables = _tables(block)
    return "\n".join(tables[0]) + "\n" if tables else ""


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _row_key(row: str) -> tuple[str, str]:
    """A table row's identity: its first two cells (version and kappa factor or L range; variant and network)."""
    cells = _cells(row)
    return (cells[0], cells[1] if len(cells) > 1 else "")


def _in_columns(row: str, old_header: str, new_header: str) -> str:
    """``row`` of a table headed ``old_header`` rewritten under ``new_header``: a column the old table lacked
    reads "-"."""
    values = dict(zip(_cells(old_header), _cells(row)))
    return "| " + " | ".join(values.get(column, "-") for column in _cells(new_header)) + " |"


def keep_rows_not_regenerated(old: str, new: str) -> tuple[str, list[str]]:
    """``new`` with every row of ``old`` that it does not regenerate, so that a store holding only some of the
    runs never removes the others' rows. Each table of ``old`` is matched to the new table with its header, or
    to one that only adds columns (the kept rows read "-" there); its rows keep their order, each replaced by the
    new row of the same key (:func:`_row_key`) where there is one, and the new table's other rows follow. Returns
    the merged block and the problems: rows that could not be kept because their table lost or renamed columns,
    or a table of which the store regenerates no row (the caller then leaves ``old`` as it is)."""
    new_tables = _tables(new)
    merged, problems = new, []
    for table in _tables(old):
        header, rows = table[0], table[2:]
        old_columns = _cells(header)
        target = next((t for t in new_tables if t[0] == header), None) or next(
            (t for t in new_tables if _cells(t[0])[:2] == old_columns[:2] and set(old_columns) <= set(_cells(t[0]))),
            None,
        )
        if target is None or (rows and not target[2:]):
            if rows:
                why = "a table it no longer makes, or its columns changed" if target is None else "it holds none"
                problems.append(f"{len(rows)} rows under '{header[:60]}...' ({why})")
            continue
        regenerated: dict[tuple[str, str], list[str]] = {}
        for row in target[2:]:
            regenerated.setdefault(_row_key(row), []).append(row)
        if all(_row_key(r) in regenerated for r in rows):
            continue  # the store holds every row: the new table stands as it is made
        ordered = [
            regenerated[_row_key(r)].pop(0) if regenerated.get(_row_key(r)) else _in_columns(r, header, target[0])
            for r in rows
        ]
        left = {r for rs in regenerated.values() for r in rs}  # regenerated rows the old table did not have
        ordered += [r for r in target[2:] if r in left]
        merged = merged.replace("\n".join(target), "\n".join([*target[:2], *ordered]), 1)
    return merged, problems


def current_block(text: str, marker: str) -> str:
    """What lies between ``<!-- marker -->`` and ``<!-- /marker -->`` ("" without the markers)."""
    found = re.search(rf"<!-- {re.escape(marker)} -->\n(.*?)<!-- /{re.escape(marker)} -->", text, re.S)
    return found.group(1) if found else ""


def replace_between_markers(text: str, marker: str, content: str) -> str:
    """Replace what lies between ``<!-- marker -->`` and ``<!-- /marker -->`` (both kept); the markers must exist."""
    pattern = re.compile(rf"(<!-- {re.escape(marker)} -->\n).*?(<!-- /{re.escape(marker)} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"the page has no '<!-- {marker} -->' ... '<!-- /{marker} -->' block")
    body = content.rstrip() + "\n" if content.strip() else ""
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
