"""The real lensing pipeline under `dvc exp run`, read back through DVC and MLflow."""

import json
import subprocess

import numpy as np
import pytest
import yaml

from tests.integration.conftest import sh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_experiment(repo_copy):
    root, env = repo_copy
    sh(["dvc", "exp", "run", "-n", "smoke-x10", "-S", "scale=smoke", "-S", "kappa_exaggeration_factor=10"], root, env)
    return root, env


def test_dvc_metrics_and_experiment_table(smoke_experiment):
    root, env = smoke_experiment
    metrics = json.loads((root / "metrics/lensing.json").read_text())
    assert metrics["n_evaluation"] == 48 and np.isfinite(metrics["rho_cnn_mean"]) and metrics["mse_kappa"] > 0
    # per-L curves go to the plot file, not to scalar metrics; the bins are the setup's
    from cmbml.common.flatsky import bin_power
    from cmbml.lensing.setup import load

    setup = load(root / "params.yaml", root / "conf")
    centres, _, _ = bin_power(setup.grid, np.zeros((setup.grid.npix,) * 2), setup.rho_bin_edges)
    per_bin = json.loads((root / "plots/lensing/evaluate/rho_L.json").read_text())["rho_L"]
    assert np.allclose([row["L"] for row in per_bin], centres) and not [k for k in metrics if k.startswith("rho_L")]
    # the quadratic estimator on the pipeline's maps sees +kappa (the documented lensing sign) with
    # x10 kappa: built from the maps' sky, its limit in linear theory is 0.81 (v3; 0.746 with CAMB's lensed
    # spectrum, science notes), and it never beats it by much
    assert 0.75 < metrics["rho_opt_mean"] < 0.85 and 0.5 < metrics["rho_qe_mean"] < metrics["rho_opt_mean"] + 0.1
    for row in per_bin:
        assert row["n0"] > 0 and row["noise_cnn"] > 0 and row["response_qe"] > 0.5
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], root, env).stdout)
    assert "smoke-x10" in json.dumps(shown)
    assert (root / "reports/lensing/validation.json").exists()
    assert (root / "plots/lensing/evaluate/rho_L.png").stat().st_size > 1000


def test_the_quick_tour_notebook_runs_on_the_registered_model(smoke_experiment, monkeypatch):
    """docs/quick_tour.ipynb, executed by a Jupyter kernel from its own folder: it finds the repository, loads the
    model registered by the smoke experiment through the safe loader, applies it to the evaluation maps, draws the
    maps and the spectra (two figures) and prints a finite mean rho."""
    import re

    import nbformat
    from nbclient import NotebookClient

    root, _ = smoke_experiment
    monkeypatch.setenv("CMBML_TOUR_MODEL", "models:/cmbml-lensing-v2@smoke")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the store is the one the repository's params name
    notebook = nbformat.read(root / "docs" / "quick_tour.ipynb", as_version=4)
    assert not [c for c in notebook.cells if c.get("outputs")]  # shipped without stale outputs
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(root / "docs")}}
    ).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
    text = "".join(o.get("text", "") for o in outputs)
    assert "models:/cmbml-lensing-v2@smoke" in text and "'channels': ['T']" in text
    rho = float(re.search(r"mean rho over the bins: (\S+)", text).group(1))
    assert np.isfinite(rho) and -1 <= rho <= 1


def test_mlflow_run_has_params_tags_metrics_and_a_loadable_model(smoke_experiment):
    root, _ = smoke_experiment
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("lensing")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.dvc_exp_name = 'smoke-x10'")
    assert run.data.params["kappa_exaggeration_factor"] == "10" and "cosmology.H0" in run.data.params
    assert not [k for k in run.data.params if k.startswith(("cenn", "instrument", "foregrounds", "scale.cenn"))]
    assert run.data.tags["lensing_evaluate.n_example_maps"] == "3"
    assert run.data.tags["parameter_set"] == "v2" and run.data.tags["dvc_exp_name"] == "smoke-x10"
    assert len(run.data.tags["git_commit"]) == 40
    for key in (
        "loss",
        "val_loss",
        "best_val_loss",
        "evaluation_rho_cnn_mean",
        "evaluation_rho_opt_mean",
        "evaluation_mse_kappa",
    ):
        assert key in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"rho_L.json", "rho_L.png", "training_curve.png", "model_card.json"} <= artifacts  # root: compare view
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) >= 1
    # the run says what changed: name and tags carry the override and the DVC experiment
    assert run.info.run_name in (
        "v2-smoke kappa_exaggeration_factor=10 (smoke-x10)",
        "v2-smoke kappa_exaggeration_factor=10.0 (smoke-x10)",
    )
    assert {k: float(v) for k, v in json.loads(run.data.tags["overrides"]).items()} == {"kappa_exaggeration_factor": 10}
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["git_commit"]
    assert "kappa" in client.get_experiment_by_name("lensing").tags["mlflow.note.content"]
    # inputs: the HDF5 files, each with its DVC hash as digest
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    dvc_md5 = {o["path"]: o["md5"] for o in lock["lensing_train"]["deps"]}
    inputs = {(i.dataset.name, i.tags[0].value, i.dataset.digest) for i in run.inputs.dataset_inputs}
    assert inputs == {
        ("datasets/lensing/training.h5", "training", dvc_md5["datasets/lensing/training.h5"][:20]),
        ("datasets/lensing/early_stopping.h5", "early_stopping", dvc_md5["datasets/lensing/early_stopping.h5"][:20]),
        ("datasets/lensing/evaluation.h5", "evaluation", file_md5(root / "datasets/lensing/evaluation.h5")),
    }
    # one registered model per version, the scale's alias on the newest, with the card as metadata
    version = client.get_model_version_by_alias("cmbml-lensing-v2", "smoke")
    assert version.run_id == run.info.run_id and version.tags["dvc_exp_name"] == "smoke-x10"
    # the registered version's model carries its evaluation scores, each tied to the dataset it was measured on
    model_id = version.source.removeprefix("models:/")  # the logged model the version was registered from
    tied = {(m.key, m.dataset_name, m.dataset_digest) for m in client.get_logged_model(model_id).metrics}
    assert (
        "evaluation_rho_cnn_mean",
        "datasets/lensing/evaluation.h5",
        file_md5(root / "datasets/lensing/evaluation.h5"),
    ) in tied
    # CPU, memory and disk sampled while the network trained
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)
    assert "kappa" in client.get_registered_model("cmbml-lensing-v2").description
    mlflow.set_tracking_uri(uri)
    card = mlflow.models.get_model_info("models:/cmbml-lensing-v2@smoke").metadata
    assert card == json.loads((root / "models/lensing/model_card.json").read_text())
    assert card["input"]["npix"] == 50 and card["output"]["kappa_exaggeration_factor"] == 10.0
    model = mlflow.keras.load_model("models:/cmbml-lensing-v2@smoke")
    prediction = model.predict(np.zeros((1, 50, 50, 1), dtype=np.float32), verbose=0)
    assert prediction.shape == (1, 50, 50, 1) and np.isfinite(prediction).all()


def file_md5(path) -> str:
    """A file's MD5 (what DVC records), first 20 hex digits as logged."""
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()[:20]


def test_cmbml_predict_round_trips_a_fits_map_and_refuses_a_wrong_geometry(smoke_experiment, tmp_path):
    """`cmbml predict` on the registered model: a FITS test map comes back as a FITS kappa map equal to the
    network's output, with its units and exaggeration in the header; an HDF5 stack gives the same numbers;
    a map of another pixel size, a NumPy map without a pixel size and a 3-channel map are refused in one line."""
    import h5py
    import keras
    from astropy.io import fits

    root, env = smoke_experiment
    env = {**env, "PYTHONPATH": "src:."}
    with h5py.File(root / "datasets/lensing/evaluation.h5") as h5:
        maps = h5["T_lensed"][:4]
    expected = keras.models.load_model(root / "models/lensing/model.keras").predict(maps[..., None], verbose=0)
    pixel = json.loads((root / "models/lensing/model_card.json").read_text())["input"]["pixel_arcmin"]  # v2: 27.48
    header = fits.Header({"CDELT1": -pixel / 60, "CDELT2": pixel / 60, "BUNIT": "uK_CMB"})
    fits.PrimaryHDU(maps[0], header).writeto(tmp_path / "T.fits")
    sh(
        [
            "cmbml",
            "predict",
            "models:/cmbml-lensing-v2@smoke",
            str(tmp_path / "T.fits"),
            "-o",
            str(tmp_path / "kappa.fits"),
        ],
        root,
        env,
    )
    with fits.open(tmp_path / "kappa.fits") as hdul:
        kappa, out_header = hdul[0].data, hdul[0].header
    assert kappa.shape == (50, 50) and np.allclose(kappa, expected[0, ..., 0], rtol=1e-5, atol=1e-7)
    assert out_header["BUNIT"] == "dimensionless" and out_header["KAPPAEXG"] == 10.0
    assert np.isclose(out_header["CDELT2"] * 60, pixel)
    # a stack in HDF5 through the local model file
    with h5py.File(tmp_path / "T.h5", "w") as h5:
        h5["T_lensed"] = maps
        h5.attrs["pixel_arcmin"] = pixel
        h5.attrs["units"] = "uK_CMB"
    sh(
        ["cmbml", "predict", "models/lensing/model.keras", str(tmp_path / "T.h5"), "-o", str(tmp_path / "k.h5")],
        root,
        env,
    )
    with h5py.File(tmp_path / "k.h5") as h5:
        assert np.allclose(h5["prediction"][:], expected[..., 0], rtol=1e-5, atol=1e-7)
        assert h5.attrs["units"] == "dimensionless" and h5.attrs["kappa_exaggeration_factor"] == 10.0
    # refused, each with one line naming what the model expects
    fits.PrimaryHDU(maps[0], fits.Header({"CDELT1": -2.0 / 60, "CDELT2": 2.0 / 60, "BUNIT": "uK_CMB"})).writeto(
        tmp_path / "T2.fits"
    )
    np.save(tmp_path / "T.npy", maps)
    np.save(tmp_path / "T3.npy", np.repeat(maps[..., None], 3, axis=-1))
    for bad, extra, says in (
        (tmp_path / "T2.fits", [], "pixels of 2 arcmin"),
        (tmp_path / "T.npy", [], "pass --pixel-arcmin"),
        (tmp_path / "T3.npy", ["--pixel-arcmin", str(pixel)], "does not hold 1-channel maps"),
    ):
        out = subprocess.run(
            ["cmbml", "predict", "models/lensing/model.keras", str(bad), "-o", str(tmp_path / "x.fits"), *extra],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert f"{pixel:g} arcmin" in out.stderr or "1-channel" in out.stderr
    sh(
        [
            "cmbml",
            "predict",
            "models/lensing/model.keras",
            str(tmp_path / "T.npy"),
            "-o",
            str(tmp_path / "k2.fits"),
            "--pixel-arcmin",
            str(pixel),
        ],
        root,
        env,
    )
    assert np.allclose(fits.getdata(tmp_path / "k2.fits"), expected[..., 0], rtol=1e-5, atol=1e-7)


def test_the_registered_model_serves_through_mlflow_pyfunc(smoke_experiment, tmp_path):
    """`mlflow models predict` (the pyfunc flavour, local environment) on one test map gives the network's output."""
    import h5py
    import keras

    root, env = smoke_experiment
    with h5py.File(root / "datasets/lensing/evaluation.h5") as h5:
        sample = h5["T_lensed"][:1][..., None]
    (tmp_path / "input.json").write_text(json.dumps({"inputs": sample.tolist()}))
    env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    sh(
        [
            "mlflow",
            "models",
            "predict",
            "-m",
            "models:/cmbml-lensing-v2@smoke",
            "-i",
            str(tmp_path / "input.json"),
            "-t",
            "json",
            "-o",
            str(tmp_path / "output.json"),
            "--env-manager",
            "local",
        ],
        root,
        env,
    )
    served = np.asarray(json.loads((tmp_path / "output.json").read_text())["predictions"], dtype=np.float32)
    expected = keras.models.load_model(root / "models/lensing/model.keras").predict(sample, verbose=0)
    assert np.allclose(served.reshape(expected.shape), expected, rtol=1e-5, atol=1e-7)


def test_rerunning_every_stage_gives_byte_identical_outputs(smoke_experiment):
    """`dvc repro --force` of the whole pipeline with unchanged code, data and parameters writes the same bytes:
    every output hash in dvc.lock (HDF5, FITS, CSV, JSON, PNG, the Keras model) is unchanged, so DVC sees nothing
    new and run caches can be shared between clones."""
    root, env = smoke_experiment

    def output_hashes():
        lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
        return {(name, o["path"]): o["md5"] for name, stage in lock.items() for o in stage.get("outs", [])}

    before = output_hashes()
    sh(["dvc", "repro", "--force"], root, env)
    after = output_hashes()
    assert before.keys() == after.keys()
    changed = {k for k in before if before[k] != after[k]}
    assert not changed, f"outputs changed on a rerun: {sorted(changed)}"


def test_a_killed_training_process_leaves_no_run_running(smoke_experiment):
    """The real `cmbml lensing train` is stopped by SIGTERM (its run ends KILLED) and by SIGKILL (its run stays
    RUNNING until the next start of a stage closes it, with a note); afterwards no run of the store is RUNNING."""
    import signal
    import subprocess
    import time

    import yaml
    from mlflow.tracking import MlflowClient

    root, env = smoke_experiment
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lensing")
    params_file = root / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["scale"]["lensing"].update(epochs=100_000, early_stopping_patience=100_000)  # runs until killed
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))

    def start_and_signal(sig):
        proc = subprocess.Popen(
            ["cmbml", "lensing", "train"],
            cwd=root,
            env={**env, "PYTHONPATH": "src:."},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 600
        while time.time() < deadline:  # until an epoch is logged: the process is inside its run
            runs = client.search_runs([experiment.experiment_id], f"tags.`cmbml.pid` = '{proc.pid}'")
            if runs and "loss" in runs[0].data.metrics:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(1.0)
        else:
            raise AssertionError("training never logged an epoch")
        proc.send_signal(sig)
        assert proc.wait(120) != 0
        return client.get_run(runs[0].info.run_id)

    try:
        terminated = start_and_signal(signal.SIGTERM)
        assert terminated.info.status == "KILLED" and "SIGTERM" in terminated.data.tags["cmbml.end"]
        killed = start_and_signal(signal.SIGKILL)
        assert killed.info.status == "RUNNING"
        start_and_signal(signal.SIGTERM)  # the next start closes the orphan
        orphan = client.get_run(killed.info.run_id)
        assert orphan.info.status == "KILLED" and "closed at the next stage start" in orphan.data.tags["cmbml.end"]
        assert client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") == []
    finally:
        params_file.write_text(original)
        (root / "models/lensing/.best.weights.h5").unlink(missing_ok=True)


def test_a_physics_informed_network_runs_as_an_experiment_and_is_served_from_t_alone(smoke_experiment, tmp_path):
    """`dvc exp run -S lensing_net.architecture=resunet_qe`: the network given the Wiener-filtered quadratic
    estimate beside T trains and is scored beside the estimator (rho with errors, the ratio to the estimator);
    its model card says which channels it takes and carries the estimator's spectra, so `cmbml predict` makes the
    kappa_qe channel from a T map alone and returns what the network gives on both channels."""
    import h5py
    import keras

    from cmbml.lensing.inputs import InputMaker

    root, env = smoke_experiment
    sh(
        ["dvc", "exp", "run", "-n", "smoke-qe", "-S", "scale=smoke", "-S", "lensing_net.architecture=resunet_qe"],
        root,
        env,
    )
    metrics = json.loads((root / "metrics/lensing.json").read_text())
    assert {"rho_cnn_mean_err", "rho_qe_mean_err", "cnn_over_qe", "cnn_over_qe_err", "qe_over_limit_max_z"} <= set(
        metrics
    )
    assert "leak_suspected" not in metrics  # v2 exaggerates kappa x30: no bound applies, nothing to flag
    card = json.loads((root / "models/lensing/model_card.json").read_text())
    assert card["architecture"] == "resunet_qe" and card["input"]["channels"] == ["T"]
    assert card["input"]["network_channels"] == ["T", "kappa_qe"] and "estimator" in card["input"]["derived"]
    with h5py.File(root / "datasets/lensing/evaluation.h5") as h5:
        maps = h5["T_lensed"][:4]
    with h5py.File(tmp_path / "T.h5", "w") as out:
        out["T_lensed"], out.attrs["pixel_arcmin"] = maps, card["input"]["pixel_arcmin"]
        out.attrs["units"] = "uK_CMB"
    model = keras.models.load_model(root / "models/lensing/model.keras", safe_mode=True)
    expected = model.predict(InputMaker.from_card(card["input"]["derived"])(maps), verbose=0)[..., 0]
    sh(
        ["cmbml", "predict", "models/lensing/model.keras", str(tmp_path / "T.h5"), "-o", str(tmp_path / "k.h5")],
        root,
        {**env, "PYTHONPATH": "src:."},
    )
    with h5py.File(tmp_path / "k.h5") as h5:
        assert np.allclose(h5["prediction"][:], expected, rtol=1e-5, atol=1e-7)
    shown = subprocess.run(
        ["dvc", "exp", "show", "--csv", "--keep", "lensing_net.architecture"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "resunet_qe" in shown


def test_cmbml_score_reproduces_the_stage_and_refuses_estimates_of_another_split(smoke_experiment, tmp_path):
    """`cmbml predict` on the evaluation maps, then `cmbml score`: the network's own estimates scored from a file
    give the stage's figures (mean rho, the estimator's, the ratio, the MSE, the pixel metrics) to 1e-4; the run is
    an MLflow evaluation run named after the method, tied to the split's file and its MD5; estimates of the
    first 10 maps are refused in one line naming what differs."""
    root, env = smoke_experiment
    env = {**env, "PYTHONPATH": "src:."}
    sh(
        [
            "cmbml",
            "predict",
            "models/lensing/model.keras",
            "datasets/lensing/evaluation.h5",
            "-o",
            str(tmp_path / "kappa.h5"),
        ],
        root,
        env,
    )
    sh(["cmbml", "score", "lensing", str(tmp_path / "kappa.h5"), "--method", "network-again"], root, env)
    stage = json.loads((root / "metrics/lensing.json").read_text())
    scored = json.loads((root / "scores/lensing/network-again/metrics.json").read_text())
    for key in ("rho_cnn_mean", "rho_qe_mean", "rho_opt_mean", "cnn_over_qe", "pixel_r2_cnn", "pixel_r2_qe_wiener"):
        assert abs(scored[key] - stage[key]) < 1e-4, key
    assert scored["mse_kappa"] == pytest.approx(stage["mse_kappa"], rel=1e-4)
    assert scored["pixel_rmse_cnn"] == pytest.approx(stage["pixel_rmse_cnn"], rel=1e-4)
    every = json.loads((root / "scores/lensing/network-again/scores.json").read_text())
    assert {"pixel_mae_cnn_err", "pixel_nrmse_qe_wiener", "pixel_psnr_db_cnn"} <= set(every)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("lensing").experiment_id], filter_string="params.method = 'network-again'"
    )
    assert run.info.run_name == "network-again on v2-smoke" and run.data.tags["cmbml.method"] == "network-again"
    assert (
        run.data.tags["cmbml.split_md5"] == f"datasets/lensing/evaluation.h5:"
        f"{__import__('hashlib').md5((root / 'datasets/lensing/evaluation.h5').read_bytes()).hexdigest()}"
    )
    assert run.data.metrics["evaluation_rho_cnn_mean"] == pytest.approx(scored["rho_cnn_mean"])
    import h5py

    with h5py.File(tmp_path / "kappa.h5") as h5, h5py.File(tmp_path / "short.h5", "w") as short:
        short["prediction"] = h5["prediction"][:10]
        for key, value in h5.attrs.items():
            short.attrs[key] = value
    out = subprocess.run(
        ["cmbml", "score", "lensing", str(tmp_path / "short.h5"), "--method", "short"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "10 estimate(s); expected 48 estimates of kappa on 50 x 50 pixels" in out.stderr


def test_experiments_travel_to_a_colleague_through_a_git_and_a_dvc_remote(smoke_experiment, tmp_path):
    """The README's "Sharing experiments": `dvc exp push` sends an experiment's commit to a git remote (here a local
    bare repository) and its outputs to a DVC remote (a folder); a colleague's fresh clone lists it after `dvc exp
    pull`, and `dvc exp apply` gives the experiment's metrics, parameters and model, which `dvc params diff`
    compares with the base."""
    root, env = smoke_experiment
    bare, shared, colleague = tmp_path / "origin.git", tmp_path / "dvc-share", tmp_path / "colleague"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(bare)], tmp_path, env)
    sh(["git", "remote", "add", "origin", str(bare)], root, env)
    sh(["git", "push", "-q", "origin", "HEAD:main"], root, env)
    sh(["dvc", "remote", "add", "--local", "share", str(shared)], root, env)
    sh(["dvc", "exp", "push", "--remote", "share", "origin", "smoke-x10"], root, env)
    ref = next(
        r
        for r in sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], root, env).stdout.split()
        if r.endswith("/smoke-x10")
    )
    expected = json.loads(sh(["git", "show", f"{ref}:metrics/lensing.json"], root, env).stdout)

    sh(["git", "clone", "-q", str(bare), str(colleague)], tmp_path, env)
    sh(["dvc", "remote", "add", "--local", "share", str(shared)], colleague, env)
    sh(["dvc", "exp", "pull", "--remote", "share", "origin", "smoke-x10"], colleague, env)
    assert "smoke-x10" in sh(["dvc", "exp", "list", "--all-commits"], colleague, env).stdout
    sh(["dvc", "exp", "apply", "smoke-x10"], colleague, env)
    assert json.loads((colleague / "metrics/lensing.json").read_text()) == expected
    assert (colleague / "models/lensing/model.keras").stat().st_size > 1000  # the outputs came through the DVC remote
    diff = json.loads(sh(["dvc", "params", "diff", "HEAD", "--json"], colleague, env).stdout)
    change = diff["params.yaml"]["kappa_exaggeration_factor"]
    assert (change["old"], change["new"]) == (30, 10)
