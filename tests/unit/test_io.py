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
