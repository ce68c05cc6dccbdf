"""`cmbml check-reproduction`: a run of the pipeline on this machine against the committed one.

What must agree, and how closely (docs/reliability.md): every output of a stage that no trained network enters
(spectra, simulations, gates) byte for byte, as dvc.lock records them; every figure of the metrics files within a
relative tolerance, since training's floating-point sums follow the CPU's kernels and threads.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Reproduction:
    """The comparison of this workspace's dvc.lock and metrics with a revision's."""

    identical: list[str] = field(default_factory=list)  # network-free stages whose outputs match byte for byte
    differing: dict[str, list[str]] = field(default_factory=dict)  # network-free stage -> outputs that differ
    network: list[str] = field(default_factory=list)  # stages a trained network enters (not compared byte for byte)
    not_run: list[str] = field(default_factory=list)  # in the revision's lock, not in this workspace's
    figures_equal: int = 0
    figures_close: int = 0
    largest_relative: float = 0.0
    outside: list[str] = field(default_factory=list)  # "file: key old -> new"

    @property
    def ok(self) -> bool:
        return not self.differing and not self.outside


def lock_outputs(lock_text: str) -> dict[str, dict]:
    """``stage -> {"outs": {path: md5}, "deps": [path, ...]}`` from the text of a dvc.lock."""
    stages = (yaml.safe_load(lock_text) or {}).get("stages", {})
    return {
        name: {
            "outs": {o["path"]: o.get("md5") for o in entry.get("outs", [])},
            "deps": [d["path"] for d in entry.get("deps", [])],
        }
        for name, entry in stages.items()
    }


def _under(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def compare_locks(committed: dict[str, dict], fresh: dict[str, dict], model_dirs: list[str], result: Reproduction):
    """Sort the committed lock's stages into identical, differing, network-dependent and not run."""
    for stage, entry in committed.items():
        paths = [*entry["outs"], *entry["deps"]]
        if any(_under(p, model_dirs) for p in paths):  # it trains a network or reads one
            result.network.append(stage)
        elif stage not in fresh:
            result.not_run.append(stage)
        else:
            differ = [p for p, md5 in entry["outs"].items() if fresh[stage]["outs"].get(p) != md5]
            if differ:
                result.differing[stage] = differ
            else:
                result.identical.append(stage)


def compare_figures(diff: dict, rtol: float, atol: float, result: Reproduction) -> None:
    """Count the figures of ``dvc metrics diff --all --json`` that are equal, within tolerance, or outside it."""
    for name, metrics in diff.items():
        for key, change in (metrics or {}).items():
            old, new = change.get("old"), change.get("new")
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new)):
                if old != new:
                    result.outside.append(f"{name}: {key} {old!r} -> {new!r}")
                continue
            if old == new or (math.isnan(old) and math.isnan(new)):
                result.figures_equal += 1
                continue
            relative = abs(new - old) / max(abs(old), abs(new))
            result.largest_relative = max(result.largest_relative, relative)
            if abs(new - old) <= atol + rtol * abs(old):
                result.figures_close += 1
            else:
                result.outside.append(f"{name}: {key} {old:.10g} -> {new:.10g} ({relative:.1e} relative)")


def check_reproduction(
    rev: str, model_dirs: list[str], rtol: float, atol: float, root: Path = Path(".")
) -> Reproduction:
    """Compare the workspace (after `dvc repro`) with ``rev``: dvc.lock's outputs of the network-free stages, and the
    figures of every metrics file (``dvc metrics diff``)."""
    committed = subprocess.run(
        ["git", "show", f"{rev}:dvc.lock"], cwd=root, capture_output=True, text=True, check=False
    )
    if committed.returncode != 0:
        raise ValueError(f"{rev}: no dvc.lock at that revision ({committed.stderr.strip().splitlines()[-1:]})")
    result = Reproduction()
    compare_locks(lock_outputs(committed.stdout), lock_outputs((root / "dvc.lock").read_text()), model_dirs, result)
    diff = subprocess.run(
        ["dvc", "metrics", "diff", rev, "--all", "--json"], cwd=root, capture_output=True, text=True, check=False
    )
    if diff.returncode != 0:
        raise ValueError(f"dvc metrics diff {rev}: {diff.stderr.strip()}")
    compare_figures(json.loads(diff.stdout or "{}"), rtol, atol, result)
    return result
