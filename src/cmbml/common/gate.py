"""A Great Expectations gate over tables that summarise array datasets.

Arrays are validated by reducing each sample to a row of statistics (and each file to a
row of facts); each table gets an expectation suite, and one checkpoint per table runs it in
a file-backed context kept in a temporary folder. Only two things are kept: the result
(:class:`GateResult`, written by the stages as JSON, the same bytes for the same data) and
the HTML Data Docs, made readable offline (:func:`~cmbml.common.offline_reports.publish_data_docs`) and
copied where the caller asks, usually :func:`data_docs_dir`, outside every DVC output since they carry run
times.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from cmbml.common.offline_reports import publish_data_docs
from cmbml.common.params import repository_root

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass
class GateTable:
    """One table to validate: a name, a DataFrame and its expectations."""

    name: str
    frame: Any  # pandas.DataFrame
    expectations: list = field(default_factory=list)


@dataclass
class GateResult:
    """Outcome of a checkpoint run.

    ``as_dict`` holds what follows from the data only; the run name, run time and the Data Docs
    location (``data_docs_index``, a ``file://`` URL) are for the log.
    """

    success: bool
    failures: list[str]
    n_expectations: int
    data_docs_index: str | None
    details: list[dict[str, Any]]
    run_name: str = ""
    run_time: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "n_expectations": self.n_expectations,
            "n_failed": len(self.failures),
            "failures": self.failures,
            "results": self.details,
        }


# ---- thresholds ---------------------------------------------------------------------------------------


def _round_significant(x, digits: int, rounding: str):
    if x is None or isinstance(x, bool) or not math.isfinite(x) or x == 0:
        return x
    exact = Decimal(float(x))  # the float's exact value: the rounding direction holds
    return float(exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding=rounding))


def lower_bound(x: float | None, digits: int = 4) -> float | None:
    """``x`` to ``digits`` significant digits, rounded down: a lower bound that reads well in the Data
    Docs and rejects nothing the exact one accepts (``None`` and non-finite values pass through)."""
    return _round_significant(x, digits, ROUND_FLOOR)


def upper_bound(x: float | None, digits: int = 4) -> float | None:
    """``x`` to ``digits`` significant digits, rounded up (see :func:`lower_bound`)."""
    return _round_significant(x, digits, ROUND_CEILING)


# ---- running ------------------------------------------------------------------------------------------


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


def data_docs_dir(base: str | Path, stage: str) -> Path:
    """Where ``stage`` keeps its Data Docs: ``<repository>/<base>/<stage>/<experiment>``.

    ``<repository>`` is the user's repository also from inside a queued or ``--temp`` DVC experiment,
    whose copy is deleted afterwards (as for the MLflow store); ``<experiment>`` is the DVC experiment's
    name (``DVC_EXP_NAME``), or ``workspace`` for ``dvc repro`` and direct runs.
    """
    experiment = re.sub(r"[^\w.-]", "_", os.environ.get("DVC_EXP_NAME") or "workspace")
    return repository_root() / base / stage / experiment


def run_gate(
    docs_dir: str | Path, checkpoint_name: str, tables: list[GateTable], run_name: str | None = None
) -> GateResult:
    """Validate every table with its suite; write offline-readable HTML Data Docs to ``docs_dir``.

    Each table's suite is named ``<checkpoint_name>.<table>``; every validation carries ``run_name``
    (default ``checkpoint_name``) and one run time. The Data Docs of an earlier run in ``docs_dir`` are
    replaced; other files there are left alone. Returns a :class:`GateResult`; failures read
    ``table: expectation(column) failed; observed ...``. Raises
    :class:`~cmbml.common.offline_reports.ReportAssetMissing` when a file that set-up installs for the Data
    Docs is missing.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    run_name = run_name or checkpoint_name
    run_time = datetime.now(UTC)
    failures: list[str] = []
    details: list[dict[str, Any]] = []
    success = True
    n_expectations = 0
    with tempfile.TemporaryDirectory(prefix="cmbml-gx-") as project:
        context = gx.get_context(mode="file", project_root_dir=project)
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
        for table, definition in zip(tables, definitions):
            checkpoint = context.checkpoints.add_or_update(
                gx.Checkpoint(
                    name=f"{checkpoint_name}.{table.name}",
                    validation_definitions=[definition],
                    actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                    result_format="SUMMARY",
                )
            )
            outcome = checkpoint.run(
                batch_parameters={"dataframe": table.frame}, run_id=RunIdentifier(run_name=run_name, run_time=run_time)
            )
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
        site = Path(project) / "gx" / "uncommitted" / "data_docs" / "local_site"
        index = publish_data_docs(site, docs_dir) if (site / "index.html").is_file() else None
    return GateResult(
        success,
        failures,
        n_expectations,
        index.resolve().as_uri() if index else None,
        details,
        run_name=run_name,
        run_time=run_time.isoformat(timespec="seconds"),
    )


# ---- later stages ------------------------------------------------------------------------------------


class GateNotPassed(RuntimeError):
    """A later stage was asked to read data that its validation gate did not pass."""


class UnreadableDataset(GateNotPassed):
    """A dataset file the gate cannot read: missing, or HDF5 that h5py cannot open or read to the end."""


def require_readable(paths: Sequence[str | Path], rows: int = 256) -> None:
    """Open every HDF5 file and read every dataset to its end, ``rows`` rows at a time, before any expectation runs:
    raise :class:`UnreadableDataset` in one line naming the first file that is missing (an interrupted stage) or that
    h5py cannot read, with h5py's reason (a truncated or overwritten file), instead of a table of failed
    expectations that names neither."""
    import h5py

    for path in map(Path, paths):
        if not path.is_file():
            raise UnreadableDataset(
                f"{path}: does not exist (the stage that writes it was interrupted or never ran: dvc repro reruns it)"
            )
        try:
            with h5py.File(path, "r") as h5:
                names: list[str] = []
                h5.visit(lambda name: names.append(name) if isinstance(h5[name], h5py.Dataset) else None)
                for name in names:
                    ds = h5[name]
                    if ds.shape == ():
                        ds[()]
                        continue
                    for start in range(0, ds.shape[0], rows):
                        ds[start : start + rows]
        except (OSError, RuntimeError, ValueError) as err:
            reason = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise UnreadableDataset(f"{path}: unreadable HDF5 ({reason.strip()[:200]})") from None


def require_passed(result_file: str | Path) -> None:
    """Raise :class:`GateNotPassed` unless ``result_file`` (a gate's JSON result) records success."""
    import json

    path = Path(result_file)
    result = json.loads(path.read_text()) if path.exists() else {}
    if not result.get("success"):
        raise GateNotPassed(f"{path} does not record a passed validation: run the validation stage first")
