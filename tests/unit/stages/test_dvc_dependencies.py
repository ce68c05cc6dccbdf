"""dvc.yaml cannot go stale: each stage depends on the code it runs (the library packages it reaches, as
folders, and its glue modules) and on nothing else, and every path is written once (conf/paths.yaml), not in
dvc.yaml and again in Python."""

import ast
import re

import pytest
import yaml

from tests.conftest import REPO
from tests.stage_imports import direct_imports, stage_code_deps, stage_module

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())


def expanded_stages() -> dict[str, dict]:
    """dvc.yaml's stages as DVC names them: a ``foreach`` group gives ``<group>@<key>`` with ``${key}`` and
    ``${item.x}`` filled in."""
    out = {}
    for name, stage in DVC["stages"].items():
        if "foreach" not in stage:
            out[name] = stage
            continue
        for key, item in stage["foreach"].items():

            def fill(entry, key=key, item=item):
                if not isinstance(entry, str):
                    return {fill(next(iter(entry))): next(iter(entry.values()))}
                return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), entry.replace("${key}", key))

            out[f"{name}@{key}"] = {
                k: [fill(e) for e in v] if isinstance(v, list) else fill(v) for k, v in stage["do"].items()
            }
    return out


STAGES = expanded_stages()
CODE = ("src/", "stages/")


def code_deps(stage: str) -> list[str]:
    deps = [d for d in STAGES[stage]["deps"] if d.startswith(CODE)]
    assert len(deps) == len(set(deps)), f"dvc.yaml stage {stage!r} lists a module twice"
    return deps


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_depends_on_exactly_the_packages_and_glue_modules_it_runs(stage):
    """Imports are read from the code (also those inside functions) and followed through the modules they
    reach; a package dvc.yaml lacks would leave old results reported as current, one it lists needlessly
    would rerun the stage (a CENN edit must never retrain the lensing network)."""
    want, have = set(stage_code_deps(stage)), set(code_deps(stage))
    assert not want - have, f"dvc.yaml stage {stage!r} lacks the deps {sorted(want - have)}"
    assert not have - want, f"dvc.yaml stage {stage!r} lists {sorted(have - want)}, which it never imports"


def test_lensing_and_cenn_stages_never_depend_on_each_others_package():
    for name in STAGES:
        deps = set(code_deps(name))
        assert not {"src/cmbml/lensing", "src/cmbml/cenn"} <= deps, name
        if name.startswith("lensing"):
            assert "src/cmbml/cenn" not in deps, name
        if name.startswith(("cenn", "cmb_maps", "foregrounds")):
            assert "src/cmbml/lensing" not in deps, name


def test_no_stage_module_imports_another_stage():
    """Stages share code through the library (and MLflow through the glue modules), never each other."""
    stage_files = {REPO / "stages" / f"{stage_module(s)}.py" for s in STAGES}
    for path in stage_files:
        assert not (direct_imports(path) & stage_files), f"{path.name} imports another stage module"


def test_the_dependency_reader_sees_imports_inside_functions(tmp_path):
    # The tests above are only as good as this: a lazy import must count.
    assert REPO / "src" / "cmbml" / "cenn" / "namaster_flat.py" in direct_imports(REPO / "stages" / "cenn_evaluate.py")
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from cmbml.lensing.quadratic_estimator import n0_kappa\n")
    assert REPO / "src" / "cmbml" / "lensing" / "quadratic_estimator.py" in direct_imports(probe)


def test_cenn_stages_after_the_sky_take_the_instrument_as_a_parameter_and_read_its_table():
    """Changing instrument.target_GHz (or the table) must rerun every stage that uses the channels."""
    for stage in (
        "foregrounds@training",
        "foregrounds@unseen",
        "cenn_simulate@training",
        "cenn_validate@unseen",
        "cenn_train",
        "cenn_evaluate",
    ):
        assert "instrument" in STAGES[stage]["params"], stage
    for stage in ("cenn_simulate@training", "cenn_simulate@unseen", "cenn_validate@training", "cenn_evaluate"):
        assert "${instrument.table}" in STAGES[stage]["deps"], stage
    assert "${paths.cenn.data_dir}" in STAGES["foregrounds@unseen"]["deps"]  # templates


def test_each_foreground_sky_stage_reads_its_own_model_and_files():
    for group in ("foregrounds", "cenn_simulate", "cenn_validate"):
        assert (
            "foregrounds" in STAGES[f"{group}@training"]["params"]
            or "foregrounds.dust" in STAGES[f"{group}@training"]["params"]
        ), group
        unseen = STAGES[f"{group}@unseen"]
        assert any(p.startswith("unseen_foregrounds") for p in unseen["params"]), group
        assert all("unseen" in o for o in unseen["outs"]), group
        assert unseen["cmd"].endswith("--foregrounds unseen"), group


def _dvc_paths() -> set[str]:
    """Every literal (untemplated) dep or out path in dvc.yaml that is not code."""
    found = set()
    for stage in STAGES.values():
        for entry in stage.get("deps", []) + stage.get("outs", []) + stage.get("metrics", []):
            name = entry if isinstance(entry, str) else next(iter(entry))
            if not name.startswith(CODE):
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
    for path in [*(REPO / "src" / "cmbml").rglob("*.py"), *(REPO / "stages").glob("*.py")]:
        tree = ast.parse(path.read_text())
        # keys of other codes' mappings (MLflow's MLmodel: conf.get("data", "data")) are not our paths
        lookups = {
            id(arg)
            for call in ast.walk(tree)
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "get"
            for arg in call.args
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in values:
                if id(node) not in lookups:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders
