"""MLflow runs always close: FAILED on an exception, KILLED on SIGTERM/SIGINT, and a run left RUNNING by a
process killed outright is closed at the next stage start. Two processes can log to one SQLite store at once.
Real MLflow on a SQLite store in a temporary folder; the processes are real and really killed."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent("""
    import sys, time
    import mlflow
    from stages.tracking import closing_run
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("lifecycle")
    with closing_run(mlflow, sys.argv[2], run_name=sys.argv[2]):
        for step in range(int(sys.argv[3])):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            time.sleep(float(sys.argv[4]))
    """)


def _start(uri, name, steps=100000, pause=0.05):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, uri, name, str(steps), str(pause)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_named(client, name, timeout=120.0):
    """The run called ``name`` once it has logged a metric (its process is inside the run)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        exp = client.get_experiment_by_name("lifecycle")
        if exp is not None:
            runs = client.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")
            if runs and runs[0].data.metrics:
                return runs[0]
        time.sleep(0.5)
    raise AssertionError(f"run {name} never started")


@pytest.fixture
def store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, MlflowClient(uri)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_stage_closes_its_run_as_killed(store, sig):
    uri, client = store
    proc = _start(uri, f"signalled-{sig.name}")
    run = _run_named(client, f"signalled-{sig.name}")
    assert run.info.status == "RUNNING"
    proc.send_signal(sig)
    assert proc.wait(60) != 0
    closed = client.get_run(run.info.run_id)
    assert closed.info.status == "KILLED" and sig.name in closed.data.tags["cmbml.end"]


def test_an_exception_closes_the_run_as_failed(store):
    import mlflow

    from stages.tracking import closing_run

    uri, client = store
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("lifecycle")
    with pytest.raises(ZeroDivisionError), closing_run(mlflow, "unit", run_name="failing") as run:
        _ = 1 / 0
    closed = client.get_run(run.info.run_id)
    assert closed.info.status == "FAILED" and "ZeroDivisionError" in closed.data.tags["cmbml.end"]


def test_a_run_left_running_by_sigkill_is_closed_at_the_next_start(store):
    uri, client = store
    victim = _start(uri, "sigkilled")
    run = _run_named(client, "sigkilled")
    victim.send_signal(signal.SIGKILL)
    victim.wait(60)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # nothing could close it
    nxt = _start(uri, "next", steps=3, pause=0.0)
    assert nxt.wait(120) == 0, nxt.stderr.read()
    closed = client.get_run(run.info.run_id)
    assert closed.info.status == "KILLED" and "closed at the next stage start" in closed.data.tags["cmbml.end"]
    # a command that only opens the store (cmbml report, ui, predict models:/...) closes one too
    again = _start(uri, "killed-again")
    run = _run_named(client, "killed-again")
    again.send_signal(signal.SIGKILL)
    again.wait(60)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    opened = subprocess.run(
        [sys.executable, "-c", f"from stages.tracking import open_store; open_store({uri!r})"], env=env, timeout=120
    )
    assert opened.returncode == 0 and client.get_run(run.info.run_id).info.status == "KILLED"
    assert client.get_run(_run_named(client, "next").info.run_id).info.status == "FINISHED"
    # a live process's run is not touched by someone else's start
    live = _start(uri, "alive")
    live_run = _run_named(client, "alive")
    other = _start(uri, "other", steps=1, pause=0.0)
    assert other.wait(120) == 0
    assert client.get_run(live_run.info.run_id).info.status == "RUNNING"
    live.send_signal(signal.SIGTERM)
    live.wait(60)
    running = client.search_runs(
        [client.get_experiment_by_name("lifecycle").experiment_id], "attributes.status = 'RUNNING'"
    )
    assert running == []


def test_two_processes_log_to_one_store_at_once(store):
    uri, client = store
    client.create_experiment("lifecycle")
    procs = [_start(uri, f"writer-{i}", steps=60, pause=0.0) for i in range(2)]
    for p in procs:
        assert p.wait(300) == 0, p.stderr.read()
    exp = client.get_experiment_by_name("lifecycle")
    for i in range(2):
        (run,) = client.search_runs([exp.experiment_id], f"attributes.run_name = 'writer-{i}'")
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 60


CARD = {
    "experiment": "lensing",
    "parameter_set": "v2",
    "scale": "smoke",
    "registered_model": "cmbml-test-v2",
    "params_digest": "0123456789abcdef01234567",
    "input": {
        "quantity": "lensed CMB temperature",
        "channels": ["T"],
        "units": "uK_CMB",
        "npix": 8,
        "pixel_arcmin": 10.0,
    },
    "output": {"quantity": "convergence kappa", "channels": ["kappa"], "units": "dimensionless"},
}


def test_a_training_run_logs_the_fit_and_registers_the_model_under_the_scale_alias(store, tmp_path, monkeypatch):
    """The glue of the training stages on a tiny network: run name and tags, parameters, datasets, one metric
    step per epoch, artifacts, the registered version with its alias and tags, loading it back by reference,
    and the evaluation finding the run from the model file."""
    import h5py
    import keras
    import mlflow
    import numpy as np

    from cmbml.common.config import Tracking
    from cmbml.common.fit import fit, write_fit
    from cmbml.common.io import write_json
    from cmbml.common.training import H5Batches
    from stages.model_registry import input_example, load_model, log_and_register, register
    from stages.tracking import ParameterSet, file_md5, log_evaluation, run_that_trained, training_run

    uri, client = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.chdir(REPO)  # the parameter set's defaults are composed from conf/
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", 8), ("val", 4)):
        files[split] = tmp_path / f"{split}.h5"
        with h5py.File(files[split], "w") as h5:
            h5["T"] = rng.normal(5.0, 2.0, (n, 8, 8)).astype(np.float32)
            h5["kappa"] = (0.1 * h5["T"][:]).astype(np.float32)
    stats = ((5.0, 2.0), (0.5, 0.2))
    training = H5Batches(files["train"], "T", "kappa", 4, *stats, shuffle=True, seed=1)
    early_stopping = H5Batches(files["val"], "T", "kappa", 4, *stats)
    keras.utils.set_random_seed(0)
    core = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 3, padding="same")], name="tiny")
    core.compile(optimizer="adam", loss="mse")

    tracking = Tracking(
        uri,
        "training",
        "cmbml-test-v2",
        {"lensing_train.learning_rate": 123.0, "seed": 20261121},
        {},
        description="unit test",
    )
    parameter_set = ParameterSet(tracking, "lensing", "v2", "smoke", CARD)
    out = tmp_path / "out"
    model_file, card_file, curve = out / "model.keras", out / "model_card.json", out / "training_curve.png"
    with training_run(parameter_set, stage="unit_train") as run:
        run.log_inputs(core, training, early_stopping)
        fitted = fit(core, training, early_stopping, 2, 2, on_epoch_end=run.log_epoch, scratch=out, verbose=0)
        write_fit(fitted, model_file, out / "history.json", curve, title="unit test")
        write_json(card_file, CARD)
        run.log_fit(fitted, model_file, artifacts=[curve, card_file])
        registered = log_and_register(run, fitted.model, input_example(early_stopping))

    logged = client.get_run(run.id)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "v2-smoke lensing_train.learning_rate=123.0"  # the seed is the default's
    tags = logged.data.tags
    assert (tags["parameter_set"], tags["scale"], tags["cmbml.stage"]) == ("v2", "smoke", "unit_train")
    assert (
        tags["overrides"] == '{"lensing_train.learning_rate": 123.0}' and tags["params_digest"] == CARD["params_digest"]
    )
    assert tags["cmbml.model_md5"] == file_md5(model_file)
    params = logged.data.params
    assert params["lensing_train.learning_rate"] == "123.0" and params["n_parameters"] == "10"
    assert (params["x_mean"], params["x_std"], params["y_mean"], params["y_std"]) == ("5.0", "2.0", "0.5", "0.2")
    assert [m.step for m in client.get_metric_history(run.id, "val_loss")] == [1, 2]
    assert logged.data.metrics["best_epoch"] == fitted.best_epoch and logged.data.metrics["epochs_run"] == 2
    assert {a.path for a in client.list_artifacts(run.id)} == {"training_curve.png", "model_card.json"}
    assert sorted((d.dataset.name, d.tags[0].value) for d in logged.inputs.dataset_inputs) == [
        ("train.h5", "training"),
        ("val.h5", "early_stopping"),
    ]

    assert str(registered) == "models:/cmbml-test-v2@smoke (version 1)"
    version = client.get_model_version("cmbml-test-v2", "1")
    assert version.tags["parameter_set"] == "v2" and not any(k.startswith("mlflow.") for k in version.tags)
    assert client.get_registered_model("cmbml-test-v2").aliases == {"smoke": 1}
    net, card = load_model("models:/cmbml-test-v2@smoke")
    assert card == CARD
    x = input_example(early_stopping)
    np.testing.assert_allclose(net.predict(x, verbose=0), fitted.model.predict(x, verbose=0), rtol=1e-6)
    # a newer training at the same scale takes the alias
    again = register(mlflow, tracking, registered.model_uri, "smoke", {"parameter_set": "v2"}, CARD)
    assert int(again.version) == 2 and client.get_registered_model("cmbml-test-v2").aliases == {"smoke": 2}

    assert run_that_trained(mlflow, tracking, model_file).info.run_id == run.id
    assert log_evaluation(tracking, model_file, "evaluation", {"mse": 0.5}, artifacts=[]) == run.id
    assert client.get_run(run.id).data.metrics["evaluation_mse"] == 0.5


def test_a_racing_alias_move_leaves_the_alias_on_the_newest_version():
    """Two experiments registering at once against a server: the second alias insert fails on its unique key
    (seen with PostgreSQL). The move is read back: retried while an older version holds the alias, given up
    (without error) once a newer one does."""
    from types import SimpleNamespace

    from mlflow.exceptions import MlflowException

    from stages.model_registry import move_alias

    class Registry:  # the two calls move_alias makes, with the race played out in between
        def __init__(self, holder, fail_times):
            self.holder, self.fail_times, self.sets = holder, fail_times, []

        def set_registered_model_alias(self, name, alias, version):
            self.sets.append(version)
            if len(self.sets) <= self.fail_times:
                raise MlflowException("duplicate key value violates unique constraint registered_model_alias_pk")
            self.holder = version

        def get_model_version_by_alias(self, name, alias):
            return SimpleNamespace(version=str(self.holder))

    older = Registry(holder=3, fail_times=1)
    move_alias(older, "cmbml-lensing-v2", "smoke", 4)
    assert older.holder == 4 and older.sets == [4, 4]
    newer = Registry(holder=5, fail_times=1)
    move_alias(newer, "cmbml-lensing-v2", "smoke", 4)
    assert newer.holder == 5 and newer.sets == [4]
    stuck = Registry(holder=3, fail_times=99)
    with pytest.raises(MlflowException):
        move_alias(stuck, "cmbml-lensing-v2", "smoke", 4, attempts=3)


FIRST_USE = textwrap.dedent("""
    import sys
    from cmbml.common.config import Tracking
    from stages.tracking import start_mlflow
    mlflow = start_mlflow(Tracking(sys.argv[1], "cenn", "cmbml-test", {}, {}))
    with mlflow.start_run():
        mlflow.log_metric("x", 1.0)
    """)


@pytest.mark.parametrize("trial", range(2))
def test_four_processes_can_open_a_new_sqlite_store_at_once(tmp_path, trial):
    """A fresh clone's first `dvc queue start -j 2` opens a store that does not exist yet from several processes:
    every one of them creates its run (without the lock, three of four died in MLflow's table creation or alembic
    migration, every time)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}", "CMBML_MLFLOW_ARTIFACTS": str(tmp_path / "art")}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", FIRST_USE, uri], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.stderr.read() for p in procs if p.wait(300) != 0]
    assert not errors, errors[0][-2000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    assert len(client.search_runs([client.get_experiment_by_name("cenn").experiment_id])) == 4


def test_a_damaged_store_is_named_with_the_way_out(tmp_path):
    """A file that is not an SQLite database (or one SQLite cannot read) stops in one line naming the file and how to
    recover; the file is left as it was."""
    from stages.tracking import StoreError, open_store

    db = tmp_path / "mlflow.db"
    db.write_bytes(b"\0" * 4096)
    with pytest.raises(StoreError) as err:
        open_store(f"sqlite:///{db}")
    message = str(err.value)
    assert "\n" not in message and str(db) in message and "damaged" in message and "mv " in message
    assert db.read_bytes() == b"\0" * 4096
    torn = tmp_path / "torn.db"
    torn.write_bytes(b"SQLite format 3\x00" + b"\x07" * 4000)  # the header, then garbage
    with pytest.raises(StoreError, match=r"torn.db: the MLflow store cannot be opened \("):
        open_store(f"sqlite:///{torn}")


def test_an_unreachable_server_is_reported_within_seconds():
    """A tracking server that is not running is reported in one line after the health check's timeout, not after
    MLflow's minutes of retries."""
    from stages.tracking import SERVER_TIMEOUT_S, StoreError, open_store
    from tests.integration.conftest import free_port

    start = time.time()
    with pytest.raises(StoreError, match=r"did not answer within .*scripts/tracking_server\.sh"):
        open_store(f"http://127.0.0.1:{free_port()}")
    assert time.time() - start < SERVER_TIMEOUT_S + 5
