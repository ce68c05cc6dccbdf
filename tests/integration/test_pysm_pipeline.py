"""A PySM sky through the real DVC pipeline: `dvc exp run -S foregrounds=pysm -S scale=smoke` up to the dataset gate,
with small d1 and s1 templates written in PySM's layout into the copy's data/pysm (as a user who fetched them once
has). About 2 minutes on 2 cores."""

import json

import pytest

from tests.integration.conftest import sh
from tests.pysm_templates import write_pysm_templates

pytestmark = pytest.mark.slow


def test_the_dataset_gate_passes_on_a_pysm_sky(repo_copy):
    """Foregrounds, patches and the Great Expectations gate of the training sky under foregrounds=pysm: the
    channel maps come from PySM (levels.json names the model), the foreground spectra file the gate predicts from
    is written, and the gate passes, its channel order predicted from PySM's mean dust SED."""
    root, env = repo_copy
    write_pysm_templates(root / "data" / "pysm", 256, presets=("d1", "s1"))  # the smoke sky's nside
    sh(
        ["dvc", "exp", "run", "-S", "foregrounds=pysm", "-S", "scale=smoke", "cenn_validate@training"],
        root,
        env,
        timeout=900,
    )
    levels = json.loads((root / "datasets/cenn/foregrounds/levels.json").read_text())
    assert levels["model"] == "pysm"
    for channel in ("100GHz", "143GHz", "217GHz"):
        assert levels[channel]["dust"] > 0 and levels[channel]["synchrotron"] > 0
    assert levels["217GHz"]["dust"] > levels["100GHz"]["dust"]  # dust rises with frequency in uK_CMB
    assert (root / "datasets/cenn/foregrounds/foreground_cls.csv").stat().st_size > 1000
    gate = json.loads((root / "reports/cenn/validation.json").read_text())
    assert gate["success"], gate
