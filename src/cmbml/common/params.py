"""Reading params.yaml and checking values, collecting every problem before reporting.

:class:`Checker` is the vocabulary of the checks in :mod:`cmbml.common.config`: each call names a dotted
key, reads it, and records a problem that names the key, its value and the allowed range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ParamError(ValueError):
    """One or more parameters are invalid; the message names each key and its allowed range."""

    def __init__(self, problems: list[str], source: str = "params.yaml"):
        self.problems = problems
        super().__init__(f"invalid parameters in {source}:\n  - " + "\n  - ".join(problems))


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the composed parameter file."""
    import yaml

    with open(path) as fh:
        return yaml.safe_load(fh)


def get_key(params: Mapping[str, Any], dotted: str) -> Any:
    """``get_key(p, "scale.lensing.n_train")`` -> ``p["scale"]["lensing"]["n_train"]``."""
    node: Any = params
    for part in dotted.split("."):
        node = node[part]
    return node


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested parameters as ``a.b.c`` keys (for MLflow)."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def available_options(group: str, conf_dir: str | Path = "conf") -> list[str]:
    """Names of the option files of a Hydra config group (``conf/<group>/*.yaml``)."""
    return sorted(p.stem for p in Path(conf_dir, group).glob("*.yaml"))


def repository_root() -> Path:
    """The user's repository, also from inside a queued ``dvc exp`` run.

    Queued and ``--temp`` experiments execute in a copy under ``<repo>/.dvc/tmp/exps/``;
    results shared across experiments (the MLflow store) must live in ``<repo>``.
    """
    cwd = Path.cwd().resolve()
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


class Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self, params: Mapping[str, Any], workdir: str | Path = "."):
        self.params = params
        self.workdir = Path(workdir).resolve()
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def raise_if_any(self, source: str = "params.yaml") -> None:
        if self.problems:
            raise ParamError(self.problems, source)

    def value(self, key: str) -> Any:
        try:
            return get_key(self.params, key)
        except (KeyError, TypeError):
            self.problems.append(f"{key}: missing")
            return None

    def number(self, key: str, lo: float, hi: float, *, integer: bool = False, lo_open: bool = False,
               nullable: bool = False, why: str = "") -> float | None:
        """The value of ``key`` if it is a number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), else None."""
        v = self.value(key)
        if v is None:
            if not nullable and not any(p.startswith(f"{key}:") for p in self.problems):
                self.problems.append(f"{key} = null: a value is required, allowed {lo:g} <= {key} <= {hi:g}")
            return None
        kind = "an integer" if integer else "a number"
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type or (isinstance(v, float) and not math.isfinite(v)):
            self.problems.append(f"{key} = {v!r}: must be {kind}, allowed {lo:g} <= {key} <= {hi:g}")
            return None
        lo_sign = "<" if lo_open else "<="
        too_low = v <= lo if lo_open else v < lo
        if too_low or v > hi:
            extra = f" ({why})" if why else ""
            self.problems.append(f"{key} = {v!r} is out of range: allowed {lo:g} {lo_sign} {key} <= {hi:g}{extra}")
            return None
        return v

    def choice(self, key: str, allowed: list[str]) -> str | None:
        v = self.value(key)
        if v is not None and v not in allowed:
            self.problems.append(f"{key} = {v!r}: allowed values are {', '.join(map(str, allowed))}")
            return None
        return v

    def boolean(self, key: str) -> bool | None:
        v = self.value(key)
        if v is not None and not isinstance(v, bool):
            self.problems.append(f"{key} = {v!r}: allowed true or false")
            return None
        return v

    def text(self, key: str) -> str | None:
        v = self.value(key)
        if v is not None and (not isinstance(v, str) or not v):
            self.problems.append(f"{key} = {v!r}: allowed a non-empty string")
            return None
        return v

    def file_in_repository(self, key: str, relative_to: str | Path = ".", hint: str = "") -> Path | None:
        """A file named by ``key`` (relative to ``relative_to`` under the working directory) that exists
        inside the repository: files outside it would be read but tracked by nothing."""
        v = self.text(key)
        if v is None:
            return None
        base = (self.workdir / relative_to).resolve()
        path = (base / v).resolve()
        if not path.is_relative_to(self.workdir):
            self.problems.append(f"{key} = {v!r}: resolves to {path}, outside the repository {self.workdir}; "
                                 f"allowed: a file inside it{hint}")
            return None
        if not path.is_file():
            self.problems.append(f"{key} = {v!r}: no such file {path}; allowed an existing file inside the repository{hint}")
            return None
        return path
