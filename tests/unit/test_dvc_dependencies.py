"""dvc.yaml cannot go stale: each stage depends on all the code it runs and on no stage module, and
every path is written once (conf/paths.yaml), not in dvc.yaml and again in Python."""

import ast
import re

import pytest
import yaml

from tests.conftest import REPO
from tests.stage_imports import direct_imports, stage_module, stage_modules

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = sorted(DVC["stages"])


def python_deps(stage: str) -> set[str]:
    deps = [d for d in DVC["stages"][stage]["deps"] if d.endswith(".py")]
    assert len(deps) == len(set(deps)), f"dvc.yaml stage {stage!r} lists a module twice"
    return set(deps)


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_depends_on_every_local_module_it_imports(stage):
    """Imports are read from the code (also those inside functions) and followed through the modules
    they reach; a module dvc.yaml lacks would leave old results reported as current."""
    missing = sorted(set(stage_modules(stage)) - python_deps(stage))
    assert not missing, f"dvc.yaml stage {stage!r} lacks the deps {missing}"


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_depends_on_code_it_does_not_run(stage):
    extra = sorted(python_deps(stage) - set(stage_modules(stage)))
    assert not extra, f"dvc.yaml stage {stage!r} lists {extra}, which it never imports"


def test_no_stage_module_imports_another_stage():
    """Stages share code through the library (and MLflow through stages/_tracking.py), never each other."""
    stage_files = {REPO / "stages" / f"{stage_module(s)}.py" for s in STAGES}
    for path in stage_files:
        assert not (direct_imports(path) & stage_files), f"{path.name} imports another stage module"


def test_the_dependency_reader_sees_imports_inside_functions(tmp_path):
    # The test above is only as good as this: a lazy import must count.
    assert REPO / "src" / "cmbml" / "namaster_flat.py" in direct_imports(REPO / "stages" / "cenn_evaluate.py")
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from cmbml.lensing.quadratic_estimator import n0_kappa\n")
    assert REPO / "src" / "cmbml" / "quadratic_estimator.py" in direct_imports(probe)


def test_cenn_stages_after_the_sky_take_the_instrument_as_a_parameter_and_read_its_table():
    """Changing instrument.target_GHz (or the table) must rerun every stage that uses the channels."""
    for stage in ("foregrounds", "cenn_simulate", "cenn_validate", "cenn_train", "cenn_evaluate"):
        assert "instrument" in DVC["stages"][stage]["params"], stage
    for stage in ("cenn_simulate", "cenn_validate", "cenn_evaluate"):
        assert "${instrument.table}" in DVC["stages"][stage]["deps"], stage
    assert "${paths.cenn.data_dir}" in DVC["stages"]["foregrounds"]["deps"]  # templates


def _dvc_paths() -> set[str]:
    """Every literal (untemplated) dep or out path in dvc.yaml that is not code."""
    found = set()
    for stage in DVC["stages"].values():
        for entry in stage.get("deps", []) + stage.get("outs", []) + stage.get("metrics", []):
            name = entry if isinstance(entry, str) else next(iter(entry))
            if not name.endswith(".py"):
                found.add(name)
    return found


def test_dvc_yaml_takes_every_data_path_from_the_paths_block():
    literal = sorted(p for p in _dvc_paths() if not re.fullmatch(r"\$\{[\w.]+\}", p))
    assert not literal, f"dvc.yaml paths not taken from params: {literal}"


def test_no_path_of_the_paths_block_is_written_in_python():
    """The values of conf/paths.yaml (as composed into params.yaml) appear in no Python string."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    values = set()

    def walk(node):
        for v in node.values():
            walk(v) if isinstance(v, dict) else values.add(v)

    walk(params["paths"])
    values.add(params["instrument"]["table"])
    offenders = []
    for path in [*(REPO / "src" / "cmbml").glob("*.py"), *(REPO / "stages").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in values:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders
