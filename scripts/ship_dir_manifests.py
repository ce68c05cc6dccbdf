"""Keep in dvc-storage/ (the remote every clone carries) the directory listings (.dir objects) of the outputs dvc.lock
names, beside the objects data.dvc needs.

Why: a DVC experiment restored partly from the run cache in a fresh clone compares the stages it restores with
dvc.lock, and for a directory output it needs that output's listing; a clone's cache holds only data/, so DVC looks
in the remote and, without the listing, stops with "failed to load directory". The listings are a few hundred bytes
each; the files they list are not shipped. Run after every `dvc repro` that changes outputs (the unit test
tests/unit/test_dvc_remote.py fails until it is run):

    python scripts/ship_dir_manifests.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REMOTE = ROOT / "dvc-storage" / "files" / "md5"
CACHE = ROOT / ".dvc" / "cache" / "files" / "md5"


def lock_listings(lock: Path = ROOT / "dvc.lock") -> set[str]:
    """The .dir hashes of every output dvc.lock records."""
    stages = yaml.safe_load(lock.read_text())["stages"]
    return {o["md5"] for s in stages.values() for o in s.get("outs", []) if str(o.get("md5", "")).endswith(".dir")}


def data_objects(dvc_file: Path = ROOT / "data.dvc", remote: Path = REMOTE) -> set[str]:
    """The objects data.dvc needs: its listing and each file in it."""
    (out,) = yaml.safe_load(dvc_file.read_text())["outs"]
    listing = remote / out["md5"][:2] / out["md5"][2:]
    return {out["md5"]} | {e["md5"] for e in json.loads(listing.read_text())}


def main() -> int:
    wanted, keep = lock_listings(), data_objects()
    missing = []
    for md5 in sorted(wanted):
        src, dst = CACHE / md5[:2] / md5[2:], REMOTE / md5[:2] / md5[2:]
        if not src.is_file():
            missing.append(md5)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    for path in [p for p in REMOTE.rglob("*") if p.is_file()]:
        if path.parent.name + path.name not in wanted | keep:
            path.unlink()
    for folder in [p for p in REMOTE.iterdir() if p.is_dir() and not any(p.iterdir())]:
        folder.rmdir()
    print(f"dvc-storage: {len(wanted) - len(missing)} output listings of dvc.lock, {len(keep)} objects of data.dvc")
    if missing:
        print(f"not in the cache (run dvc repro first): {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
