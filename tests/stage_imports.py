"""The local modules each stage runs, read from the code (every import, also inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = {"cmbml": REPO / "src" / "cmbml", "stages": REPO / "stages"}


def module_file(name: str) -> Path | None:
    """``cmbml.common.flatsky`` -> src/cmbml/flatsky.py; None for modules outside the repository."""
    top, *rest = name.split(".")
    if top not in PACKAGES:
        return None
    base = PACKAGES[top].joinpath(*rest)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def direct_imports(path: Path) -> set[Path]:
    """Local module files imported anywhere in ``path``, with the packages' ``__init__`` files."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, a/b/c
                found.add(module_file(".".join(parts[:i])))
    return {f for f in found if f is not None and f != path}


def transitive_imports(path: Path) -> set[Path]:
    """``path`` and every local module it imports, followed through the modules it reaches."""
    seen, todo = {path}, [path]
    while todo:
        for dep in direct_imports(todo.pop()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def stage_module(stage: str) -> str:
    """The module a dvc.yaml stage runs: ``<module>_unseen`` runs ``<module>`` on the unseen foreground sky."""
    return stage.removesuffix("_unseen")


def stage_modules(stage: str) -> list[str]:
    """Repository-relative paths of the code stage ``stage`` runs: ``stages/<module>.py`` (imported as
    ``stages.<module>``, so with ``stages/__init__.py``) and every local module it reaches."""
    files = transitive_imports(REPO / "stages" / f"{stage_module(stage)}.py") | {REPO / "stages" / "__init__.py"}
    return sorted(str(p.relative_to(REPO)) for p in files)


if __name__ == "__main__":  # print the lists, for editing dvc.yaml
    import yaml

    for name in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]:
        print(name, stage_modules(name))
