"""The `cmbml` command line: one entry per DVC stage plus helpers.

Heavy libraries (TensorFlow, MLflow, Great Expectations, CAMB) are imported inside the
commands, so `cmbml --help` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow start-up chatter
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

app = typer.Typer(help="Reproducible neural-network experiments on simulated CMB skies.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
lensing_app = typer.Typer(help="Lensing experiment: CNN estimation of kappa from lensed T maps.", no_args_is_help=True)
cenn_app = typer.Typer(help="Component separation: CENN recovers the 143 GHz CMB from three channels.",
                       no_args_is_help=True)
params_app = typer.Typer(help="Inspect and check params.yaml.", no_args_is_help=True)
app.add_typer(lensing_app, name="lensing")
app.add_typer(cenn_app, name="cenn")
app.add_typer(params_app, name="params")


def _run_stage(module: str) -> None:
    """Run ``stages.<module>.main``. Parameter errors exit with status 2, data the validation gate did
    not pass with status 1, each with a readable message."""
    from cmbml.gate import GateNotPassed
    from cmbml.params import ParamError

    try:
        importlib.import_module(f"stages.{module}").main()
    except ParamError as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(2) from None
    except GateNotPassed as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(1) from None


@app.command()
def spectra() -> None:
    """CAMB spectra (TT, EE, BB, TE, kappa-kappa) to datasets/spectra/camb_cls.csv."""
    _run_stage("spectra")


@lensing_app.command()
def simulate() -> None:
    """Simulate lensed T / kappa train, val and test HDF5 files."""
    _run_stage("lensing_simulate")


@lensing_app.command()
def validate() -> None:
    """Great Expectations gate over the lensing datasets (fails on any broken expectation)."""
    _run_stage("lensing_validate")


@lensing_app.command()
def train() -> None:
    """Train the version's CNN and log it to MLflow."""
    _run_stage("lensing_train")


@lensing_app.command()
def evaluate() -> None:
    """MSE, rho(L) and plots on the test split."""
    _run_stage("lensing_evaluate")


@cenn_app.command("sky-maps")
def sky_maps() -> None:
    """Full-sky CMB T, Q, U realisations (FITS)."""
    _run_stage("sky_maps")


@cenn_app.command("foregrounds")
def foregrounds() -> None:
    """Dust, synchrotron, radio and infrared sources at every channel (FITS, uK_CMB)."""
    _run_stage("foregrounds")


@cenn_app.command("simulate")
def cenn_simulate() -> None:
    """Cut multi-frequency patches and CMB labels into Train/Test/Validation HDF5 files."""
    _run_stage("cenn_simulate")


@cenn_app.command("validate")
def cenn_validate() -> None:
    """Great Expectations gate over the CENN patch files."""
    _run_stage("cenn_validate")


@cenn_app.command("train")
def cenn_train() -> None:
    """Train CENN and log it to MLflow."""
    _run_stage("cenn_train")


@cenn_app.command("evaluate")
def cenn_evaluate() -> None:
    """Predict the Validation patches; NaMaster spectra, ILC baseline, metrics and plots."""
    _run_stage("cenn_evaluate")


@params_app.command("check")
def params_check(path: str = typer.Argument("params.yaml")) -> None:
    """Check every parameter of both experiments against its allowed range."""
    from cmbml.experiments import check_all
    from cmbml.params import ParamError, load_params

    try:
        check_all(load_params(path), source=path)
    except ParamError as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{path}: all parameters valid")


@params_app.command("compose")
def params_compose(overrides: list[str] = typer.Argument(None), output: str = "params.yaml") -> None:
    """Write params.yaml from conf/ exactly as `dvc exp run -S ...` would (e.g. `lensing=v3 scale=smoke`)."""
    from dvc.utils.hydra import compose_and_dump

    from pathlib import Path

    compose_and_dump(Path(output), str(Path("conf").resolve()), None, "config", Path.cwd(), overrides or [])
    typer.echo(f"wrote {output}")


@app.command()
def report(readme: str = "README.md", figures: str = "docs/figures", scale: str = "default") -> None:
    """Write the results tables (lensing v1-v8, CENN E/B/QU) into the README between its markers and plot
    rho(L) of every lensing version, from the newest finished evaluation per parameter set in the MLflow store."""
    from pathlib import Path

    from cmbml.config import resolve_tracking_uri
    from cmbml.params import load_params
    from cmbml.plots import plot_rho_versions
    from cmbml.report import (CENN_MARKER, LENSING_MARKER, cenn_table, cenn_transfer_table, lensing_table,
                              replace_between_markers)
    from stages._results import latest_evaluations

    params = load_params("params.yaml")
    uri = resolve_tracking_uri(params["mlflow"]["tracking_uri"])
    lensing = list(latest_evaluations(uri, params["mlflow"]["lensing_experiment"], "test", scale, "rho_L.json",
                                      "rho_opt_mean").values())
    cenn = list(latest_evaluations(uri, params["mlflow"]["cenn_experiment"], "validation", scale, "spectra.json",
                                   "mse_over_wiener").values())
    text = Path(readme).read_text()
    text = replace_between_markers(text, LENSING_MARKER, lensing_table(lensing))
    cenn_md = cenn_table(cenn) + "\n\nTransfer (estimate power / label power) per multipole range:\n\n" + \
        cenn_transfer_table(cenn, params["cenn_evaluate"]["residual_ell_ranges"])
    text = replace_between_markers(text, CENN_MARKER, cenn_md)
    Path(readme).write_text(text)
    if lensing:
        plot_rho_versions(lensing, Path(figures) / "rho_L_versions.png")
    typer.echo(f"report: {len(lensing)} lensing versions ({', '.join(r['name'] for r in lensing)}), "
               f"{len(cenn)} CENN variants ({', '.join(r['name'] for r in cenn)}) at scale={scale} -> {readme}")


@app.command()
def ui(port: int = 5000) -> None:
    """Serve the MLflow UI on the repository's store (127.0.0.1)."""

    from cmbml.config import resolve_tracking_uri
    from cmbml.params import load_params

    uri = resolve_tracking_uri(load_params("params.yaml")["mlflow"]["tracking_uri"])
    os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port)])


if __name__ == "__main__":
    app()
