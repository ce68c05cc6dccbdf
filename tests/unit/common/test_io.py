"""Atomic outputs."""

import json

import numpy as np
import pytest

from cmbml.common.io import atomic_path, write_json


def test_atomic_path_publishes_only_on_success(tmp_path):
    target = tmp_path / "out" / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            assert tmp.suffix == ".json" and tmp.parent == target.parent
            raise RuntimeError("killed half way")
    assert not target.exists() and list(target.parent.iterdir()) == []
    write_json(target, {"a": 1, "b": np.float32(0.5), "c": np.arange(2)})
    assert json.loads(target.read_text()) == {"a": 1, "b": 0.5, "c": [0, 1]}
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]  # no temporary file left


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_permissions_the_users_umask_gives(tmp_path, umask, mode):
    """An output in a shared project is readable by whom the user's umask allows (a temporary file from
    mkstemp alone would stay private, 0600)."""
    import os
    import stat

    previous = os.umask(umask)
    try:
        write_json(tmp_path / "result.json", {"a": 1})
        with atomic_path(tmp_path / "model.h5") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(previous)
    for name in ("result.json", "model.h5"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
