"""Both experiments at once: the check behind ``cmbml params check`` and the tests of every parameter set."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cmbml.cenn.setup import check_cenn
from cmbml.lensing.setup import check_lensing
from cmbml.common.params import Checker


def check_all(params: Mapping[str, Any], conf_dir: str | Path = "conf", source: str = "params.yaml") -> None:
    """Check every key of both experiments; raise :class:`~cmbml.common.params.ParamError` listing all problems."""
    checker = Checker(params)
    check_lensing(checker, Path(conf_dir))
    check_cenn(checker, Path(conf_dir))
    checker.problems = list(dict.fromkeys(checker.problems))  # the shared checks run for each experiment
    checker.raise_if_any(source)
