"""Write requirements/gpu.txt, the GPU build's lock, from requirements.txt (the CPU build's).

The GPU lock is requirements.txt with `tensorflow[and-cuda]` at tensorflow_cpu's version in place of
tensorflow_cpu, plus the CUDA wheels that extra pulls. Every other pin of requirements.txt is a constraint of the
resolution, so the two builds differ only in the deep-learning wheels (tests/unit/stages/test_setup_script.py
checks). pip resolves from the wheels' metadata alone (--dry-run): the multi-GB CUDA wheels are not downloaded.
Run it on Linux x86-64 with Python 3.11, the platform requirements.txt was frozen on, after changing requirements.txt:

    .venv/bin/python scripts/lock_gpu.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU_LOCK = REPO / "requirements.txt"
GPU_LOCK = REPO / "requirements" / "gpu.txt"
# Installed with any virtualenv and left out of `pip freeze`, so requirements.txt does not pin them either.
UNPINNED = {"pip", "setuptools", "wheel"}
HEADER = """\
# The GPU build: requirements.txt with tensorflow[and-cuda] in place of tensorflow_cpu (same version) and the
# CUDA wheels it pulls; every other pin as in requirements.txt. Written by scripts/lock_gpu.py (Linux x86-64,
# Python 3.11); scripts/setup.sh installs it where nvidia-smi lists a GPU or CMBML_DEVICE=gpu.
"""


def normalize(name: str) -> str:
    """PEP 503 name: `tensorflow_cpu` and `TensorFlow-CPU` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, tuple[str, str]]:
    """{normalized name: (line, version)} of a lock's `name==version` lines (extras kept in the line)."""
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==(\S+)", line)
        if m:
            found[normalize(m[1])] = (line.strip(), m[3])
    return found


def main() -> None:
    cpu = pins(CPU_LOCK)
    tf_version = cpu["tensorflow-cpu"][1]
    with tempfile.TemporaryDirectory() as tmp:
        constraints, report = Path(tmp) / "constraints.txt", Path(tmp) / "report.json"
        constraints.write_text("".join(line + "\n" for name, (line, _) in cpu.items() if name != "tensorflow-cpu"))
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        cmd += ["--report", str(report), "-c", str(constraints), f"tensorflow[and-cuda]=={tf_version}"]
        subprocess.run(cmd, check=True)
        resolved = json.loads(report.read_text())["install"]

    lines = [line for name, (line, _) in cpu.items() if name != "tensorflow-cpu"]
    lines.append(f"tensorflow[and-cuda]=={tf_version}")
    for item in resolved:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if normalize(name) not in cpu and normalize(name) not in UNPINNED | {"tensorflow"}:
            lines.append(f"{name}=={version}")
    GPU_LOCK.parent.mkdir(exist_ok=True)
    # pip freeze's order (case-insensitive), as in requirements.txt.
    GPU_LOCK.write_text(HEADER + "".join(line + "\n" for line in sorted(lines, key=str.lower)))
    added = sorted(set(pins(GPU_LOCK)) - set(cpu))
    print(f"{GPU_LOCK.relative_to(REPO)}: {len(lines)} pins; beyond requirements.txt: {', '.join(added)}")


if __name__ == "__main__":
    main()
