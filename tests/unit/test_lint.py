"""The code is clean under the linter and the formatter configured in pyproject.toml (what `./run lint` runs)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_finds_nothing(command):
    if not RUFF.exists():
        pytest.skip("ruff is not installed in this environment (scripts/setup.sh installs it)")
    out = subprocess.run([str(RUFF), *command], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]
