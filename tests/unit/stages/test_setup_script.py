"""scripts/setup.sh: one terminal line per step, the steps' output in the log, the log shown on failure.

The script, sourced, only defines its functions: these tests run its `step` on stand-in commands and never
touch the virtualenv.
"""

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
