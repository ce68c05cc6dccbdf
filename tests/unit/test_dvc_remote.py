"""The repository's own DVC remote (dvc-storage/), which every clone carries.

Facts checked: it holds exactly what data.dvc needs (the directory listing of data/ and each file in it), so a
fresh clone's `dvc pull data.dvc` works offline, plus the directory listings (.dir objects, a few hundred bytes
each) of the outputs dvc.lock records, which DVC reads from the remote when an experiment in a fresh clone
restores stages from the run cache (without them it stopped with "failed to load directory"); nothing else is
cloned with it. `python scripts/ship_dir_manifests.py` brings it up to date after a `dvc repro`.
"""

import importlib.util
import json

import yaml

from tests.conftest import REPO

OBJECTS = REPO / "dvc-storage" / "files" / "md5"


def _object(md5: str):
    return OBJECTS / md5[:2] / md5[2:]


def _script():
    spec = importlib.util.spec_from_file_location("ship_dir_manifests", REPO / "scripts" / "ship_dir_manifests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_remote_holds_exactly_the_objects_data_dvc_references_and_the_output_listings():
    (out,) = yaml.safe_load((REPO / "data.dvc").read_text())["outs"]
    listing = _object(out["md5"])
    assert listing.is_file(), f"dvc-storage lacks the listing of data/ ({out['md5']}): run `dvc push data.dvc`"
    files = json.loads(listing.read_text())
    assert len(files) == out["nfiles"]
    data = {out["md5"]} | {entry["md5"] for entry in files}
    listings = _script().lock_listings(REPO / "dvc.lock")
    stored = {p.parent.name + p.name for p in OBJECTS.rglob("*") if p.is_file()}
    assert data <= stored, f"missing from dvc-storage: {sorted(data - stored)} (run `dvc push data.dvc`)"
    assert listings <= stored, (
        f"dvc-storage lacks the listings of outputs in dvc.lock: {sorted(listings - stored)} "
        "(run `python scripts/ship_dir_manifests.py`)"
    )
    assert stored == data | listings, (
        f"dvc-storage holds objects neither data.dvc nor dvc.lock references: {sorted(stored - data - listings)}"
        " (run `python scripts/ship_dir_manifests.py`)"
    )
    assert all(_object(md5).stat().st_size < 4096 for md5 in listings)  # listings only, never the data they list
