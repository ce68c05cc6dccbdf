"""The README results tables: built from evaluation records, written only between their markers."""

import pytest

from stages.report import (
    cenn_response_table,
    cenn_table,
    foreground_model_table,
    lensing_table,
    replace_between_markers,
)


def lensing_record(name, rho_cnn, architecture="original", leak=None, bound=None):
    rows = [
        {"L": float(L), "rho_cnn": rho_cnn, "rho_qe": 0.5, "rho_qe_err": 0.01, "rho_opt": 0.6}
        for L in range(10, 70, 10)
    ]
    rows[0]["rho_qe"] = 0.63  # one bin 3 errors above the limit
    metrics = {
        "n_evaluation": 1000,
        "rho_cnn_mean": rho_cnn,
        "rho_cnn_mean_err": 0.01,
        "rho_qe_mean": 0.5,
        "rho_qe_mean_err": 0.004,
        "rho_opt_mean": 0.6,
        "cnn_over_qe": rho_cnn / 0.5,
        "cnn_over_qe_err": 0.02,
    }
    if leak is not None:
        metrics["leak_suspected"] = leak
    if bound is not None:
        metrics["rho_leak_bound_mean"] = bound
    return {
        "name": name,
        "rows": rows,
        "metrics": metrics,
        "params": {"lensing_net.architecture": architecture, "kappa_exaggeration_factor": "1"},
    }


def test_lensing_table_shows_per_version_the_estimator_its_limit_and_three_kinds_of_network():
    """One row per version: QE +- error, its limit, the leak bound (physical kappa), the original network, the best network from T alone (which may
    be the original) and the physics-informed one, each with its ratio to the QE; then rows per L range."""
    records = [
        lensing_record("v4", 0.1, bound=0.65),
        lensing_record("v4", 0.3, "resunet"),
        lensing_record("v4", 0.49, "resunet_qe"),
        lensing_record("v8", 0.2),
        lensing_record("v8", 0.6, "resunet_qe", leak=1.0),
    ]
    table = lensing_table(records).splitlines()
    assert table[0].startswith(
        "| version | kappa x | test maps | QE | QE limit | QE - limit, max z (bins > 2) | "
        "leak bound | original network |"
    )
    assert table[2] == (
        "| v4 | 1 | 1000 | 0.500 +- 0.004 | 0.600 | 3.0 (1/6) | 0.650 | original: 0.100 +- 0.010 (0.20 +- 0.02 of QE) | "
        "resunet: 0.300 +- 0.010 (0.60 +- 0.02 of QE) | resunet_qe: 0.490 +- 0.010 (0.98 +- 0.02 of QE) | - |"
    )
    # v8 has no network from T alone but the original, and its physics-informed network is flagged
    assert "| original: 0.200 +- 0.010 (0.40 +- 0.02 of QE) | original: 0.200" in table[3]
    assert table[3].endswith("(1.20 +- 0.02 of QE) **leak?** | - |")
    timed = lensing_record("v5", 0.4)
    timed["metrics"]["train_seconds"] = 330.0
    assert "original: 0.400 +- 0.010 (0.80 +- 0.02 of QE), 6 min |" in lensing_table([timed])
    by_range = table[
        table.index(
            "| version | L range | QE / limit | original network | best network from T alone | "
            "physics-informed network |"
        )
        + 2 :
    ]
    assert by_range[0] == "| v4 | 10-20 | 0.565 / 0.600 | 0.100 | 0.300 | 0.490 |" and len(by_range) == 6


def test_a_method_entered_with_cmbml_score_has_a_column_of_its_own():
    """A run with the parameter ``method`` (from ``cmbml score``) is listed by name beside the networks and never
    counted as one of them."""
    entered = lensing_record("v4", 0.45, "original")
    entered["params"]["method"] = "my-qe"
    table = lensing_table([lensing_record("v4", 0.1), entered]).splitlines()
    assert table[0].endswith("| methods entered with `cmbml score` |")
    assert table[2].startswith("| v4 | 1 | 1000 | 0.500 +- 0.004 | 0.600 | 3.0 (1/6) | - | original: 0.100 +- 0.010")
    assert table[2].endswith("| my-qe: 0.450 +- 0.010 (0.90 +- 0.02 of QE) |")


def test_cenn_tables_show_every_method_with_errors_and_the_ratio_to_wiener():
    metrics = {
        "n_evaluation": 300,
        "n_independent_evaluation": 120.4,
        "mse_over_wiener": 1.05,
        "mse_over_wiener_err": 0.01,
        "map_mse_wiener_predicted_uK2": 10.5,
        "mse_over_wiener_err_jk_cmb": 0.02,
        "mse_over_wiener_err_jk_sky": 0.015,
        "ee_ell60_300_network_response": 0.4,
        "ee_ell60_300_network_response_err": 0.01,
        "ee_ell60_300_wiener_response": 0.5,
        "ee_ell60_300_network_uncorrelated_dl_uK2": 2.5,
    }
    for method in ("network", "wiener", "linear", "harmonic_ilc", "pixel_ilc"):
        metrics[f"map_mse_{method}_uK2"], metrics[f"map_mse_{method}_err_uK2"] = 10.0, 0.5
    row = cenn_table([{"name": "E", "architecture": "eb", "metrics": metrics}]).splitlines()[2]
    assert row.startswith("| E | eb | 300 (120) | - / - | 10 +- 0.5 |")
    assert row.endswith("| 10.5 | 1.050 +- 0.010 (jackknife: CMB 0.020, sky 0.015) |")
    # the response (cross-spectrum / label power) with its error, then the uncorrelated power; oracles have neither
    response = cenn_response_table([{"name": "E", "metrics": metrics}], [[60, 300], [300, 900]]).splitlines()
    assert response[2].startswith("| E | original | EE | 60-300 | 0.400 +- 0.010 | 0.500 | ") and len(response) == 3
    assert "| 2.5 |" in response[2] and "oracle" not in response[0]


def test_replace_between_markers_keeps_the_rest_and_refuses_a_missing_block():
    text = "intro\n<!-- t -->\nold\n<!-- /t -->\nend\n"
    assert replace_between_markers(text, "t", "new") == "intro\n<!-- t -->\nnew\n<!-- /t -->\nend\n"
    with pytest.raises(ValueError, match="<!-- u -->"):
        replace_between_markers(text, "u", "new")


def test_foreground_model_table_has_a_row_per_test_sky_with_every_method_and_the_residuals():
    """One run (B trained on the non-Gaussian sky) gives two rows: its own sky and the unseen Gaussian one,
    each with the map MSE of the network and the classical methods, the ratio to Wiener and the residual
    D_ell (network / Wiener / harmonic ILC) of the variant's spectrum per multipole range."""
    metrics = {}
    for prefix, scale in (("", 1.0), ("unseen_", 2.0)):
        for method in ("network", "wiener", "wiener_own_sky", "wiener_per_patch", "harmonic_ilc", "pixel_ilc"):
            metrics[f"{prefix}map_mse_{method}_uK2"] = 10.0 * scale
        metrics[f"{prefix}map_mse_network_err_uK2"] = 0.5
        metrics[f"{prefix}mse_over_wiener"], metrics[f"{prefix}mse_over_wiener_err"] = 0.9 * scale, 0.01
        for method in ("network", "wiener", "harmonic_ilc"):
            metrics[f"{prefix}bb_ell60_300_{method}_residual_dl_uK2"] = 0.125 * scale
    metrics["map_mse_wiener_per_patch_uK2"] = 9.0  # the oracle: 10% of the global filter's MSE is room
    record = {
        "name": "B",
        "params": {
            "cenn.variant": "B",
            "foregrounds.model": "nongaussian",
            "instrument.table": "data/instrument_so_sat_baseline.csv",
        },
        "unseen_model": "gaussian",
        "metrics": metrics,
    }
    lines = foreground_model_table([record], [[60, 300], [300, 900]]).splitlines()
    assert len(lines) == 4 and "residual D_ell 60-300: CENN / Wiener / harmonic ILC" in lines[0]
    assert lines[2].startswith(
        "| B | original | so_sat_baseline | nongaussian | nongaussian | 10 +- 0.5 | 10 | 10 | 9 | 10 | 10 | "
        "0.900 +- 0.010 | 0.100 |"
    )
    assert lines[2].endswith("| 0.125 / 0.125 / 0.125 | - / - / - |")
    assert (
        lines[3].startswith("| B | original | so_sat_baseline | nongaussian | gaussian | 20 +- 0.5 |")
        and "1.800 +- 0.010" in lines[3]
    )


def test_a_cenn_network_is_named_by_its_architecture_and_its_b_mode_loss():
    """Runs that differ only in the B-mode loss weight are different networks and get different names; a run from
    before the weight existed (no value) or with weight 0 is the architecture alone."""
    from stages.report import cenn_network_name

    assert cenn_network_name("eb", "0.0") == cenn_network_name("eb", "") == "eb"
    assert cenn_network_name("eb", "1000.0") == "eb, B-mode loss 1000"


def test_report_only_rewrites_the_named_blocks_and_refuses_an_unknown_one(tmp_path, monkeypatch):
    """`cmbml report --only cenn-results` on a store that holds no lensing run leaves the lensing table as it was
    (it is not emptied) and writes the CENN table wherever its block lives: in full on a docs/ page, its first table
    on the front page (``cenn-results-summary``); a misspelt block name fails in one line naming it, before any page
    is touched."""
    import shutil
    from pathlib import Path

    from typer.testing import CliRunner

    from stages.cli import app

    root = Path(__file__).resolve().parents[3]
    shutil.copy(root / "params.yaml", tmp_path / "params.yaml")
    readme = tmp_path / "README.md"
    original = (
        "intro\n<!-- lensing-results -->\nLENSING TABLE\n<!-- /lensing-results -->\n"
        "<!-- cenn-results -->\nOLD CENN\n<!-- /cenn-results -->\n"
        "<!-- cenn-foreground-models -->\nOLD MODELS\n<!-- /cenn-foreground-models -->\n"
    )
    readme.write_text(original + "<!-- cenn-results-summary -->\nOLD SUMMARY\n<!-- /cenn-results-summary -->\n")
    (tmp_path / "docs").mkdir()
    results = tmp_path / "docs" / "results.md"
    results.write_text("# Results\n<!-- cenn-results -->\nOLD CENN IN DOCS\n<!-- /cenn-results -->\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    runner = CliRunner()

    bad = runner.invoke(app, ["report", "--only", "cenn-result", "--figures", str(tmp_path / "figures")])
    assert bad.exit_code != 0 and "cenn-result" in bad.output
    assert readme.read_text().startswith(original) and "OLD CENN IN DOCS" in results.read_text()

    ok = runner.invoke(app, ["report", "--only", "cenn-results", "--figures", str(tmp_path / "figures")])
    assert ok.exit_code == 0, ok.output
    text = readme.read_text()
    assert "LENSING TABLE" in text and "OLD MODELS" in text  # untouched blocks
    assert "OLD CENN" not in text and "| variant |" in text  # the named block rewritten from the (empty) store
    # and its front-page summary
    assert "OLD SUMMARY" not in text and text.count("| variant | network | Validation") == 2
    docs = results.read_text()
    assert "OLD CENN IN DOCS" not in docs and "| variant | network |" in docs and docs.startswith("# Results\n")


def test_pixel_tables_show_rmse_and_r2_of_every_method_for_runs_that_logged_them():
    from stages.report import cenn_pixel_table, lensing_pixel_table

    old = lensing_record("v4", 0.1)
    new = lensing_record("v4", 0.3, "resunet")
    new["metrics"].update(
        {
            "pixel_rmse_cnn": 0.012,
            "pixel_rmse_cnn_err": 0.0001,
            "pixel_r2_cnn": 0.05,
            "pixel_r2_cnn_err": 0.002,
            "pixel_rmse_qe_wiener": 0.0118,
            "pixel_rmse_qe_wiener_err": 0.0001,
            "pixel_r2_qe_wiener": 0.08,
            "pixel_r2_qe_wiener_err": 0.002,
        }
    )
    rows = lensing_pixel_table([old, new]).splitlines()
    assert rows[2:] == ["| v4 | resunet | 0.012 +- 0.0001 | 0.05 +- 0.002 | 0.0118 +- 0.0001 | 0.08 +- 0.002 |"]
    assert lensing_pixel_table([old]) == ""  # a store from before the pixel metrics: no table
    metrics = {
        "pixel_rmse_network_uK": 3.2,
        "pixel_rmse_network_err_uK": 0.01,
        "pixel_r2_network": 0.9,
        "pixel_r2_network_err": 0.001,
        "pixel_rmse_wiener_uK": 3.3,
        "pixel_rmse_wiener_err_uK": 0.01,
        "pixel_r2_wiener": 0.89,
        "pixel_r2_wiener_err": 0.001,
    }
    table = cenn_pixel_table([{"name": "E", "architecture": "original", "metrics": metrics}]).splitlines()
    assert table[0].startswith("| variant | network | CENN RMSE / R^2 | Wiener RMSE / R^2 |")
    assert table[2].startswith("| E | original | 3.2 +- 0.01 / 0.900 +- 0.001 | 3.3 +- 0.01 / 0.890 +- 0.001 |")


def test_rows_the_store_cannot_regenerate_are_kept_in_their_place_and_lost_columns_leave_the_block():
    """A store holding only some runs (a fresh clone's holds none) never removes the other rows: a row whose key
    (first two cells) the new table lacks is kept where it stood, a regenerated row replaces its old one, and a
    row new to the page follows. A table that gained a column takes the old rows with "-" there; one that lost or
    renamed a column cannot, which the merge reports so that the block is left as it is."""
    from stages.report import keep_rows_not_regenerated

    old = "| version | kappa x | rho |\n|---|---|---|\n| v1 | 30 | 0.9 |\n| v2 | 30 | 0.8 |\n| v4 | 1 | 0.1 |\n\ntext\n"
    new = "| version | kappa x | rho |\n|---|---|---|\n| v2 | 30 | 0.85 |\n| v3 | 10 | 0.7 |\n"
    merged, problems = keep_rows_not_regenerated(old, new)
    assert problems == []
    assert merged.splitlines()[2:] == [
        "| v1 | 30 | 0.9 |",
        "| v2 | 30 | 0.85 |",
        "| v4 | 1 | 0.1 |",
        "| v3 | 10 | 0.7 |",
    ]
    added = "| version | kappa x | rho | entered |\n|---|---|---|---|\n| v2 | 30 | 0.85 | - |\n"
    merged, problems = keep_rows_not_regenerated(old, added)
    assert problems == []
    assert merged.splitlines()[2:] == ["| v1 | 30 | 0.9 | - |", "| v2 | 30 | 0.85 | - |", "| v4 | 1 | 0.1 | - |"]
    renamed = "| version | kappa x | rho_cnn |\n|---|---|---|\n| v2 | 30 | 0.85 |\n"
    merged, problems = keep_rows_not_regenerated(old, renamed)
    assert problems and "3 rows" in problems[0] and "its columns changed" in problems[0]
    assert keep_rows_not_regenerated("", new) == (new, [])
    # a store that regenerates every old row gives the new table unchanged, in its own order
    every = "| version | kappa x | rho |\n|---|---|---|\n| v4 | 1 | 0.2 |\n| v1 | 30 | 0.9 |\n| v2 | 30 | 0.8 |\n"
    assert keep_rows_not_regenerated(old, every) == (every, [])


def test_report_on_an_empty_store_leaves_the_readme_as_it_is(tmp_path):
    """`cmbml report` in a fresh clone (no runs in the store) removes no row of the README's or the results page's
    tables, leaves the figure alone, and says why."""
    from tests.conftest import REPO
    from tests.helpers import run_cmbml

    readme, results = tmp_path / "README.md", tmp_path / "results.md"
    readme.write_text((REPO / "README.md").read_text())
    results.write_text((REPO / "docs" / "results.md").read_text())
    out = run_cmbml(
        "report",
        "--page",
        readme,
        "--page",
        results,
        "--figures",
        tmp_path / "figures",
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/m.db",
    )
    assert out.returncode == 0, out.stderr
    assert readme.read_text() == (REPO / "README.md").read_text()
    assert results.read_text() == (REPO / "docs" / "results.md").read_text()
    assert f"lensing-results in {results} left as it is: the store cannot regenerate" in out.stderr
    assert f"lensing-results-summary in {readme} left as it is" in out.stderr
    assert not (tmp_path / "figures" / "rho_L_versions.png").exists()
