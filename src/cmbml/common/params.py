"""Reading params.yaml: the file, dotted keys, the repository, and the exception that lists every problem.

The parameters are checked by the schema (:mod:`cmbml.common.schema`, :mod:`cmbml.lensing.schema`,
:mod:`cmbml.cenn.schema`); :class:`ParamError` is what a refused file raises, one line per problem, each
naming its dotted key, its value and what is allowed.
"""

from __future__ import annotations

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
    """``get_key(p, "scale.lensing.n_training")`` -> ``p["scale"]["lensing"]["n_training"]``."""
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


def file_in_repository(
    value: Any, relative_to: str | Path, workdir: str | Path, hint: str = ""
) -> tuple[Path | None, str | None]:
    """The file a parameter names, and why it is refused (None if it is not).

    Parameters
    ----------
    value : Any
        The parameter: a path relative to ``relative_to``.
    relative_to : str or Path
        The folder the path is relative to, itself relative to ``workdir`` (or absolute).
    workdir : str or Path
        The repository: a file outside it would be read but tracked by nothing.
    hint : str
        Appended to a refusal: where such a file belongs.

    Returns
    -------
    path, problem : Path or None, str or None
        The resolved file, or None and the reason, worded ``"{key} = <value>: ..."`` so that the caller
        puts the parameter's dotted key in place of ``{key}``.
    """
    if not isinstance(value, str) or not value:
        return None, f"{{key}} = {value!r}: allowed a non-empty string{hint}"
    root = Path(workdir).resolve()
    path = (root / relative_to / value).resolve()
    if not path.is_relative_to(root):
        return None, (
            f"{{key}} = {value!r}: resolves to {path}, outside the repository {root}; allowed: a file inside it{hint}"
        )
    if not path.is_file():
        return None, f"{{key}} = {value!r}: no such file {path}; allowed an existing file inside the repository{hint}"
    return path, None


class Checker:
    """Collects problems of checks over the raw parameters, for checks that a block's types cannot express
    (a foreground component's files in ``data/``); each problem is a line that names its dotted key."""

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

    def file_in_repository(self, key: str, relative_to: str | Path = ".", hint: str = "") -> Path | None:
        """A file named by ``key`` (relative to ``relative_to`` under the working directory) that exists
        inside the repository: files outside it would be read but tracked by nothing."""
        value = self.value(key)
        if value is None:  # absent (reported by value) or null (no file)
            return None
        path, problem = file_in_repository(value, relative_to, self.workdir, hint)
        if problem is not None:
            self.problems.append(problem.replace("{key}", key))
        return path
