"""The real CENN pipeline under `dvc exp run -S scale=smoke -S cenn=B`, read back through DVC and MLflow."""

import json
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import sh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def b_mode_experiment(repo_copy):
    root, env = repo_copy
    sh(["dvc", "exp", "run", "-n", "smoke-cenn-B", "-S", "scale=smoke", "-S", "cenn=B"], root, env)
    return root, env


def test_b_mode_datasets_metrics_and_reports(b_mode_experiment):
    root, _ = b_mode_experiment
    for split in ("Train", "Test", "Validation"):
        assert (root / f"datasets/cenn/patches/{split}_B.h5").exists()
    # the unseen foreground sky gives Validation patches only
    assert sorted(p.name for p in (root / "datasets/cenn/patches_unseen").glob("*.h5")) == ["Validation_B.h5"]
    # DVC shows a handful of summary metrics; every score is in scores.json
    summary = json.loads((root / "metrics/cenn.json").read_text())
    assert 5 <= len(summary) <= 18 and summary["map_mse_network_uK2"] > 0 and "mse_over_wiener" in summary
    assert summary["unseen_map_mse_network_uK2"] > 0 and "unseen_mse_over_wiener" in summary
    metrics = json.loads((root / "reports/cenn_outputs/scores.json").read_text())
    assert metrics["n_evaluation"] == 32 and metrics["map_mse_uK2"] > 0
    assert {k: metrics[k] for k in summary} == summary
    assert "bb_ell60_300_network_residual_dl_uK2" in metrics and not any(k.startswith("ee_") for k in metrics)
    # every baseline scored beside the network, errors from the independent patch areas
    for method in ("network", "wiener", "linear", "harmonic_ilc", "pixel_ilc"):
        assert metrics[f"map_mse_{method}_uK2"] > 0 and metrics[f"map_mse_{method}_err_uK2"] > 0
        assert f"bb_ell60_300_{method}_response" in metrics and f"bb_ell60_300_{method}_uncorrelated_dl_uK2" in metrics
    # beside the independent-area errors, jackknives over the CMB realisations and over sky blocks
    assert metrics["mse_over_wiener_err_jk_cmb"] > 0 and metrics["mse_over_wiener_err_jk_sky"] > 0
    assert metrics["map_mse_wiener_per_patch_uK2"] > 0  # the oracle that knows each patch's foregrounds
    assert 1 <= metrics["n_independent_evaluation"] <= 32 and metrics["mse_over_wiener"] > 0
    assert 1 <= metrics["n_independent_early_stopping"] <= 32 and 1 <= metrics["n_independent_training"] <= 64
    assert json.loads((root / "reports/cenn/validation.json").read_text())["success"]
    assert json.loads((root / "reports/cenn_outputs/validation.json").read_text())["success"]
    assert (root / "plots/cenn/evaluate/spectra_BB.png").stat().st_size > 1000
    # the same scores on the unseen (non-Gaussian) sky: its own gate, the same patch centres and CMB
    unseen_gate = json.loads((root / "reports/cenn_unseen/validation.json").read_text())
    assert unseen_gate["success"] and unseen_gate["foreground_model"] == "nongaussian"
    assert json.loads((root / "reports/cenn_outputs/unseen_validation.json").read_text())["success"]
    for method in ("network", "wiener", "linear", "harmonic_ilc", "pixel_ilc", "wiener_own_sky"):
        assert metrics[f"unseen_map_mse_{method}_uK2"] > 0
    assert metrics["unseen_n_independent_evaluation"] == metrics["n_independent_evaluation"]
    assert metrics["unseen_map_mse_zero_prediction_uK2"] == metrics["map_mse_zero_prediction_uK2"]  # same labels
    assert metrics["unseen_map_mse_uncleaned_uK2"] != metrics["map_mse_uncleaned_uK2"]  # other foregrounds
    assert (root / "plots/cenn/evaluate/unseen_spectra_BB.png").stat().st_size > 1000


def test_mlflow_cenn_run_and_registered_model(b_mode_experiment):
    root, _ = b_mode_experiment
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("cenn").experiment_id], filter_string="tags.parameter_set = 'B'"
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["dvc_exp_name"] == "smoke-cenn-B" and run.data.params["cenn.variant"] == "B"
    # the run logs its own experiment's parameters (and the shared cosmology and seed), not the lensing ones
    assert (
        "cosmology.H0" in run.data.params and "seed" in run.data.params and "instrument.target_GHz" in run.data.params
    )
    assert not [k for k in run.data.params if k.startswith(("lensing", "npix", "kappa", "scale.lensing"))]
    assert run.data.tags["scale.cenn.crop_pixels"] == "1"  # evaluation settings as tags
    # metrics measured on the evaluation patches (Validation files) carry the role's name, as in lensing
    for key in ("loss", "val_loss", "evaluation_map_mse_network_uK2", "evaluation_mse_over_wiener"):
        assert key in run.data.metrics
    assert "evaluation_unseen_mse_over_wiener" in run.data.metrics
    # the runs table stays readable: per-range scores are an artifact (beside the system metrics of the training);
    # the full-sky stage adds four
    assert len([k for k in run.data.metrics if not k.startswith("system/")]) <= 28
    assert "fullsky_max_pull_vs_patches" in run.data.metrics
    assert "system/cpu_utilization_percentage" in run.data.metrics
    scores = client.download_artifacts(run.info.run_id, "evaluation_scores.json")
    assert "bb_ell60_300_network_residual_dl_uK2" in json.loads(Path(scores).read_text())
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "spectra_BB.png",
        "unseen_spectra_BB.png",
        "training_curve.png",
        "model_card.json",
        "spectra.json",
        "unseen_spectra.json",
    } <= artifacts  # root: compare view
    # inputs: the Train and early-stopping (Test) patches at training, the Validation patches at evaluation
    inputs = {(i.dataset.name, i.tags[0].value) for i in run.inputs.dataset_inputs}
    assert inputs == {
        ("datasets/cenn/patches/Train_B.h5", "training"),
        ("datasets/cenn/patches/Test_B.h5", "early_stopping"),
        ("datasets/cenn/patches/Validation_B.h5", "evaluation"),
        ("datasets/cenn/patches_unseen/Validation_B.h5", "evaluation"),
        *((f"datasets/cenn/fullsky/sky_{f}GHz.fits", "fullsky") for f in (100, 143, 217)),  # the whole test sky
    }
    versions = client.search_model_versions("name='cmbml-cenn-B'")
    assert [v.run_id for v in versions] == [run.info.run_id]
    assert client.get_model_version_by_alias("cmbml-cenn-B", "smoke").run_id == run.info.run_id
    # the version's model shows its scores on each sky's evaluation patches
    tied = {
        (m.key, m.dataset_name) for m in client.get_logged_model(versions[0].source.removeprefix("models:/")).metrics
    }
    assert {
        ("evaluation_mse_over_wiener", "datasets/cenn/patches/Validation_B.h5"),
        ("evaluation_unseen_mse_over_wiener", "datasets/cenn/patches_unseen/Validation_B.h5"),
    } <= tied


def stale_stages(root, env) -> set[str]:
    out = sh(["dvc", "status", "--json"], root, env).stdout
    return set(json.loads(out or "{}"))


LENSING_STAGES = {"lensing_simulate", "lensing_validate", "lensing_train", "lensing_evaluate"}
CENN_STAGES = {
    "cmb_maps",
    "foregrounds@training",
    "foregrounds@unseen",
    "cenn_simulate@training",
    "cenn_simulate@unseen",
    "cenn_validate@training",
    "cenn_validate@unseen",
    "cenn_train",
    "cenn_separate",
    "cenn_evaluate",
}


def test_a_changed_instrument_or_library_module_marks_its_stages_stale(b_mode_experiment):
    """`dvc repro` reruns what changed: after the run nothing is stale; instrument.target_GHz is a parameter
    of every stage that uses the channels (not of the CMB skies or lensing); an edit in the lensing package
    stales every lensing stage and no CENN stage, an edit in the CENN package the reverse, and a shared
    module every stage that imports the shared package."""
    root, env = b_mode_experiment
    assert stale_stages(root, env) == set()
    params = root / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("target_GHz: 143", "target_GHz: 100"))
        assert stale_stages(root, env) == CENN_STAGES - {"cmb_maps"}
        # the evaluation sky is a parameter of its own stages (whose outputs cenn_evaluate reads), never of training
        params.write_text(original.replace("ln_intensity_sigma: 0.8", "ln_intensity_sigma: 0.7"))
        assert stale_stages(root, env) == {"foregrounds@unseen", "cenn_simulate@unseen", "cenn_validate@unseen"}
    finally:
        params.write_text(original)
    for module, stale in (
        ("lensing/quadratic_estimator.py", LENSING_STAGES),
        ("cenn/patches.py", CENN_STAGES),
        ("cenn/plots.py", CENN_STAGES),
        ("common/flatsky.py", LENSING_STAGES | CENN_STAGES | {"spectra"}),
    ):
        path = root / "src" / "cmbml" / module
        code = path.read_text()
        try:
            path.write_text(code + "\n# a change\n")
            assert stale_stages(root, env) == stale, module
        finally:
            path.write_text(code)
    assert stale_stages(root, env) == set()


@pytest.fixture(scope="module")
def qu_experiment(b_mode_experiment):
    root, env = b_mode_experiment
    sh(["dvc", "exp", "run", "-n", "smoke-cenn-QU", "-S", "scale=smoke", "-S", "cenn=QU"], root, env)
    return root, env


def test_the_qu_network_sees_q_and_u_together_and_is_served_so(qu_experiment, tmp_path):
    """QU: one network takes the Q and U patches of all three channels at once (six inputs) and returns the CMB's Q
    and U (two outputs), as its model card says; `cmbml predict` applies it to a six-channel stack and writes both
    Stokes maps; EE and BB are scored with cross-spectra."""
    import h5py
    import keras
    import numpy as np

    root, env = qu_experiment
    card = json.loads((root / "models/cenn/model_card.json").read_text())
    assert card["input"]["channels"] == ["Q 100GHz", "Q 143GHz", "Q 217GHz", "U 100GHz", "U 143GHz", "U 217GHz"]
    assert card["output"]["channels"] == ["CMB Q", "CMB U"]
    with (
        h5py.File(root / "datasets/cenn/patches/Validation_Q.h5", "r") as q,
        h5py.File(root / "datasets/cenn/patches/Validation_U.h5", "r") as u,
    ):
        stack = np.concatenate([q["M"][:4], u["M"][:4]], axis=-1)
    with h5py.File(tmp_path / "qu.h5", "w") as h5:
        h5["M"] = stack
        h5["M"].attrs["pixel_arcmin"] = 12.0
        h5["M"].attrs["units"] = "uK_CMB"
    sh(
        ["cmbml", "predict", "models/cenn/model.keras", str(tmp_path / "qu.h5"), "-o", str(tmp_path / "cmb.h5")],
        root,
        env,
    )
    expected = keras.models.load_model(root / "models/cenn/model.keras").predict(stack, verbose=0)
    with h5py.File(tmp_path / "cmb.h5", "r") as h5:
        assert h5["prediction"].shape == (4, 32, 32, 2) and h5.attrs["channels"] == "CMB Q, CMB U"
        assert np.allclose(h5["prediction"][:], expected, rtol=1e-5, atol=1e-6)
    metrics = json.loads((root / "reports/cenn_outputs/scores.json").read_text())
    for spectrum in ("ee", "bb"):
        assert f"{spectrum}_ell60_300_network_response" in metrics
        assert f"{spectrum}_ell60_300_network_uncorrelated_dl_uK2" in metrics


def test_any_method_is_scored_from_a_file_and_entered_in_the_report(qu_experiment, tmp_path):
    """The benchmark from the outside: the QU network's own estimates (`cmbml predict` on the six-channel evaluation
    stack) scored by `cmbml score` reproduce the stage's map MSE to 1e-4, on both skies; a method that is no Keras
    model (the per-mode linear filter fitted on Train, its estimate written by a script as NumPy) scores exactly what
    the stage reports for the built-in baseline; `cmbml report` shows it as a row beside the network."""
    import h5py
    import numpy as np

    root, env = qu_experiment
    env = {**env, "PYTHONPATH": "src:."}
    stage = json.loads((root / "reports/cenn_outputs/scores.json").read_text())
    for sky, folder, prefix in (("training", "patches", ""), ("unseen", "patches_unseen", "unseen_")):
        with (
            h5py.File(root / f"datasets/cenn/{folder}/Validation_Q.h5", "r") as q,
            h5py.File(root / f"datasets/cenn/{folder}/Validation_U.h5", "r") as u,
        ):
            stack = np.concatenate([q["M"][:], u["M"][:]], axis=-1)
        with h5py.File(tmp_path / f"{sky}.h5", "w") as h5:
            h5["M"] = stack
            h5["M"].attrs["pixel_arcmin"] = 12.0
            h5["M"].attrs["units"] = "uK_CMB"
        sh(
            [
                "cmbml",
                "predict",
                "models/cenn/model.keras",
                str(tmp_path / f"{sky}.h5"),
                "-o",
                str(tmp_path / f"cmb_{sky}.h5"),
            ],
            root,
            env,
        )
        sh(
            ["cmbml", "score", "cenn", str(tmp_path / f"cmb_{sky}.h5"), "--method", "qu-network", "--sky", sky],
            root,
            env,
        )
        scored = json.loads(
            (root / f"scores/cenn/qu-network{'' if sky == 'training' else '-unseen'}/scores.json").read_text()
        )
        for key in ("map_mse_network_uK2", "mse_over_wiener", "map_mse_wiener_uK2", "pixel_rmse_network_uK"):
            assert scored[prefix + key] == pytest.approx(stage[prefix + key], rel=1e-4), (sky, key)
    # a method outside the project: the per-mode linear filter's estimate, written as a user would
    script = (
        "import h5py, numpy as np\n"
        "from cmbml.cenn.setup import load\n"
        "from cmbml.common.roles import EVALUATION\n"
        "from stages.cenn_evaluate import Yardsticks\n"
        "setup = load()\n"
        "inputs = {c: h5py.File(setup.paths.patch_file(EVALUATION, c), 'r')['M'][:].astype(float) "
        "for c in setup.components}\n"
        "estimate = Yardsticks.fit(setup).baselines.estimates(inputs)['linear']\n"
        f"np.save('{tmp_path / 'linear.npy'}', np.stack([estimate[c] for c in setup.components], axis=-1))\n"
    )
    sh([sys.executable, "-c", script], root, env)
    sh(["cmbml", "score", "cenn", str(tmp_path / "linear.npy"), "--method", "per-mode-linear"], root, env)
    scored = json.loads((root / "scores/cenn/per-mode-linear/scores.json").read_text())
    for key in ("map_mse_{}_uK2", "map_mse_{}_err_uK2", "pixel_mae_{}_uK", "pixel_rmse_{}_err_uK", "pixel_r2_{}"):
        assert scored[key.format("network")] == pytest.approx(stage[key.format("linear")], rel=1e-6), key
    assert scored["ee_ell60_300_network_response"] == pytest.approx(stage["ee_ell60_300_linear_response"], rel=1e-6)
    # the README's recipe: a pixel ILC in NumPy alone, from examples/
    sh(
        [
            sys.executable,
            "examples/pixel_ilc.py",
            "datasets/cenn/patches/Validation_Q.h5",
            "datasets/cenn/patches/Validation_U.h5",
            "-o",
            str(tmp_path / "ilc.npy"),
        ],
        root,
        env,
    )
    sh(["cmbml", "score", "cenn", str(tmp_path / "ilc.npy"), "--method", "my-pixel-ilc"], root, env)
    ilc = json.loads((root / "scores/cenn/my-pixel-ilc/scores.json").read_text())
    # the same estimator as the built-in pixel ILC, written apart: the same score
    assert ilc["map_mse_network_uK2"] == pytest.approx(stage["map_mse_pixel_ilc_uK2"], rel=1e-5)
    sh(["cmbml", "report", "--scale", "smoke", "--only", "cenn-results"], root, env)
    table = (root / "docs" / "results.md").read_text()
    for row in (
        "| QU | original |",
        "| QU | per-mode-linear (entered) |",
        "| QU | qu-network (entered) |",
        "| QU | my-pixel-ilc (entered) |",
    ):
        assert row in table, row


def test_the_network_is_applied_to_a_whole_sky_as_to_plancks_maps(qu_experiment, tmp_path):
    """Stage cenn_separate: the QU network tiled over a new test sky (maps written as Planck's: K_CMB, NESTED,
    Q_STOKES/U_STOKES), reprojected onto HEALPix and scored beside the harmonic ILC, its EE and BB measured on the
    evaluation patches as the evaluation measured them; no seam adds error (the full-sky residual is no larger than
    the patch interiors'); `cmbml separate` on the stage's own maps writes the stage's estimate; the report shows it."""
    import healpy as hp
    import numpy as np
    from astropy.io import fits

    root, env = qu_experiment
    m = json.loads((root / "metrics/cenn_fullsky.json").read_text())
    assert 0.3 < m["f_sky"] < 0.55 and m["b_min_deg"] == 30.0
    assert m["residual_var_over_patch_interiors"] < 1.1
    for s in ("EE", "BB"):
        assert m[f"{s}_response_n_bins_compared"] >= 2 and np.isfinite(m[f"{s}_correlation_max_pull"])
    for method in ("network", "ilc", "ilc_wiener"):
        assert m[f"{method}_residual_rms_uK"] > 0
    header = fits.getheader(root / "datasets/cenn/fullsky/sky_143GHz.fits", 1)
    assert (header["ORDERING"], header["TTYPE1"], header["TUNIT1"]) == ("NESTED", "Q_STOKES", "K_CMB")
    stage_estimate = hp.read_map(str(root / "datasets/cenn/fullsky_estimate/cmb_estimate.fits"), field=None)
    assert fits.getheader(root / "datasets/cenn/fullsky_estimate/cmb_estimate.fits", 1)["TUNIT1"] == "uK_CMB"
    rows = json.loads((root / "plots/cenn/fullsky/spectra.json").read_text())["spectra"]
    assert {"network_BB_correlation", "ilc_wiener_EE_response_err"} <= set(rows[0])
    assert (root / "plots/cenn/fullsky/fullsky_maps.png").stat().st_size > 1000

    maps = [str(root / f"datasets/cenn/fullsky/sky_{f}GHz.fits") for f in (100, 143, 217)]
    out = tmp_path / "cmb.fits"
    sh(["cmbml", "separate", "models/cenn/model.keras", *maps, "-o", str(out)], root, env)
    q, u, mask, weight = hp.read_map(str(out), field=None)
    keep = (mask > 0) & (stage_estimate[0] != 0)
    assert keep.mean() > 0.3
    for mine, stage in ((q, stage_estimate[0]), (u, stage_estimate[1])):
        np.testing.assert_allclose(mine[keep], stage[keep], rtol=1e-4, atol=1e-4 * np.abs(stage).max())
    import subprocess

    refused = subprocess.run(
        ["cmbml", "separate", "models/cenn/model.keras", *maps, "-o", maps[0]],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "is one of the input maps" in refused.stderr

    sh(["cmbml", "report", "--scale", "smoke", "--only", "cenn-full-sky"], root, env)
    block = (
        (root / "docs" / "results.md")
        .read_text()
        .split("<!-- cenn-full-sky -->")[1]
        .split("<!-- /cenn-full-sky -->")[0]
    )
    assert "| QU | original |" in block
