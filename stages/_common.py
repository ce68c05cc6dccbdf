"""What every stage shares: parameters, paths, progress bars and the MLflow store."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cmbml.params import load_params, validate

PARAMS_FILE = Path("params.yaml")
SPECTRA_CSV = Path("datasets/spectra/camb_cls.csv")


def stage_params(*sections: str) -> dict[str, Any]:
    """Read params.yaml and check the sections this stage uses, before any computation."""
    params = load_params(PARAMS_FILE)
    validate(params, list(sections), source=str(PARAMS_FILE))
    return params


def repository_root() -> Path:
    """The user's repository, also from inside a queued ``dvc exp`` run.

    Queued and ``--temp`` experiments execute in a copy under ``<repo>/.dvc/tmp/exps/``;
    results shared across experiments (the MLflow store) must live in ``<repo>``.
    """
    cwd = Path.cwd().resolve()
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def tracking_uri(configured: str) -> str:
    """Absolute MLflow tracking URI: ``sqlite:///mlflow.db`` -> ``sqlite:////<repo>/mlflow.db``.

    ``MLFLOW_TRACKING_URI`` in the environment wins (tests point it at a scratch store).
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    prefix = "sqlite:///"
    if configured.startswith(prefix) and not configured[len(prefix):].startswith("/"):
        return prefix + str(repository_root() / configured[len(prefix):])
    return configured


def artifact_location(experiment: str) -> str:
    """Artifacts beside the store: ``<repo>/mlruns/<experiment>``."""
    root = Path(os.environ.get("CMBML_MLFLOW_ARTIFACTS", repository_root() / "mlruns"))
    return (root / experiment).resolve().as_uri()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_tags(params: dict[str, Any], parameter_set: str) -> dict[str, str]:
    """Tags every MLflow run carries: git commit, DVC experiment and parameter set."""
    return {
        "git_commit": git_commit(),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME", "workspace"),
        "dvc_exp_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
        "parameter_set": parameter_set,
        "scale": str(params["scale"]["name"]),
    }


def start_mlflow(params: dict[str, Any], experiment: str):
    """Point MLflow at the repository's SQLite store and select (or create) ``experiment``."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(params["mlflow"]["tracking_uri"]))
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=artifact_location(experiment))
    mlflow.set_experiment(experiment)
    return mlflow


@contextmanager
def progress(description: str, total: int) -> Iterator[Any]:
    """A rich progress bar; yields ``advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def flatten(prefix: str, node: Any) -> dict[str, Any]:
    """Flatten nested params to ``a.b.c`` keys for MLflow."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: node}
