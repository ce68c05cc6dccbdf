"""The code each stage runs, read from the code (every import, also inside functions), and the
dependencies dvc.yaml should list for it: the library packages it reaches (``src/cmbml/common``,
``src/cmbml/lensing``, ``src/cmbml/cenn``, whole folders) and the glue modules it runs (``stages/*.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = {"cmbml": REPO / "src" / "cmbml", "stages": REPO / "stages"}
LIBRARY = REPO / "src" / "cmbml"


def module_file(name: str) -> Path | None:
    """``cmbml.common.flatsky`` -> src/cmbml/common/flatsky.py; None for modules outside the repository."""
    top, *rest = name.split(".")
    if top not in PACKAGES:
        return None
    base = PACKAGES[top].joinpath(*rest)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imported_names(path: Path) -> set[str]:
    """Every absolute module name imported anywhere in ``path`` (``from a.b import c`` gives a.b and a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def direct_imports(path: Path) -> set[Path]:
    """Local module files imported anywhere in ``path``, with the packages' ``__init__`` files."""
    found: set[Path] = set()
    for name in imported_names(path):
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


def code_unit(path: Path) -> str:
    """What dvc.yaml lists for one module file: its library package folder (src/cmbml/<package>), or the
    file itself for the library's top ``__init__.py`` and for glue modules."""
    rel = path.relative_to(REPO)
    if path.is_relative_to(LIBRARY) and len(path.relative_to(LIBRARY).parts) > 1:
        return str(rel.parent if len(path.relative_to(LIBRARY).parts) == 2 else Path(*rel.parts[:3]))
    return str(rel)


def stage_module(stage: str) -> str:
    """The module a dvc.yaml stage runs: ``stages/<stage>.py`` (foreach stages: ``<group>@<item>``)."""
    return stage.split("@")[0]


def stage_modules(stage: str) -> list[str]:
    """Repository-relative paths of the code stage ``stage`` runs: ``stages/<module>.py`` (imported as
    ``stages.<module>``, so with ``stages/__init__.py``) and every local module it reaches."""
    files = transitive_imports(REPO / "stages" / f"{stage_module(stage)}.py") | {REPO / "stages" / "__init__.py"}
    return sorted(str(p.relative_to(REPO)) for p in files)


def stage_code_deps(stage: str) -> list[str]:
    """The code dependencies dvc.yaml lists for ``stage``: library packages as folders, glue modules as files."""
    return sorted({code_unit(REPO / p) for p in stage_modules(stage)})


if __name__ == "__main__":  # print the lists, for editing dvc.yaml
    import yaml

    for name in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]:
        print(name, stage_code_deps(name))
