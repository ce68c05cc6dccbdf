"""A Great Expectations gate over tables that summarise array datasets.

Arrays are validated by reducing each sample to a row of statistics (and each file to a
row of facts); each table gets an expectation suite, and one checkpoint runs them all in
a file-backed context so that HTML Data Docs are built beside the JSON result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass
class GateTable:
    """One table to validate: a name, a DataFrame and its expectations."""

    name: str
    frame: Any  # pandas.DataFrame
    expectations: list = field(default_factory=list)


@dataclass
class GateResult:
    """Outcome of a checkpoint run."""

    success: bool
    failures: list[str]
    n_expectations: int
    data_docs_index: str | None
    details: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "n_expectations": self.n_expectations,
            "n_failed": len(self.failures),
            "failures": self.failures,
            "data_docs_index": self.data_docs_index,
            "results": self.details,
        }


def _describe(result) -> dict[str, Any]:
    cfg = result.expectation_config
    res = result.result or {}
    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}
    return {
        "expectation": cfg.type,
        "kwargs": _jsonable(kwargs),
        "success": bool(result.success),
        "observed_value": _jsonable(res.get("observed_value")),
        "unexpected_count": _jsonable(res.get("unexpected_count")),
        "partial_unexpected_list": _jsonable((res.get("partial_unexpected_list") or [])[:5]),
        "exception": (result.exception_info or {}).get("exception_message") if result.exception_info else None,
    }


def _jsonable(value):
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return "nan"
    return value


def run_gate(project_dir: str | Path, checkpoint_name: str, tables: list[GateTable]) -> GateResult:
    """Validate every table with its suite in one checkpoint; build Data Docs under ``project_dir``.

    Returns a :class:`GateResult`; failures read ``table: expectation(column) observed ...``.
    """
    import great_expectations as gx

    project_dir = Path(project_dir)
    project_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(project_dir))
    try:  # quieter logs: no per-metric progress bars
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
    source = context.data_sources.add_or_update_pandas(checkpoint_name)
    definitions = []
    for table in tables:
        asset = source.add_dataframe_asset(table.name)
        batch = asset.add_batch_definition_whole_dataframe(f"{table.name}_all")
        suite = context.suites.add_or_update(gx.ExpectationSuite(name=f"{checkpoint_name}.{table.name}"))
        for expectation in table.expectations:
            suite.add_expectation(expectation)
        definitions.append(
            context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=f"{checkpoint_name}.{table.name}", data=batch, suite=suite)
            )
        )
    # Each validation definition needs its own dataframe: run them one by one, docs at the end.
    failures: list[str] = []
    details: list[dict[str, Any]] = []
    success = True
    n_expectations = 0
    for table, definition in zip(tables, definitions):
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{checkpoint_name}.{table.name}",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                result_format="SUMMARY",
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": table.frame})
        success = success and bool(outcome.success)
        for run in outcome.run_results.values():
            for result in run.results:
                n_expectations += 1
                info = {"table": table.name, **_describe(result)}
                details.append(info)
                if not result.success:
                    col = info["kwargs"].get("column") or info["kwargs"].get("column_A") or ""
                    failures.append(
                        f"{table.name}: {info['expectation']}({col}) failed; observed {info['observed_value']!r}, "
                        f"unexpected {info['unexpected_count']!r} {info['partial_unexpected_list'] or ''}".rstrip()
                    )
    urls = context.get_docs_sites_urls()
    index = urls[0]["site_url"] if urls else None
    return GateResult(success, failures, n_expectations, index, details)


class GateNotPassed(RuntimeError):
    """A later stage was asked to read data that its validation gate did not pass."""


def require_passed(result_file: str | Path) -> None:
    """Raise :class:`GateNotPassed` unless ``result_file`` (a gate's JSON result) records success."""
    import json

    path = Path(result_file)
    result = json.loads(path.read_text()) if path.exists() else {}
    if not result.get("success"):
        raise GateNotPassed(f"{path} does not record a passed validation: run the validation stage first")
