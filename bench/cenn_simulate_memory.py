"""Peak memory of cenn_simulate against the number of CMB realisations (not a test: run on demand).

cenn_simulate builds beam-convolved full-sky maps for every CMB realisation before it cuts patches, so its
memory grows with ``cmb_maps.n_realisations``. This script measures that growth cheaply, at nside 512
with the paper's patch geometry (256 x 256 pixels of 1.5') and a few hundred patches: for each variant (E,
QU) it runs the stage with 1 and with 6 realisations and records the peak RSS of the stage's processes
(``ru_maxrss`` of the reaped children: the largest single process). ``bench/paper_scale.py`` scales such
figures to nside 2048 by the 16 times more sky pixels.

Run from the repository root (virtualenv on PATH; about 8 minutes on 2 cores)::

    python bench/cenn_simulate_memory.py [--ref HEAD]

It clones ``--ref`` of this repository into a temporary directory (``data/`` restored from the repository's
own DVC remote, as in paper_scale.py), generates the nside-512 skies once, and prints a markdown table, also
written to ``bench/cenn_simulate_memory.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COUNTS = ["scale.cenn.n_training=256", "scale.cenn.n_early_stopping=32", "scale.cenn.n_evaluation=32"]


def _run(cmd: list[str], cwd: Path, env: dict) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")


def _peak_gib_of(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(peak RSS of the largest child process in GiB, wall seconds) of one command run in a fresh child."""
    code = (
        "import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:]); "
        "print(json.dumps([r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))"
    )
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rc, max_kib = json.loads(done.stdout.strip().splitlines()[-1])
    if rc:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return max_kib / 1024**2, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="commit to measure")
    parser.add_argument("--nside", type=int, default=512)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "cenn_simulate_memory.md")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": "src:.", "TF_CPP_MIN_LOG_LEVEL": "2", "GX_ANALYTICS_ENABLED": "False"}
    env = {k: v for k, v in env.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", args.ref], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cmbml-simulate-memory-") as tmp:
        work = Path(tmp) / "repo"
        _run(["git", "clone", "--quiet", str(REPO), str(work)], Path(tmp), env)
        _run(["git", "checkout", "--quiet", commit], work, env)
        _run(["dvc", "pull", "--quiet", "data.dvc"], work, env)
        base = ["scale=paper", f"scale.cenn.nside={args.nside}", *COUNTS]
        _run(["cmbml", "params", "compose", *base, "cmb_maps.n_realisations=6"], work, env)
        for stage in ("spectra", "cmb-maps", "foregrounds"):
            _run(["cmbml", *(["spectra"] if stage == "spectra" else ["cenn", stage])], work, env)
        for variant in ("E", "QU"):
            for realisations in (1, 6):
                _run(
                    ["cmbml", "params", "compose", *base, f"cenn={variant}", f"cmb_maps.n_realisations={realisations}"],
                    work,
                    env,
                )
                peak, wall = _peak_gib_of(["cmbml", "cenn", "simulate"], work, env)
                rows.append((variant, realisations, peak, wall))
                print(
                    f"cenn_simulate {variant}, {realisations} realisation(s): peak {peak:.2f} GiB, {wall:.0f} s",
                    flush=True,
                )
    lines = [
        f"# cenn_simulate memory against CMB realisations (nside {args.nside}, 256^2 x 1.5' patches)",
        "",
        f"`python bench/cenn_simulate_memory.py --ref {args.ref}` (commit {commit}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); peak RSS of the largest process.",
        "",
        "| variant | realisations | peak GiB | wall s |",
        "|---|---|---|---|",
        *(f"| {v} | {r} | {p:.2f} | {w:.0f} |" for v, r, p, w in rows),
        "",
    ]
    for variant in ("E", "QU"):
        one, six = (p for v, r, p, _ in rows if v == variant)
        lines.append(
            f"- {variant}: +{(six - one) / 5 * 1024:.0f} MiB per further realisation at nside {args.nside}, "
            f"about {(six - one) / 5 * (2048 / args.nside) ** 2:.2f} GiB at nside 2048."
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
