"""Helpers shared by the gate tests."""

from __future__ import annotations

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
