"""Helpers shared by the tests: files for the gate tests, and the `cmbml` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def copy_files(paths: dict, folder: Path) -> dict:
    """Copy every file of ``paths`` (any keys) into ``folder``; return the same keys -> copies."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, path in paths.items():
        out[key] = folder / Path(path).name
        out[key].write_bytes(Path(path).read_bytes())
    return out


def failed(result, fragment: str) -> bool:
    """Whether a gate result lists a failure containing ``fragment``."""
    return any(fragment in f for f in result.failures)


def run_cmbml(*args, cwd: Path | None = None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """The installed `cmbml` command running this checkout's code (from the repository unless ``cwd``), with
    ``env`` added to the environment; its completed process, output as text."""
    from tests.conftest import REPO

    return subprocess.run(
        [str(Path(sys.executable).parent / "cmbml"), *map(str, args)],
        cwd=REPO if cwd is None else cwd,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
