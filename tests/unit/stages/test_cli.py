"""The `cmbml` command line."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import run_cmbml


def run(*args, cwd=REPO):
    """The installed `cmbml` command, running this checkout's code."""
    return run_cmbml(*args, cwd=cwd)


def test_help_lists_the_stages_without_importing_heavy_libraries():
    out = run("--help")
    assert out.returncode == 0 and "lensing" in out.stdout and "spectra" in out.stdout
    probe = (
        "import sys, stages.cli; heavy = {'tensorflow', 'keras', 'mlflow', 'great_expectations', 'camb', "
        "'healpy', 'pymaster'} & set(sys.modules); assert not heavy, heavy"
    )
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


def test_version_comes_from_the_package_metadata_without_heavy_imports():
    from importlib.metadata import version

    script = Path(sys.executable).with_name("cmbml")  # the installed console script, as a user types it
    out = subprocess.run(
        [str(script) if script.exists() else "cmbml", "--version"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0 and out.stdout.strip() == f"cmbml {version('cmbml')}", out.stderr
    probe = (
        "import sys; sys.argv = ['cmbml', '--version']; import stages.cli\n"
        "try:\n    stages.cli.app()\nexcept SystemExit:\n    pass\n"
        "heavy = {'tensorflow', 'keras', 'mlflow', 'dvc', 'matplotlib', 'h5py'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    assert subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True).returncode == 0


def one_line_error(out, status: int) -> str:
    """The single line a failed command wrote to stderr (no traceback), after checking its exit status."""
    assert out.returncode == status
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def test_a_stage_run_outside_the_repository_says_so_in_one_line(tmp_path):
    line = one_line_error(run("lensing", "validate", cwd=tmp_path), 2)
    assert "params.yaml" in line and "not the cmbml repository" in line


def test_a_stage_run_before_its_inputs_exist_names_the_stage_that_writes_them(tmp_path):
    """A checkout without datasets: `cmbml lensing train` names the missing split and `dvc repro lensing_simulate`."""
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    line = one_line_error(run("lensing", "train", cwd=tmp_path), 1)
    assert "training.h5 does not exist yet" in line and "`dvc repro lensing_simulate`" in line


def test_tensorflow_start_up_notices_are_hidden_behind_the_cli(tmp_path):
    """oneDNN's notice is written before absl logging starts, past TF_CPP_MIN_LOG_LEVEL, once per TensorFlow
    library; the CLI hides it (oneDNN stays on) and passes on anything else written during the import."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "PYTHONPATH": str(REPO / "src")}
    bare = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env)
    if "oneDNN custom operations are on" not in bare.stderr:
        pytest.skip("this TensorFlow build writes no start-up notice to hide")
    probe = (
        "import stages.cli, sys; print('other line', file=sys.stderr); import tensorflow as tf; "
        "from tensorflow.python.util import _pywrap_util_port; print(_pywrap_util_port.IsMklEnabled())"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr  # numerics: oneDNN still on
    assert "oneDNN custom operations" not in out.stderr and "absl::InitializeLog" not in out.stderr, out.stderr
    assert "other line" in out.stderr


def test_the_stderr_filter_drops_only_the_notices(capfd):
    """Lines written straight to file descriptor 2 (as C++ libraries do) are kept, in order, unless they match."""
    import re

    from stages.cli import _stderr_without

    with _stderr_without(re.compile(r"^I0000 .*notice")):
        os.write(2, b"I0000 00:00 port.cc:153] notice\nE0000 a real error\nI0000 another notice\nlast line\n")
    assert capfd.readouterr().err == "E0000 a real error\nlast line\n"


@pytest.mark.parametrize(
    "args, says",
    [
        (["score", "planck", "x.npy", "--method", "m"], "'planck': allowed lensing or cenn"),
        (["score", "cenn", "x.npy", "--method", "../up"], "--method '../up': allowed letters, digits"),
        (["score", "lensing", "x.npy", "--method", "m", "--sky", "unseen"], "--sky is for cenn"),
        (["score", "cenn", "x.npy", "--method", "m", "--sky", "other"], "--sky 'other': allowed training, unseen"),
    ],
)
def test_score_refuses_a_bad_experiment_method_or_sky_in_one_line_before_reading_anything(args, says):
    out = run(*args)
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr


def run_with_store(uri, *args):
    return run_cmbml(*args, timeout=120, MLFLOW_TRACKING_URI=uri)


def test_ui_on_a_taken_port_fails_in_one_line(tmp_path):
    """`cmbml ui` on a port another process holds exits 1 with one line naming the port (MLflow's server exits 0
    with the error among its log lines)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_with_store(f"sqlite:///{tmp_path / 'm.db'}", "ui", "--port", str(port))
    assert out.returncode == 1
    assert out.stderr.strip() == f"cmbml ui: port {port} on 127.0.0.1 is taken (Address already in use); pass --port"


@pytest.mark.parametrize("command", [("report", "--page", "README.md"), ("ui",)])
def test_commands_name_a_damaged_store_in_one_line(tmp_path, command):
    """A damaged mlflow.db stops `cmbml report` and `cmbml ui` with one line naming the file and how to recover
    (before, report printed a 145-line traceback)."""
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database at all" * 100)
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text())
    args = [a.replace("README.md", str(readme)) for a in command]
    out = run_with_store(f"sqlite:///{db}", *args)
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert str(db) in line and "damaged" in line and f"mv {db} {db}.damaged" in line
    assert readme.read_text() == (REPO / "README.md").read_text()


@pytest.mark.parametrize(
    "edits, command, says",
    [
        ({"scale.lensing.n_training": 10_000_000}, ("lensing", "simulate"), "scale.lensing.n_training = 10000000"),
        ({"scale.lensing.n_training": 10_000_000}, ("params", "check"), "lensing_simulate: scale.lensing.n_training"),
        (
            {"scale.cenn.nside": 4096, "cmb_maps.n_realisations": 1000},
            ("cenn", "cmb-maps"),
            "cmb_maps: cmb_maps.n_realisations = 1000, scale.cenn.nside = 4096 make about 2.42 TB",
        ),
    ],
    ids=["lensing-stage", "params-check", "cenn-stage"],
)
def test_parameters_whose_outputs_cannot_fit_are_refused_before_any_compute(tmp_path, edits, command, says):
    """Ten million lensing maps (about 200 GB) or a thousand nside-4096 CMB skies (2.4 TB): refused in one line with the parameters, the
    size and the free space (or memory), exit status 2, nothing written (before, the stage started writing with an
    8-hour ETA)."""
    import yaml

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    shutil.copytree(REPO / "data", tmp_path / "data")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in edits.items():
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[leaf] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(*command, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert says in out.stderr and (" is free" in out.stderr or "is available" in out.stderr), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "datasets").exists()


def test_a_run_whose_params_change_under_it_stops_naming_the_keys(tmp_path):
    """Two stages of one DVC run (here a stand-in `dvc` that runs them one after the other) between which another
    `dvc exp run` rewrote params.yaml: the second stops with exit 2 naming the key and both values, instead of
    training on the other experiment's learning rate (before, it trained, registered a model under its own name and
    died). A new DVC run starts from the file as it is."""
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    cmbml = Path(sys.executable).parent / "cmbml"
    fake_dvc = tmp_path / "dvc"
    fake_dvc.write_text(
        "#!/bin/bash\n"
        f"{cmbml} lensing validate 2>/dev/null; echo first=$?\n"
        "sed -i 's/^  learning_rate: 0.001$/  learning_rate: 0.01/' params.yaml\n"
        f"{cmbml} lensing validate; echo second=$?\n"
    )
    fake_dvc.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    out = subprocess.run([str(fake_dvc)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert "second=2" in out.stdout, out.stdout + out.stderr
    assert "params.yaml changed while this DVC run was going (" in out.stderr
    assert "learning_rate 0.001 -> 0.01" in out.stderr
    again = subprocess.run([str(fake_dvc)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert "second=2" in again.stdout  # the stand-in edits the file again: a run of its own, stopped again
    assert "learning_rate 0.01 -> 0.01" not in again.stderr


def test_a_lensing_stage_checks_its_size_without_the_cenn_inputs():
    """The size check of a lensing stage never opens the CENN instrument table: a temporary DVC workspace running
    only lensing stages does not check out data/ (before the fix, every stage stopped on the missing table)."""
    from cmbml.common.params import load_params
    from stages.experiments import check_space

    params = load_params(REPO / "params.yaml")
    params["instrument"]["table"] = "no/such/table.csv"
    for stage in ("spectra", "lensing_simulate", "lensing_train"):
        check_space(params, [stage])
    with pytest.raises(FileNotFoundError):
        check_space(params, ["cmb_maps"])


def test_an_oversized_cenn_patch_is_refused_with_the_size_it_may_have(tmp_path):
    """A 1024-pixel CENN patch of 6' (102 deg, reaching 72 deg from its centre) cannot lie above |b| = 30 deg at all:
    refused on scale.cenn.npix with the largest multiple of 16 that could (before: "allowed hi - lo > nan deg", then
    a band width of 180 deg that no band can have)."""
    import yaml

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    shutil.copytree(REPO / "data", tmp_path / "data")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["scale"]["cenn"]["npix"] = 1024
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run("params", "check", cwd=tmp_path)
    assert out.returncode == 2
    assert "scale.cenn.npix = 1024 is out of range: allowed 16 <= scale.cenn.npix <= 848" in out.stderr
    assert "nan" not in out.stderr and "hi - lo" not in out.stderr


def test_cmbml_holds_numpy_and_ducc0_at_the_avx2_kernels():
    """numpy and ducc0 choose float64 kernels by CPU when they load, and their AVX-512 versions differ from the AVX2
    ones in the last bit (on another AVX-512 machine the CENN skies, foregrounds and patches got other hashes). A
    `cmbml` process holds both at the AVX2 level, so every x86-64 machine with AVX2 runs the same code; a value the
    user sets wins. And numpy's AVX2 results equal its baseline's, so machines below AVX2 agree for numpy too."""
    code = (
        "import stages.cli, numpy as np, ducc0\n"
        "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
        "print(f['X86_V4'], ducc0.misc.cpu_info()['active_profile'])\n"
        "x = np.linspace(0.01, 10, 100_001)\n"
        "import hashlib; print(hashlib.md5(np.concatenate([np.exp(x), np.expm1(x), x**1.7, np.log(x), np.arctan2(x, 3.0),"
        " np.arcsin(x / 10.5)]).tobytes()).hexdigest())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "DUCC0_MAX_PSABI_LEVEL")}
    env["PYTHONPATH"] = f"{REPO / 'src'}:{REPO}"

    def probe(**extra):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, check=True
        )
        return out.stdout.split()

    v4, profile, digest = probe()
    assert v4 == "False" and profile in ("x86-64-v3", "x86-64")  # x86-64 on a machine without AVX2
    assert probe(DUCC0_MAX_PSABI_LEVEL="1")[1] == "x86-64"  # the user's setting wins
    # numpy with its AVX2 kernels off too (a machine without AVX2) computes the same bits
    assert probe(NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR")[2] == digest
