"""scripts/setup.sh: one terminal line per step, the steps' output in the log, the log shown on failure; the choice
of the deep-learning build (GPU or CPU lock) and the two locks' agreement.

The script, sourced, only defines its functions: these tests run its `step` and its install of the locks on
stand-in commands (pip, nvidia-smi) and never touch the virtualenv, the network or a GPU.
"""

import re
import shutil
import subprocess

from tests.conftest import REPO

HARNESS = """
source "{script}"
LOG="{log}"; RUN_START=0
warns() {{ echo "SetuptoolsDeprecationWarning: License classifiers are deprecated"; echo "!! warning block" >&2; }}
fails_midway() {{ echo "compiling chealpix"; false; echo "never reached"; }}
step "a step that warns" warns
{second}
echo "after the steps"
"""


def run_harness(tmp_path, second: str):
    log = tmp_path / "setup.log"
    script = HARNESS.format(script=REPO / "scripts" / "setup.sh", log=log, second=second)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True), log


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "setup.sh")]).returncode == 0


def test_a_step_shows_one_line_and_keeps_its_output_in_the_log(tmp_path):
    out, log = run_harness(tmp_path, "")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("[setup]") == 1 and "a step that warns ... done" in out.stdout
    assert "Setuptools" not in out.stdout + out.stderr and "warning block" not in out.stdout + out.stderr
    assert "SetuptoolsDeprecationWarning" in log.read_text() and "!! warning block" in log.read_text()


def test_a_failing_step_stops_the_script_and_shows_the_log(tmp_path):
    out, log = run_harness(tmp_path, 'step "a step that fails" fails_midway')
    assert out.returncode == 1
    assert "a step that fails ... " in out.stdout and "FAILED" in out.stdout
    assert "compiling chealpix" in out.stderr and "SetuptoolsDeprecationWarning" in out.stderr  # the whole run's log
    assert "never reached" not in log.read_text() and "after the steps" not in out.stdout


# The deep-learning build: --print-plan with a stand-in nvidia-smi, and the lock files themselves.

GPU_LINE = "GPU 0: NVIDIA H200 (UUID: GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d)"
LISTS_A_GPU = f'#!/bin/sh\necho "{GPU_LINE}"\n'
# What nvidia-smi does on a machine whose NVIDIA driver is not loaded.
DRIVER_NOT_LOADED = (
    '#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9\n'
)


def print_plan(tmp_path, nvidia_smi: str | None, device: str | None = None):
    """`setup.sh --print-plan` with PATH holding only the tools it uses, and the stand-in nvidia-smi first.

    PATH is built here, not inherited, so that a real nvidia-smi on the machine running the tests never answers.
    """
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("dirname", "timeout"):
        (tools / tool).symlink_to(shutil.which(tool))
    path = str(tools)
    if nvidia_smi is not None:
        stand_in = tmp_path / "stand-in"
        stand_in.mkdir()
        (stand_in / "nvidia-smi").write_text(nvidia_smi)
        (stand_in / "nvidia-smi").chmod(0o755)
        path = f"{stand_in}:{path}"
    env = {"PATH": path, "HOME": str(tmp_path)} | ({"CMBML_DEVICE": device} if device is not None else {})
    script = [shutil.which("bash"), str(REPO / "scripts" / "setup.sh"), "--print-plan"]
    out = subprocess.run(script, capture_output=True, text=True, env=env, timeout=60)
    plan = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    return out, plan


def test_a_gpu_listed_by_nvidia_smi_gives_the_gpu_build(tmp_path):
    """An nvidia-smi on PATH whose `-L` lists a GPU makes the default (auto) plan the GPU lock."""
    out, plan = print_plan(tmp_path, LISTS_A_GPU)
    assert out.returncode == 0, out.stderr
    assert plan["build"] == "gpu" and plan["requirements"] == "requirements/gpu.txt"
    assert GPU_LINE in plan["reason"] and out.stderr == ""


def test_an_nvidia_smi_without_a_driver_gives_the_cpu_build(tmp_path):
    """An nvidia-smi that exits non-zero (9: driver not loaded) is no GPU: the plan is the CPU lock."""
    out, plan = print_plan(tmp_path, DRIVER_NOT_LOADED)
    assert out.returncode == 0, out.stderr
    assert plan["build"] == "cpu" and plan["requirements"] == "requirements.txt"
    assert "nvidia-smi -L failed" in plan["reason"]


def test_no_nvidia_smi_gives_the_cpu_build(tmp_path):
    """Without an nvidia-smi on PATH the plan is the CPU lock."""
    out, plan = print_plan(tmp_path, None)
    assert out.returncode == 0, out.stderr
    assert plan["build"] == "cpu" and plan["requirements"] == "requirements.txt"
    assert "no nvidia-smi" in plan["reason"]


def test_cmbml_device_cpu_forces_the_cpu_build_beside_a_gpu(tmp_path):
    """CMBML_DEVICE=cpu gives the CPU lock even where nvidia-smi lists a GPU."""
    out, plan = print_plan(tmp_path, LISTS_A_GPU, "cpu")
    assert out.returncode == 0, out.stderr
    assert plan["build"] == "cpu" and plan["requirements"] == "requirements.txt"
    assert plan["reason"] == "forced by CMBML_DEVICE=cpu"


def test_cmbml_device_gpu_forces_the_gpu_build_without_a_gpu_and_warns(tmp_path):
    """CMBML_DEVICE=gpu gives the GPU lock where no GPU is found, with one warning line on stderr."""
    out, plan = print_plan(tmp_path, DRIVER_NOT_LOADED, "gpu")
    assert out.returncode == 0, out.stderr
    assert plan["build"] == "gpu" and plan["requirements"] == "requirements/gpu.txt"
    assert plan["reason"] == "forced by CMBML_DEVICE=gpu"
    assert len(out.stderr.splitlines()) == 1 and "warning" in out.stderr and "no NVIDIA GPU" in out.stderr


def test_an_invalid_cmbml_device_fails_in_one_line(tmp_path):
    """CMBML_DEVICE=tpu exits 2 with one line naming the variable and its allowed values, and no plan."""
    out, _ = print_plan(tmp_path, LISTS_A_GPU, "tpu")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert all(word in out.stderr for word in ("CMBML_DEVICE", "auto", "gpu", "cpu", "tpu"))


def lock_pins(name: str) -> dict[str, tuple[str, str]]:
    """{PEP 503 name: (version, extras)} of a lock's `name[extras]==version` lines."""
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        m = re.match(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==(\S+)$", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m[1]).lower()] = (m[3], m[2] or "")
    return pins


def test_the_gpu_lock_pins_every_shared_package_at_the_cpu_locks_version():
    """Every package both locks pin has the same version in requirements/gpu.txt as in requirements.txt."""
    cpu, gpu = lock_pins("requirements.txt"), lock_pins("requirements/gpu.txt")
    shared = cpu.keys() & gpu.keys()
    assert len(shared) > 200  # the whole stack, not a fragment
    assert {name: cpu[name][0] for name in shared} == {name: gpu[name][0] for name in shared}


def test_the_builds_differ_only_in_the_deep_learning_wheels():
    """The GPU lock replaces tensorflow_cpu by tensorflow[and-cuda] at the same version and adds only CUDA wheels."""
    cpu, gpu = lock_pins("requirements.txt"), lock_pins("requirements/gpu.txt")
    assert cpu.keys() - gpu.keys() == {"tensorflow-cpu"}
    added = gpu.keys() - cpu.keys() - {"tensorflow"}
    assert added and all(re.fullmatch(r"nvidia-[a-z-]+-cu12", name) for name in added), added
    assert gpu["tensorflow"] == (cpu["tensorflow-cpu"][0], "[and-cuda]")


INSTALLS = """
source "{script}"
VENV="{venv}"; LOG="{venv}/setup.log"; RUN_START=0
for device in cpu cpu gpu gpu cpu; do
  echo "--- $device" >> "{venv}/pip-calls"
  CMBML_DEVICE=$device choose_build
  install_locked_dependencies
done
"""


def test_a_second_call_runs_no_pip_and_a_switch_swaps_the_tensorflow_build(tmp_path):
    """The stamp spares pip on a repeated choice; a new choice uninstalls the other build's packages, then installs."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "pip").write_text(f'#!/bin/sh\necho "$*" >> "{venv}/pip-calls"\n')  # records, installs nothing
    (venv / "bin" / "pip").chmod(0o755)
    script = INSTALLS.format(script=REPO / "scripts" / "setup.sh", venv=venv)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    calls = (venv / "pip-calls").read_text().split("--- ")[1:]
    gpu_only = sorted(lock_pins("requirements/gpu.txt").keys() - lock_pins("requirements.txt").keys())
    assert calls[0].splitlines()[1:] == [f"uninstall -y {' '.join(gpu_only)}", "install -r requirements.txt"]
    assert calls[1] == "cpu\n" and calls[3] == "gpu\n"  # same choice again: no pip
    assert calls[2].splitlines()[1:] == ["uninstall -y tensorflow-cpu", "install -r requirements/gpu.txt"]
    assert calls[4].splitlines()[1:] == [f"uninstall -y {' '.join(gpu_only)}", "install -r requirements.txt"]
    assert (venv / ".requirements-hash").read_text().startswith("cpu requirements.txt ")
