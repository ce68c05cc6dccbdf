"""Both experiments at once: the check behind ``cmbml params check`` and the tests of every parameter set."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cmbml.common.schema import validate_params


def check_all(params: Mapping[str, Any], conf_dir: str | Path = "conf", source: str = "params.yaml") -> None:
    """Check every key of the file against the schema of every experiment, their input files included; raise
    :class:`~cmbml.common.params.ParamError` listing all problems."""
    validate_params(params, conf_dir, source)
