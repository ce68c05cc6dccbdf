"""A throw-away copy of the repository where the real DVC pipeline runs."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def sh(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 no process listens on now (for the servers the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digests(root: Path, folders) -> dict[str, str]:
    """MD5 of every file under ``folders`` (relative to ``root``), keyed by its relative path."""
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def repo_copy(tmp_path_factory) -> tuple[Path, dict]:
    """The working tree (tracked and new files, no outputs) as a fresh git repository with data/ pulled."""
    dest = tmp_path_factory.mktemp("cmbml_repo")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="cmbml tests",
        GIT_AUTHOR_EMAIL="tests@cmbml",
        GIT_COMMITTER_NAME="cmbml tests",
        GIT_COMMITTER_EMAIL="tests@cmbml",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    sh(["git", "init", "-q", "-b", "main"], dest, env)
    sh(["git", "add", "-A"], dest, env)
    sh(["git", "commit", "-q", "-m", "snapshot for the integration test"], dest, env)
    sh(["dvc", "pull", "-q", "data.dvc"], dest, env)
    return dest, env
