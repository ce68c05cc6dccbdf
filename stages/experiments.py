"""Both experiments at once: the check of the whole params.yaml behind ``cmbml params check``, which the
``cmbml`` command also runs before any stage.

The library's experiments never import each other, so each setup validates only the shared blocks and its
own keys; this glue module names every experiment's schema, so that a key unknown anywhere in the file (a
misspelt top-level block included) is refused before any stage computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cmbml.cenn.schema  # noqa: F401  (registers the CENN section)
import cmbml.lensing.schema  # noqa: F401  (registers the lensing section)
from cmbml.common.schema import validate_params


def check_all(
    params: Mapping[str, Any], conf_dir: str | Path = "conf", source: str = "params.yaml", files_of: str | None = None
) -> None:
    """Check every key of the file against the schema of every experiment; raise
    :class:`~cmbml.common.params.ParamError` listing all problems.

    ``files_of``: open only that experiment's input files (the stage about to run); None opens every
    experiment's (``cmbml params check``)."""
    validate_params(params, conf_dir, source, files_of=files_of)
