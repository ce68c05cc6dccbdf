"""The `cmbml` command line."""

import os
import shutil
import subprocess
import sys

from tests.conftest import REPO


def run(*args, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    return subprocess.run([sys.executable, "-m", "cmbml", *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_help_lists_the_stages_without_importing_heavy_libraries():
    out = run("--help")
    assert out.returncode == 0 and "lensing" in out.stdout and "spectra" in out.stdout
    probe = ("import sys, cmbml.cli; heavy = {'tensorflow', 'keras', 'mlflow', 'great_expectations', 'camb', "
             "'healpy', 'pymaster'} & set(sys.modules); assert not heavy, heavy")
    assert subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True).returncode == 0


def test_lensing_group_help():
    out = run("lensing", "--help")
    assert out.returncode == 0, out.stderr
    for command in ("simulate", "validate", "train", "evaluate"):
        assert command in out.stdout


def test_params_check_accepts_the_committed_params():
    out = run("params", "check")
    assert out.returncode == 0 and "valid" in out.stdout


def test_invalid_params_stop_a_stage_before_any_compute(tmp_path):
    """A bad T_lmax fails `cmbml lensing simulate` with exit code 2, a message naming the key and
    range, and no dataset written."""
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    text = (REPO / "params.yaml").read_text().replace("T_lmax: 383", "T_lmax: 900")
    (tmp_path / "params.yaml").write_text(text)
    out = run("lensing", "simulate", cwd=tmp_path)
    assert out.returncode == 2
    assert "T_lmax = 900" in out.stderr and "393" in out.stderr
    assert not (tmp_path / "datasets").exists()


def test_params_compose_writes_the_hydra_composition(tmp_path):
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    out = run("params", "compose", "lensing=v8", "--output", str(tmp_path / "p.yaml"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "noise_uK_arcmin: 5.0" in (tmp_path / "p.yaml").read_text()
