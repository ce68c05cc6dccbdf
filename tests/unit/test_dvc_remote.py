"""The repository's own DVC remote (dvc-storage/), which every clone carries.

Fact checked: it holds exactly what data.dvc needs (the directory listing of data/ and each file in it), so a
fresh clone's `dvc pull data.dvc` works offline and nothing else is cloned with it.
"""

import json

import yaml

from tests.conftest import REPO

OBJECTS = REPO / "dvc-storage" / "files" / "md5"


def _object(md5: str):
    return OBJECTS / md5[:2] / md5[2:]


def test_the_remote_holds_exactly_the_objects_data_dvc_references():
    (out,) = yaml.safe_load((REPO / "data.dvc").read_text())["outs"]
    listing = _object(out["md5"])
    assert listing.is_file(), f"dvc-storage lacks the listing of data/ ({out['md5']}): run `dvc push data.dvc`"
    files = json.loads(listing.read_text())
    assert len(files) == out["nfiles"]
    referenced = {out["md5"]} | {entry["md5"] for entry in files}
    stored = {p.parent.name + p.name for p in OBJECTS.rglob("*") if p.is_file()}
    assert referenced <= stored, f"missing from dvc-storage: {sorted(referenced - stored)} (run `dvc push data.dvc`)"
    assert stored == referenced, (
        f"dvc-storage holds objects data.dvc does not reference: {sorted(stored - referenced)}"
        " (remove them with `git rm`)"
    )
