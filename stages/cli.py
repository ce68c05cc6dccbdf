"""The `cmbml` command line: one entry per DVC stage plus helpers.

Heavy libraries (TensorFlow, MLflow, Great Expectations, CAMB) are imported inside the
commands, so `cmbml --help` stays fast.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import logging
import os
import re
import socket
import sys
from pathlib import Path

# The same bits on every x86-64 machine with AVX2: numpy and ducc0 choose their float64 kernels by CPU when they
# load, and their AVX-512 versions (numpy's exp, expm1, log, power, arctan, arcsin...; ducc0's spherical-harmonic
# transforms and NUFFT) differ from the AVX2 ones in the last bit, which reaches the float32 maps wherever rounding
# flips. Both are held at the AVX2 level before either is imported, in this process and the workers it starts. A
# value the user sets wins (the AVX-512 kernels are faster: about 10 s of a 70 s CENN simulation at default scale).
REPRODUCIBLE_KERNELS = {
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "DUCC0_MAX_PSABI_LEVEL": "3",  # x86-64-v3 (AVX2, FMA)
}
for _key, _value in REPRODUCIBLE_KERNELS.items():
    os.environ.setdefault(_key, _value)

import typer  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO and WARNING lines
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
logging.getLogger("absl").setLevel(logging.ERROR)  # absl's Python warnings from Keras and TensorFlow

# Written by TensorFlow's libraries while they load, before absl logging is initialised, so that
# TF_CPP_MIN_LOG_LEVEL does not reach them; once per library, hence twice. oneDNN itself stays on.
TF_START_UP_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|^To enable the following instructions: .*rebuild TensorFlow"
)


@contextlib.contextmanager
def _stderr_without(notices: re.Pattern):
    """Capture file descriptor 2 (C++ libraries write there directly) and pass on every line that
    ``notices`` does not match, in order, when the block ends."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not notices.search(line):
                    sys.stderr.write(line)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """The first ``import tensorflow`` (also through Keras or MLflow) runs inside :func:`_stderr_without`;
    a command that never imports TensorFlow pays nothing."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def quiet_exec_module(module):
                with _stderr_without(TF_START_UP_NOTICES):
                    exec_module(module)

            spec.loader.exec_module = quiet_exec_module
        return spec


if not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlowImport())

app = typer.Typer(
    help="Reproducible neural-network experiments on simulated CMB skies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
lensing_app = typer.Typer(help="Lensing experiment: CNN estimation of kappa from lensed T maps.", no_args_is_help=True)
cenn_app = typer.Typer(
    help="Component separation: CENN recovers the 143 GHz CMB from three channels.", no_args_is_help=True
)
params_app = typer.Typer(help="Inspect and check params.yaml.", no_args_is_help=True)
app.add_typer(lensing_app, name="lensing")
app.add_typer(cenn_app, name="cenn")
app.add_typer(params_app, name="params")


def _version(value: bool) -> None:
    if value:
        from cmbml import __version__  # from the package metadata: no heavy import

        typer.echo(f"cmbml {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the installed version and exit."
    ),
) -> None:
    pass


def _pipeline_files() -> dict[str, dict[str, list[Path]]]:
    """``{stage: {"deps": [...], "outs": [...]}}`` of dvc.yaml (code excluded, ``outs`` with plots and
    metrics), its ``${...}`` taken from params.yaml: read as YAML, since the library never imports DVC.
    Empty where either file is missing or unreadable."""
    import yaml

    try:
        stages = yaml.safe_load(Path("dvc.yaml").read_text())["stages"]
        params = yaml.safe_load(Path("params.yaml").read_text())

        def value(match: re.Match) -> str:
            node = params
            for key in match.group(1).split("."):
                node = node[key]
            return str(node)

        def resolve(entry) -> Path:
            text = entry if isinstance(entry, str) else next(iter(entry))
            for _ in range(5):  # paths may name other paths
                text = re.sub(r"\$\{([\w.]+)\}", value, text)
            return Path(text)

        def expand(name: str, stage: dict):
            """``foreach``/``do`` stages as DVC names them (``<name>@<key>``), ``${key}`` and ``${item.x}`` filled in."""
            if "foreach" not in stage:
                yield name, stage
                return
            for key, item in stage["foreach"].items():

                def fill(entry, key=key, item=item):
                    text = entry if isinstance(entry, str) else next(iter(entry))
                    text = text.replace("${key}", key)
                    return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), text)

                yield f"{name}@{key}", {k: [fill(e) for e in v] for k, v in stage["do"].items() if isinstance(v, list)}

        code = ("src/", "stages/")
        return {
            name: {
                "deps": [resolve(d) for d in stage.get("deps", []) if not str(d).startswith(code)],
                "outs": [resolve(o) for key in ("outs", "plots", "metrics") for o in stage.get(key, [])],
            }
            for group, definition in stages.items()
            for name, stage in expand(group, definition)
        }
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return {}


def _missing_input_message(missing: Path, pipeline: dict[str, dict[str, list[Path]]]) -> str:
    """``missing does not exist yet: run `dvc repro <stage>` first``, naming the stage that writes it
    (or the .dvc file that tracks it)."""
    target = missing.resolve()
    for stage, files in pipeline.items():
        if any(target == out.resolve() or out.resolve() in target.parents for out in files["outs"]):
            return f"cmbml: {missing} does not exist yet: run `dvc repro {stage}` first (stage {stage} writes it)"
    for tracked in Path(".").glob("*.dvc"):
        if Path(tracked.stem).resolve() in (target, *target.parents):
            return f"cmbml: {missing} does not exist: run `dvc pull {tracked}` first"
    return f"cmbml: {missing} does not exist"


def _missing_file_message(err: FileNotFoundError) -> tuple[str, int]:
    """One line for a command that found no file, and its exit status: 2 outside the repository,
    1 inside it (an earlier stage has not run)."""
    name = err.filename
    if name is None:  # h5py and numpy name the file only in their messages
        found = re.search(r"name = '([^']+)'|^(\S+) not found\.?$", str(err))
        name = next(g for g in found.groups() if g) if found else str(err)
    if not (Path("dvc.yaml").is_file() and Path("params.yaml").is_file()):
        return (
            f"cmbml: no {name} here: {Path.cwd()} is not the cmbml repository (no dvc.yaml and "
            "params.yaml); run cmbml from the repository root"
        ), 2
    return _missing_input_message(Path(name), _pipeline_files()), 1


def _one_line_when_files_are_missing(command):
    """Decorator: a command that finds no file ends with one line (:func:`_missing_file_message`)."""
    import functools

    @functools.wraps(command)  # typer reads the wrapped signature
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FileNotFoundError as err:
            message, status = _missing_file_message(err)
            typer.secho(message, fg="red", err=True)
            raise typer.Exit(status) from None

    return wrapper


def _experiment_of(module: str) -> str:
    """The experiment a stage module belongs to (whose input files its check may open)."""
    if module == "spectra":
        return "spectra"
    return "lensing" if module.startswith("lensing") else "cenn"


def _check_every_parameter(module: str, path: str = "params.yaml") -> None:
    """The whole file against every experiment's schema, before any stage computes: a stage's own setup sees
    only the shared blocks and its experiment's keys, so a misspelt key of another block is caught here. Only
    the stage's own experiment's input files are opened (a lensing run needs no instrument table)."""
    from cmbml.common.params import load_params
    from stages.experiments import check_all

    check_all(load_params(path), source=path, files_of=_experiment_of(module))


def _dvc_ancestor() -> int | None:
    """The pid of the `dvc repro` / `dvc exp run` process this stage runs under (None outside DVC)."""
    pid = os.getppid()
    for _ in range(12):
        try:
            argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        names = [Path(a).name for a in argv[:3]]
        if names[:1] == ["dvc"] or names[1:2] == ["dvc"] or names[1:3] == ["-m", "dvc"]:
            return pid
        if parent <= 1:
            return None
        pid = parent
    return None


def _guard_params(params_file: Path = Path("params.yaml")) -> None:
    """Stop a stage whose params.yaml differs from the one the first stage of the same DVC run read: a second
    `dvc exp run` in this workspace rewrites params.yaml before DVC refuses it as busy, and the running experiment
    would otherwise train on parameters it never asked for. Raises ``ParamError`` naming the keys that changed."""
    import json

    from cmbml.common.params import ParamError, flatten, load_params

    dvc, tmp = _dvc_ancestor(), Path(".dvc") / "tmp"
    if dvc is None or not tmp.is_dir() or not params_file.is_file():
        return
    for old in tmp.glob("cmbml-params-*.json"):  # runs that ended
        pid = old.stem.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            old.unlink(missing_ok=True)
    record, now = tmp / f"cmbml-params-{dvc}.json", flatten(load_params(params_file))
    if not record.is_file():
        record.write_text(json.dumps(now, sort_keys=True, default=str))
        return
    started = json.loads(record.read_text())
    now = json.loads(json.dumps(now, default=str))
    changed = sorted(k for k in set(started) | set(now) if started.get(k) != now.get(k))
    if changed:
        shown = ", ".join(f"{k} {started.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
        raise ParamError(
            [
                f"params.yaml changed while this DVC run was going ({shown}{', ...' if len(changed) > 5 else ''}): "
                "another `dvc exp run` in this workspace rewrote it; this run stops rather than go on with parameters "
                "it did not start with (queue experiments with `dvc exp run --queue` instead)"
            ],
            str(params_file),
        )


def _run_stage(module: str, stage: str | None = None, **kwargs) -> None:
    """Run ``stages.<module>.main(**kwargs)`` as dvc.yaml's stage ``stage`` (default ``module``). Parameter errors exit with status 2, data the validation gate did
    not pass with status 1, each with a readable message; so does a missing file (outside the
    repository 2, an input whose stage has not run 1), in one line naming the stage that writes it."""
    from cmbml.common.fit import TrainingDiverged
    from cmbml.common.gate import GateNotPassed
    from cmbml.common.params import ParamError
    from stages.experiments import SpaceError
    from stages.tracking import StoreError

    try:
        _guard_params()
    except ParamError as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(2) from None
    # Inputs first: a stage run before the one that writes its data would fail deep inside (or, for a
    # validation gate, report every expectation as failed).
    pipeline = _pipeline_files()
    missing = [path for path in pipeline.get(stage or module, {}).get("deps", []) if not path.exists()]
    if missing:
        typer.secho(_missing_input_message(missing[0], pipeline), fg="red", err=True)
        raise typer.Exit(1)
    try:
        _check_every_parameter(module)
        from cmbml.common.params import load_params
        from stages.experiments import check_space

        check_space(load_params("params.yaml"), [stage or module])  # outputs and arrays that fit, before any compute
        importlib.import_module(f"stages.{module}").main(**kwargs)
        _guard_params()  # and after: a change while it ran must not be recorded in dvc.lock as what it used
    except (ParamError, SpaceError) as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(2) from None
    except (GateNotPassed, ConnectionError, StoreError) as err:  # a gate that did not pass; an executor or a store
        typer.secho(str(err), fg="red", err=True)  # that did not answer
        raise typer.Exit(1) from None
    except TrainingDiverged as err:
        typer.secho(f"{stage or module}: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    except FileNotFoundError as err:
        message, status = _missing_file_message(err)
        typer.secho(message, fg="red", err=True)
        raise typer.Exit(status) from None


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


@cenn_app.command("cmb-maps")
def cmb_maps() -> None:
    """Full-sky CMB T, Q, U realisations (FITS)."""
    _run_stage("cmb_maps")


FOREGROUNDS_OPTION = typer.Option(
    "training",
    "--foregrounds",
    help="which foreground sky: training (the `foregrounds` model, every split) or "
    "unseen (the `unseen_foregrounds` model, Validation only, never used in training)",
)


def _run_foreground_stage(module: str, foregrounds: str) -> None:
    """Run ``module`` on one foreground sky, as dvc.yaml's stage ``<module>@<sky>`` (the setup refuses
    any other sky)."""
    _run_stage(module, f"{module}@{foregrounds}", foreground_sky=foregrounds)


@cenn_app.command("foregrounds")
def foregrounds(foregrounds: str = FOREGROUNDS_OPTION) -> None:
    """Dust, synchrotron, radio and infrared sources at every channel (FITS, uK_CMB)."""
    _run_foreground_stage("foregrounds", foregrounds)


@cenn_app.command("simulate")
def cenn_simulate(foregrounds: str = FOREGROUNDS_OPTION) -> None:
    """Cut multi-frequency patches and CMB labels into Train/Test/Validation HDF5 files (unseen sky: Validation)."""
    _run_foreground_stage("cenn_simulate", foregrounds)


@cenn_app.command("validate")
def cenn_validate(foregrounds: str = FOREGROUNDS_OPTION) -> None:
    """Great Expectations gate over the CENN patch files."""
    _run_foreground_stage("cenn_validate", foregrounds)


@cenn_app.command("train")
def cenn_train() -> None:
    """Train CENN and log it to MLflow."""
    _run_stage("cenn_train")


@cenn_app.command("evaluate")
def cenn_evaluate() -> None:
    """Predict the Validation patches of both skies; NaMaster spectra, classical baselines, metrics and plots."""
    _run_stage("cenn_evaluate")


@cenn_app.command("separate")
def cenn_separate() -> None:
    """Apply the network to a full test sky (maps written as Planck's), score it beside a harmonic ILC and the
    patch-level evaluation."""
    _run_stage("cenn_separate")


@params_app.command("check")
@_one_line_when_files_are_missing
def params_check(path: str = typer.Argument("params.yaml")) -> None:
    """Check every parameter of both experiments against its allowed range."""
    from cmbml.common.params import ParamError, load_params
    from stages.experiments import SpaceError, check_all, check_space

    try:
        params = load_params(path)
        check_all(params, source=path)
        check_space(params)  # every stage's outputs against the free space of its folder, its arrays against memory
    except (ParamError, SpaceError) as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{path}: all parameters valid")


@params_app.command("compose")
def params_compose(overrides: list[str] = typer.Argument(None), output: str = "params.yaml") -> None:
    """Write params.yaml from conf/ exactly as `dvc exp run -S ...` would (e.g. `lensing=v3 scale=smoke`)."""
    from pathlib import Path

    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(Path(output), str(Path("conf").resolve()), None, "config", Path.cwd(), overrides or [])
    typer.echo(f"wrote {output}")


@app.command()
@_one_line_when_files_are_missing
def report(
    pages: list[str] = typer.Option(
        None,
        "--page",
        help="Markdown pages to write the tables into, wherever their blocks are (default: README.md and docs/*.md)",
    ),
    figures: str = "docs/figures",
    scale: str = "default",
    only: list[str] = typer.Option(
        None,
        "--only",
        help=(
            "rewrite only these blocks (lensing-results, cenn-results, cenn-foreground-models, "
            "cenn-full-sky), "
            "leaving the others as they are: for a store that holds the runs of some tables only"
        ),
    ),
) -> None:
    """Write the results tables (lensing v1-v8, CENN E/B/QU) between their markers, in whichever pages hold them
    (a block's short form, ``<!-- NAME-summary -->``, holds its first table, as the README's front page does), and plot
    rho(L) of every lensing version, from the newest finished evaluation per parameter set in the MLflow store.
    CENN runs count apart per foreground model, instrument, network architecture and B-mode loss weight."""
    from pathlib import Path

    from cmbml.cenn.networks import ARCHITECTURES as CENN_ARCHITECTURES
    from cmbml.common.config import resolve_tracking_uri
    from cmbml.common.params import load_params
    from cmbml.lensing.plots import plot_rho_versions
    from stages._results import latest_evaluations
    from stages.report import (
        CENN_MARKER,
        FOREGROUND_MARKER,
        FULLSKY_MARKER,
        LENSING_MARKER,
        cenn_network_name,
        cenn_pixel_table,
        cenn_response_table,
        cenn_table,
        current_block,
        first_table,
        foreground_model_table,
        fullsky_table,
        keep_rows_not_regenerated,
        lensing_pixel_table,
        lensing_table,
        replace_between_markers,
    )

    blocks = (LENSING_MARKER, CENN_MARKER, FOREGROUND_MARKER, FULLSKY_MARKER)
    unknown = sorted(set(only or ()) - set(blocks))
    if unknown:
        raise typer.BadParameter(
            f"no results block {unknown[0]!r}: choose from {', '.join(blocks)}", param_hint="--only"
        )
    written = set(only or blocks)

    from stages.tracking import StoreError, open_store

    params = load_params("params.yaml")
    uri = resolve_tracking_uri(params["mlflow"]["tracking_uri"])
    try:
        open_store(uri)
    except StoreError as err:
        typer.secho(f"cmbml report: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    # Lensing runs on maps made as params.yaml makes them (runs from before lensing_simulate.oversampling existed
    # were lensed at the pixels: 1).
    oversampling = str(params["lensing_simulate"]["oversampling"])
    lensing = [
        r
        for (_, _, made, _), r in latest_evaluations(
            uri,
            params["mlflow"]["lensing_experiment"],
            "evaluation",
            scale,
            "rho_L.json",
            "rho_opt_mean",
            group_by=("lensing_net.architecture", "lensing_simulate.oversampling", "method"),
            missing={"lensing_net.architecture": "original", "lensing_simulate.oversampling": "1", "method": ""},
        ).items()
        if made == oversampling
    ]
    default_instrument = params["instrument"]["table"]
    by_model = latest_evaluations(
        uri,
        params["mlflow"]["cenn_experiment"],
        "evaluation",
        scale,
        "spectra.json",
        "mse_over_wiener",
        group_by=(
            "foregrounds.model",
            "instrument.table",
            "cenn_net.architecture",
            "cenn_train.b_mode_weight",
            "method",
            "cenn_net.eb.b_modes",
            "scored_sky",
        ),
        missing={
            "cenn_net.architecture": "original",
            "cenn_train.b_mode_weight": "0.0",
            "method": "",
            "cenn_net.eb.b_modes": "learned",
            "scored_sky": "both",
        },
        required_any=("unseen_mse_over_wiener",),
    )
    # The per-variant tables: networks trained on the Gaussian sky seen by params.yaml's instrument; the
    # separation table: every variant on each instrument, trained on each model, scored on it and the unseen one.
    # Rows in the order variant, then the registry's order of architectures.
    order, arch_order = {"E": 0, "B": 1, "QU": 2}, {a: i for i, a in enumerate(CENN_ARCHITECTURES)}
    # Rows in the order variant, networks (the registry's order), then the methods entered with `cmbml score`.
    rows = sorted(
        by_model.items(),
        key=lambda kv: (
            kv[0][2] != default_instrument,
            order.get(kv[0][0], 9),
            kv[0][1],
            kv[0][5],
            arch_order.get(kv[0][3], 99),
            float(kv[0][4]),
            kv[0],
        ),
    )
    cenn = [
        {**r, "architecture": cenn_network_name(*key[3:7])}
        for key, r in rows
        if key[1] == "gaussian" and key[2] == default_instrument and "map_mse_network_uK2" in r["metrics"]
    ]
    swapped = [
        {**r, "architecture": cenn_network_name(*key[3:7]), "unseen_model": r["tags"].get("unseen_foregrounds.model")}
        for key, r in rows
        if "unseen_map_mse_network_uK2" in r["metrics"]
    ]
    paths = [Path(p) for p in pages] if pages else [Path("README.md"), *sorted(Path("docs").glob("*.md"))]
    texts = {path: path.read_text() for path in paths}
    pixel_note = (
        "\n\nPixel metrics (mean over {} +- error; RMSE in {}, R^2 the fraction of each {}'s variance "
        "explained), for the runs that logged them:\n\n"
    )
    lensing_md = lensing_table(lensing)
    if lensing_pixel_table(lensing):
        lensing_md += pixel_note.format("maps", "units of kappa x the exaggeration", "map") + lensing_pixel_table(
            lensing
        )
    # a block's summary, on the front page, is its first table
    new_blocks = {LENSING_MARKER: lensing_md, f"{LENSING_MARKER}-summary": first_table(lensing_md)}
    cenn_md = (
        cenn_table(cenn)
        + (
            "\n\nResponse (cross-spectrum with the label / label power; error: sky-block "
            "jackknife) and the power uncorrelated with the label (D_ell, uK^2), per multipole "
            "range:\n\n"
        )
        + cenn_response_table(cenn, params["cenn_evaluate"]["residual_ell_ranges"])
    )
    if cenn_pixel_table(cenn):
        cenn_md += pixel_note.format("patches", "uK", "patch") + cenn_pixel_table(cenn)
    new_blocks[CENN_MARKER], new_blocks[f"{CENN_MARKER}-summary"] = cenn_md, first_table(cenn_md)
    new_blocks[FOREGROUND_MARKER] = foreground_model_table(swapped, params["cenn_evaluate"]["residual_ell_ranges"])
    # The networks applied to a whole test sky (stage cenn_separate), trained on the Gaussian sky of params.yaml's
    # instrument.
    fullsky = latest_evaluations(
        uri,
        params["mlflow"]["cenn_experiment"],
        "fullsky",
        scale,
        "fullsky_spectra.json",
        "network_residual_rms_uK",
        group_by=("foregrounds.model", "instrument.table", "cenn_net.architecture", "cenn_net.eb.b_modes"),
        missing={"cenn_net.architecture": "original", "cenn_net.eb.b_modes": "learned"},
    )
    fullsky_records = [
        {**r, "architecture": cenn_network_name(key[3], "0.0", "", key[4])}
        for key, r in sorted(fullsky.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0]))
        if key[1] == "gaussian" and key[2] == default_instrument
    ]
    new_blocks[FULLSKY_MARKER] = fullsky_table(fullsky_records)
    # Rows of runs this store does not hold stay (a fresh clone's empty store removes nothing); a block whose
    # old rows cannot be kept (its columns changed) is left as it is, and the report says so.
    partial: set[str] = set()
    for marker in (m for b in blocks if b in written for m in (b, f"{b}-summary") if m in new_blocks):
        holders = [path for path in paths if f"<!-- {marker} -->" in texts[path]]
        if not holders and not marker.endswith("-summary"):
            typer.secho(
                f"report: no page holds the block {marker} ({', '.join(map(str, paths))})", fg="yellow", err=True
            )
        for path in holders:
            merged, problems = keep_rows_not_regenerated(current_block(texts[path], marker), new_blocks[marker])
            if problems:
                typer.secho(
                    f"report: {marker} in {path} left as it is: the store cannot regenerate {'; '.join(problems)}; "
                    "run cmbml report on a store that holds every run",
                    fg="yellow",
                    err=True,
                )
                partial.add(marker)
                continue
            texts[path] = replace_between_markers(texts[path], marker, merged)
            if merged.strip() != new_blocks[marker].strip():
                partial.add(marker)  # rows this store does not hold were kept
    from cmbml.common.io import atomic_path

    changed = [path for path in paths if texts[path] != path.read_text()]
    for path in changed:
        with atomic_path(path) as tmp:
            tmp.write_text(texts[path])
    if lensing and LENSING_MARKER in written and LENSING_MARKER not in partial:
        plot_rho_versions(lensing, Path(figures) / "rho_L_versions.png")
    elif LENSING_MARKER in partial:  # a figure of the runs this store holds would drop the others' curves
        typer.secho(
            f"report: {Path(figures) / 'rho_L_versions.png'} left as it is: the store holds {len(lensing)} of the "
            "lensing table's runs",
            fg="yellow",
            err=True,
        )
    if fullsky_records and FULLSKY_MARKER in written:  # the first variant's full-sky figures, as its run logged them
        from stages._results import copy_run_figures

        copy_run_figures(
            uri,
            fullsky_records[0]["run_id"],
            {
                "fullsky_maps.png": "cenn_fullsky_maps.png",
                **{f"fullsky_{s}.png": f"cenn_fullsky_{s}.png" for s in ("EE", "BB")},
            },
            Path(figures),
        )
    versions = sorted({r["name"] for r in lensing})
    typer.echo(
        f"report: {len(lensing)} lensing runs of {len(versions)} versions ({', '.join(versions)}), "
        f"{len(cenn)} CENN variants ({', '.join(r['name'] for r in cenn)}), "
        f"{len(swapped)} CENN foreground-model runs at scale={scale} -> {', '.join(map(str, changed)) or 'no page changed'} "
        f"({', '.join(b for b in blocks if b in written)})"
    )


@app.command()
def predict(
    model: str = typer.Argument(
        ...,
        help="models:/cmbml-lensing-v2@default, runs:/<id>/model, an MLflow model "
        "folder, or models/lensing/model.keras (model_card.json beside it)",
    ),
    input: str = typer.Argument(..., help="maps: FITS, NumPy (.npy) or HDF5; one map or a stack"),
    output: str = typer.Option(..., "-o", "--output", help="FITS or HDF5 file for the prediction (with units)"),
    dataset: str = typer.Option(None, help="HDF5 dataset to read (default: the only one, or T_lensed / M)"),
    pixel_arcmin: float = typer.Option(None, help="pixel side (arcmin) of NumPy input, which states none"),
    batch_size: int = typer.Option(64, help="maps per forward pass"),
    chunk: int = typer.Option(1024, min=1, help="maps read, predicted and written at a time (bounds the memory used)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output"),
) -> None:
    """Apply a trained network to maps, after checking their geometry and channels against its model card."""
    from cmbml.common.inference import (
        MapError,
        check_against_card,
        check_output,
        open_maps,
        predict_file,
        require_units,
    )
    from cmbml.common.progress import progress
    from stages.tracking import StoreError

    registry = importlib.import_module("stages.model_registry")
    try:
        check_output(output, input, overwrite)  # before anything is read or predicted
        net, card = registry.load_model(model)
        if "input" not in card:
            raise MapError(
                f"{model}: the model carries no model card (geometry and units); retrain it with this version of cmbml"
            )
        with open_maps(input, len(card["input"]["channels"]), dataset) as source:  # pixels stay on disk
            require_units(source, input)
            check_against_card(source, card, input, pixel_arcmin)
            transform = None
            if "derived" in card["input"]:  # channels the network takes beside T, made from T as its card says
                from cmbml.lensing.inputs import InputMaker

                transform = InputMaker.from_card(card["input"]["derived"])
            n = len(source)
            with progress(f"predict {input}", n) as advance:
                predict_file(net, source, output, card, model, batch_size, chunk, transform, advance)
    except (MapError, FileNotFoundError, StoreError, registry.ModelError) as err:
        typer.secho(f"cmbml predict: {err}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"predict: {n} map{'s' if n > 1 else ''} -> {output} ({card['output']['quantity']}, {card['output']['units']})"
    )


@app.command()
@_one_line_when_files_are_missing
def separate(
    model: str = typer.Argument(
        ..., help="models:/cmbml-cenn-E@default, runs:/<id>/model, an MLflow model folder, or models/cenn/model.keras"
    ),
    maps: list[str] = typer.Argument(
        ...,
        help="one HEALPix FITS map per channel of the model, lowest frequency first (K_CMB or uK_CMB, RING or NESTED)",
    ),
    output: str = typer.Option(..., "-o", "--output", help="HEALPix FITS file for the CMB estimate (uK_CMB, RING)"),
    b_min_deg: float = typer.Option(30.0, "--b-min", help="Galactic cut: the estimate covers |b| > b_min (deg)"),
    spacing: float = typer.Option(0.5, help="spacing of the patch centres, in patch sides (at most 0.5)"),
    batch: int = typer.Option(128, help="patches in memory at a time"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output"),
) -> None:
    """Apply a trained CENN network to full-sky frequency maps: the sky above the cut is covered with overlapping
    patches of the model's geometry, and the estimates are reprojected onto HEALPix with smooth overlap weights."""
    from cmbml.cenn.separate import SkyMapError
    from stages.separate import separate_maps
    from stages.tracking import StoreError

    if not 0 < spacing <= 0.5:
        raise typer.BadParameter(f"{spacing}: allowed 0 < spacing <= 0.5", param_hint="--spacing")
    if not 0 <= b_min_deg < 90:
        raise typer.BadParameter(f"{b_min_deg}: allowed 0 <= b_min < 90", param_hint="--b-min")
    try:
        summary = separate_maps(model, maps, output, b_min_deg, spacing, batch, overwrite)
    except (SkyMapError, ValueError, StoreError) as err:
        typer.secho(f"cmbml separate: {err}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"separate: {summary['n_patches']} patches, {summary['sky_fraction']:.1%} of the sky at nside "
        f"{summary['nside']} -> {output} ({', '.join('CMB_' + c for c in summary['components'])}, MASK, WEIGHT)"
    )


@app.command()
@_one_line_when_files_are_missing
def score(
    experiment: str = typer.Argument(..., help="lensing or cenn"),
    estimates: str = typer.Argument(
        ...,
        help="FITS, NumPy (.npy) or HDF5: one estimate per sample of the evaluation "
        "split (lensing: kappa; cenn: the CMB components), in the split's order",
    ),
    method: str = typer.Option(..., "--method", help="the method's name: the MLflow run's and the tables' row"),
    sky: str = typer.Option("training", "--sky", help="cenn: the foreground sky scored, training or unseen"),
    dataset: str = typer.Option(None, help="HDF5 dataset to read (default: prediction, or the only one)"),
    out: str = typer.Option(
        None, "-o", "--out", help="folder for the scores and plots (default scores/<experiment>/<method>[-unseen])"
    ),
) -> None:
    """Score any method's estimates of the evaluation split with the yardsticks that score the networks: the same
    code, the same classical answers beside it; logged to MLflow as an evaluation run named after the method, which
    `cmbml report` shows beside the networks."""
    from pathlib import Path

    from cmbml.common.gate import GateNotPassed
    from cmbml.common.inference import MapError
    from cmbml.common.params import ParamError
    from stages.score import check_method_name, score_cenn, score_lensing

    if experiment not in ("lensing", "cenn"):
        raise typer.BadParameter(f"{experiment!r}: allowed lensing or cenn", param_hint="EXPERIMENT")
    try:
        check_method_name(method)
        if experiment == "lensing" and sky != "training":
            raise ValueError(f"--sky {sky!r}: the lensing maps have one sky; --sky is for cenn")
        _check_every_parameter(experiment)
        folder = Path(out) if out else Path("scores") / experiment / (method + ("" if sky == "training" else f"-{sky}"))
        if experiment == "lensing":
            from stages.lensing_evaluate import summary_line

            metrics, run_id = score_lensing(estimates, method, folder, dataset)
            typer.echo(f"score: {method} {summary_line(metrics)}; -> {folder}, MLflow run {run_id}")
        else:
            from cmbml.cenn.evaluation import REFERENCE, UNSEEN_PREFIX

            summary, run_id = score_cenn(estimates, method, sky, folder, dataset)
            p = "" if sky == "training" else UNSEEN_PREFIX
            typer.echo(
                f"score: {method} on the {sky} sky: map MSE {summary[p + 'map_mse_network_uK2']:.4g} uK^2, / "
                f"{REFERENCE} {summary[p + 'mse_over_' + REFERENCE]:.3f} +- "
                f"{summary[p + 'mse_over_' + REFERENCE + '_err']:.3f}; -> {folder}, MLflow run {run_id}"
            )
    except (MapError, ValueError, ParamError) as err:
        typer.secho(f"cmbml score: {err}", fg="red", err=True)
        raise typer.Exit(2) from None
    except GateNotPassed as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(1) from None


@app.command("check-reproduction")
def check_reproduction(
    rev: str = typer.Option("HEAD", help="the committed run to compare with (a git revision)"),
    rtol: float = typer.Option(
        0.02, help="relative tolerance of the metrics files' figures (a network's moved up to 1% between CPUs)"
    ),
    atol: float = typer.Option(1e-9, help="absolute tolerance of the figures (for those near zero)"),
) -> None:
    """After `dvc repro` on this machine: are the outputs of every stage no network enters byte-identical to the
    committed ones (dvc.lock), and every figure of the metrics files within the tolerance? Exit 1 if not."""
    from cmbml.common.params import load_params
    from stages.reproduction import check_reproduction as check

    paths = load_params("params.yaml")["paths"]
    model_dirs = [paths[experiment]["model_dir"] for experiment in ("lensing", "cenn")]
    try:
        result = check(rev, model_dirs, rtol, atol)
    except ValueError as err:
        typer.secho(f"cmbml check-reproduction: {err}", fg="red", err=True)
        raise typer.Exit(2) from None
    n = len(result.identical) + len(result.differing)
    typer.echo(f"stages no network enters: {len(result.identical)} of {n} with byte-identical outputs")
    for stage, outs in result.differing.items():
        typer.secho(f"  {stage}: differs in {', '.join(outs)}", fg="red")
    if result.not_run:
        typer.echo(f"  not run here: {', '.join(result.not_run)}")
    typer.echo(f"stages a network enters (compared by their figures): {', '.join(result.network) or 'none'}")
    total = result.figures_equal + result.figures_close + len(result.outside)
    typer.echo(
        f"figures: {result.figures_equal} of {total} equal, {result.figures_close} within {rtol:g} relative "
        f"(largest difference {result.largest_relative:.1e}), {len(result.outside)} outside"
    )
    for line in result.outside[:20]:
        typer.secho(f"  {line}", fg="red")
    if not result.ok:
        raise typer.Exit(1)
    typer.echo(f"reproduced: this run agrees with {rev}")


@app.command()
@_one_line_when_files_are_missing
def ui(port: int = 5000) -> None:
    """Serve the MLflow UI on the repository's store (127.0.0.1)."""

    from cmbml.common.config import resolve_tracking_uri
    from cmbml.common.params import load_params
    from stages.tracking import StoreError, open_store

    uri = resolve_tracking_uri(load_params("params.yaml")["mlflow"]["tracking_uri"])
    try:
        open_store(uri)
    except StoreError as err:
        typer.secho(f"cmbml ui: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    with socket.socket() as probe:  # MLflow's server would log a taken port among its lines and exit 0
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as err:
            typer.secho(
                f"cmbml ui: port {port} on 127.0.0.1 is taken ({err.strerror}); pass --port", fg="red", err=True
            )
            raise typer.Exit(1) from None
    os.execvp(
        sys.executable,
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
    )


if __name__ == "__main__":
    app()
