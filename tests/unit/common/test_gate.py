"""The gate's pieces that need no Great Expectations run: rounded thresholds, where Data Docs go and what a
later stage reads of a gate's result."""

import json
import math
import random

import pytest

from cmbml.common.gate import GateNotPassed, data_docs_dir, lower_bound, require_passed, upper_bound


def test_bounds_are_rounded_outwards_to_four_significant_digits():
    assert lower_bound(0.0411269864707915) == 0.04112 and upper_bound(0.0451262506584605) == 0.04513
    assert lower_bound(-2.49203) == -2.493 and upper_bound(-2.49203) == -2.492
    assert lower_bound(12345.0) == 12340.0 and upper_bound(12345.0) == 12350.0
    for x in (None, 0.0, 0, math.inf, -math.inf):
        assert lower_bound(x) == x and upper_bound(x) == x
    rng = random.Random(1)
    for _ in range(2000):  # never tighter than the exact bound, and within one unit of the 4th digit
        x = rng.uniform(-1, 1) * 10 ** rng.uniform(-12, 12)
        low, high = lower_bound(x), upper_bound(x)
        assert low <= x <= high
        assert high - low <= 1.000001 * 10.0 ** (math.floor(math.log10(abs(x))) - 3)
        assert float(f"{low:.3e}") == low and float(f"{high:.3e}") == high


def test_data_docs_go_to_the_repository_keyed_by_stage_and_experiment(monkeypatch, tmp_path):
    queued = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc"
    queued.mkdir(parents=True)
    monkeypatch.chdir(queued)
    monkeypatch.setenv("DVC_EXP_NAME", "fated-bloc")
    assert (
        data_docs_dir("reports/data_docs", "lensing_validate")
        == (tmp_path / "repo" / "reports" / "data_docs" / "lensing_validate" / "fated-bloc").resolve()
    )
    monkeypatch.delenv("DVC_EXP_NAME")
    assert data_docs_dir("reports/data_docs", "cenn_validate").name == "workspace"


def test_a_later_stage_reads_only_a_passed_gate(tmp_path):
    result = tmp_path / "validation.json"
    with pytest.raises(GateNotPassed, match="run the validation stage first"):
        require_passed(result)  # no result yet
    result.write_text(json.dumps({"success": False}))
    with pytest.raises(GateNotPassed):
        require_passed(result)
    result.write_text(json.dumps({"success": True}))
    require_passed(result)


def test_missing_and_damaged_files_are_named_before_any_expectation(tmp_path):
    """The gate's first check names the file and the reason in one line: a file an interrupted stage never wrote
    (before, 24 failed expectations), an HDF5 file cut short and one whose data were overwritten (before, 18 lines
    of failed expectations naming neither the file nor h5py's reason); a sound file passes."""
    import h5py
    import numpy as np

    from cmbml.common.gate import UnreadableDataset, require_readable

    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as h5:
        h5.create_dataset("M", data=np.random.default_rng(0).normal(size=(600, 16, 16)), chunks=(32, 16, 16),
                          compression="gzip")  # fmt: skip
        h5.attrs["units"] = "uK_CMB"
    require_readable([good])
    with pytest.raises(UnreadableDataset, match=r"missing.h5: does not exist \(the stage that writes it"):
        require_readable([good, tmp_path / "missing.h5"])
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UnreadableDataset, match=r"cut.h5: unreadable HDF5 \(") as err:
        require_readable([cut])
    assert "\n" not in str(err.value)
    zeroed = tmp_path / "zeroed.h5"
    data = bytearray(good.read_bytes())
    a, b = len(data) // 3, 2 * len(data) // 3
    data[a:b] = bytes(b - a)  # the middle third overwritten with zeros
    zeroed.write_bytes(bytes(data))
    with pytest.raises(UnreadableDataset, match=r"zeroed.h5: unreadable HDF5 \("):
        require_readable([zeroed])
