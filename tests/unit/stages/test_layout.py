"""The layering rules, read from the code's imports (also those inside functions):
- the library (src/cmbml) never imports DVC, MLflow or the glue (stages/);
- the shared package (cmbml.common) imports neither experiment;
- the lensing and CENN packages never import each other.
"""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from tests.stage_imports import imported_names

LIBRARY = REPO / "src" / "cmbml"
GLUE_ONLY = ("dvc", "mlflow", "stages", "great_expectations_cloud")


def modules(package: str):
    return sorted((LIBRARY / package).rglob("*.py")) if package else sorted(LIBRARY.glob("*.py"))


def imported_tops(path) -> set[str]:
    return {name.split(".")[0] for name in imported_names(path)}


def imported_packages(path) -> set[str]:
    """The library packages ``path`` imports (``cmbml.lensing.setup`` -> ``lensing``)."""
    return {name.split(".")[1] for name in imported_names(path) if name.startswith("cmbml.") and name.count(".") >= 1}


ALL_LIBRARY = sorted(LIBRARY.rglob("*.py"))


@pytest.mark.parametrize("path", ALL_LIBRARY, ids=lambda p: str(p.relative_to(LIBRARY)))
def test_the_library_never_imports_dvc_mlflow_or_the_glue(path):
    assert not imported_tops(path) & set(GLUE_ONLY), (
        f"{path.relative_to(REPO)} imports {imported_tops(path) & set(GLUE_ONLY)}"
    )


@pytest.mark.parametrize("path", modules("common"), ids=lambda p: str(p.relative_to(LIBRARY)))
def test_shared_code_imports_neither_experiment(path):
    assert not imported_packages(path) & {"lensing", "cenn"}, f"{path.relative_to(REPO)} imports an experiment"


@pytest.mark.parametrize("package, other", [("lensing", "cenn"), ("cenn", "lensing")])
def test_the_experiments_never_import_each_other(package, other):
    offenders = [str(p.relative_to(REPO)) for p in modules(package) if other in imported_packages(p)]
    assert not offenders, f"{package} modules import {other}: {offenders}"


def test_the_library_has_one_package_per_experiment_plus_shared_code():
    top_level = sorted(p.name for p in LIBRARY.glob("*.py"))
    assert top_level == ["__init__.py"], f"modules outside the packages: {top_level}"
    assert sorted(p.name for p in LIBRARY.iterdir() if (p / "__init__.py").is_file()) == ["cenn", "common", "lensing"]


def test_the_rules_see_an_import_inside_a_function(tmp_path):
    # The tests above are only as good as this.
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import mlflow\n    from cmbml.cenn.setup import load\n")
    assert "mlflow" in imported_tops(probe) and "cenn" in imported_packages(probe)
