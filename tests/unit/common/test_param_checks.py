"""Every key of params.yaml is checked before any compute, by the schema (cmbml.common.schema and each
experiment's schema module). The cases are derived from the schema itself: every key of the composed file is
a schema field; every bounded number refuses a value beyond each bound, naming the dotted key and the range;
every choice refuses an unknown value; every block refuses an unknown key, a missing key and values of the
wrong type. A new parameter is therefore tested by its schema field alone. The checks across keys (the
rules: band limits against the grid, batches against training sets, files in the repository ...) have their
own table below."""

from __future__ import annotations

import copy
import re
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import AfterValidator, BaseModel

from cmbml.common.params import ParamError, flatten
from cmbml.common.schema import ConfChoice, bounds_text, field_bounds, model_of, params_model, strip_type
from stages.experiments import check_all
from tests.conftest import REPO, compose

MODEL = params_model()
DEFAULT = compose()
NONGAUSSIAN = compose("foregrounds=nongaussian")
PYSM = compose("foregrounds=pysm", "foregrounds@unseen_foregrounds=pysm")  # its templates are absent: refused
UNKNOWN = "not_a_key"


def leaf_fields(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> FieldInfo of every field that holds a value (not a block)."""
    out = {}
    for name, field in model.model_fields.items():
        sub = model_of(field.annotation)
        if sub is not None:
            out.update(leaf_fields(sub, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = field
    return out


def blocks(model: type[BaseModel], prefix: str = "") -> dict[str, type[BaseModel]]:
    """Dotted key ('' for the file) -> model of every block."""
    out = {prefix.rstrip("."): model}
    for name, field in model.model_fields.items():
        sub = model_of(field.annotation)
        if sub is not None:
            out.update(blocks(sub, f"{prefix}{name}."))
    return out


LEAVES = leaf_fields(MODEL)
BLOCKS = blocks(MODEL)


def _set(params: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(params)
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return out


def _node(params: dict, dotted: str):
    node = params
    for part in filter(None, dotted.split(".")):
        node = node[part]
    return node


def holding(key: str) -> dict:
    """The composed parameters that hold ``key``: the pysm block exists only in the pysm sky."""
    return PYSM if ".pysm." in key else DEFAULT


def problems(params: dict) -> list[str]:
    with pytest.raises(ParamError) as err:
        check_all(params)
    return err.value.problems


def lines_naming(key: str, found: list[str]) -> list[str]:
    """The problems about ``key`` itself (not about a key it is the prefix of)."""
    return [line for line in found if re.match(rf"{re.escape(key)}(\W|$)", line) and not line.startswith(f"{key}.")]


# ---- the schema covers the file -------------------------------------------------------------------------


def test_every_key_of_the_composed_parameters_is_a_schema_field():
    for params in (DEFAULT, NONGAUSSIAN, PYSM):
        assert set(flatten(params)) - set(LEAVES) == set()


def test_every_schema_field_is_a_key_of_a_composed_parameter_set_or_may_be_absent():
    present = set(flatten(DEFAULT)) | set(flatten(NONGAUSSIAN)) | set(flatten(PYSM))
    absent = {key for key in set(LEAVES) - present if LEAVES[key].is_required()}
    # an architecture's settings block may be empty ({}): its keys have defaults
    assert absent == set()


@pytest.mark.parametrize("key", sorted(BLOCKS))
def test_every_block_and_key_is_described(key):
    """Each field carries its meaning and unit in its description (the JSON schema shows them)."""
    for name, field in BLOCKS[key].model_fields.items():
        assert field.description, f"{key}.{name} has no description"


def test_the_schema_is_a_json_schema():
    schema = MODEL.model_json_schema()
    assert schema["properties"]["npix"]["unit"] == "pixels" and schema["properties"]["npix"]["maximum"] == 1024


def test_the_default_parameters_are_valid():
    check_all(DEFAULT)
    check_all(NONGAUSSIAN)


# ---- derived cases ---------------------------------------------------------------------------------------


def _is_int(field) -> bool:
    return strip_type(field.annotation) is int


def _outside(key: str, field) -> list[tuple[Any, str]]:
    """Values beyond each static bound of a field, and the range the message must show."""
    lo, hi, lo_open, hi_open = field_bounds(field)
    cases = []
    if lo is not None:
        value = lo if lo_open else lo - max(1, abs(lo))
        cases.append((value if _is_int(field) else float(value), bounds_text(key, lo, None, lo_open)))
    if hi is not None:
        value = hi if hi_open else hi + max(1, abs(hi))
        cases.append((value if _is_int(field) else float(value), bounds_text(key, None, hi, hi_open=hi_open)))
    return cases


BOUNDED = [(key, value, text) for key, field in sorted(LEAVES.items()) for value, text in _outside(key, field)]


@pytest.mark.parametrize("key, value, text", BOUNDED, ids=[f"{k}={v}" for k, v, _ in BOUNDED])
def test_a_number_beyond_its_range_is_refused_naming_the_key_and_the_range(key, value, text, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    found = lines_naming(key, problems(_set(holding(key), key, value)))
    assert any(line.startswith(f"{key} = {value!r}") and "allowed" in line and text in line for line in found), (
        text,
        found,
    )


def _choices(field) -> tuple[str, ...] | None:
    tp = strip_type(field.annotation)
    if get_origin(tp) is Literal:
        return tuple(map(str, get_args(tp)))
    for m in field.metadata:
        if isinstance(m, AfterValidator) and isinstance(m.func, ConfChoice):
            return tuple(m.func.options(REPO / "conf"))
    return None


CHOICES = {key: choices for key, field in sorted(LEAVES.items()) if (choices := _choices(field))}


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_an_unknown_choice_is_refused_with_the_allowed_ones(key, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    found = lines_naming(key, problems(_set(DEFAULT, key, "not_a_choice")))
    assert any(f"{key} = 'not_a_choice': allowed values are {', '.join(CHOICES[key])}" in line for line in found), found


LIST_CHOICES = {
    key: get_args(get_args(strip_type(field.annotation))[0])
    for key, field in sorted(LEAVES.items())
    if get_origin(strip_type(field.annotation)) is list
    and get_origin(get_args(strip_type(field.annotation))[0]) is Literal
}


@pytest.mark.parametrize("key", sorted(LIST_CHOICES))
def test_an_unknown_choice_in_a_list_is_refused_naming_its_index(key):
    found = problems(_set(holding(key), key, ["not_a_choice"]))
    assert any(
        line.startswith(f"{key}[0] = 'not_a_choice': allowed values are {', '.join(LIST_CHOICES[key])}")
        for line in found
    ), found


def _wrong_type(field):
    tp = strip_type(field.annotation)
    if tp is bool:
        return "yes"
    if tp is int:
        return 1.5
    if tp is float:
        return "1.0"
    if get_origin(tp) is list:
        return "not a list"
    return 12345  # strings, paths and choices


def _in_default(key: str) -> bool:
    try:
        return isinstance(_node(DEFAULT, key), dict)
    except KeyError:
        return False


PRESENT_BLOCKS = sorted(key for key in BLOCKS if _in_default(key))


def _own_leaves(key: str) -> dict[str, Any]:
    """The fields holding values directly in block ``key``, present in the default parameters."""
    prefix = f"{key}." if key else ""
    block = _node(DEFAULT, key)
    return {
        f"{prefix}{name}": field
        for name, field in BLOCKS[key].model_fields.items()
        if model_of(field.annotation) is None and name in block
    }


@pytest.mark.parametrize("key", PRESENT_BLOCKS)
def test_an_unknown_key_is_refused_and_named_at_any_depth(key):
    dotted = f"{key}.{UNKNOWN}" if key else UNKNOWN
    found = problems(_set(DEFAULT, dotted, 1))
    assert any(line.startswith(f"{dotted}: unknown key") and "allowed keys" in line for line in found), found


@pytest.mark.parametrize("key", [k for k in PRESENT_BLOCKS if any(LEAVES[f].is_required() for f in _own_leaves(k))])
def test_every_missing_key_of_a_block_is_named(key, monkeypatch):
    """A block without its keys: each required one is named at once."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = copy.deepcopy(DEFAULT)
    required = [k for k in _own_leaves(key) if LEAVES[k].is_required()]
    for dotted in required:
        params = _set(params, dotted, KeyError)
    found = problems(params)
    for dotted in required:
        assert any(line.startswith(f"{dotted}: missing") for line in found), (dotted, found)


@pytest.mark.parametrize("key", [k for k in PRESENT_BLOCKS if _own_leaves(k)])
def test_every_value_of_the_wrong_type_is_named_with_what_is_allowed(key, monkeypatch):
    """All keys of a block set to values of another type at once: each is refused, naming what is allowed."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    own = _own_leaves(key)
    params = copy.deepcopy(DEFAULT)
    for dotted, field in own.items():
        params = _set(params, dotted, _wrong_type(field))
    found = problems(params)
    for dotted in own:
        named = lines_naming(dotted, found)
        assert any("allowed" in line or "stay inside" in line for line in named), (dotted, found)


# ---- the checks across keys --------------------------------------------------------------------------------

# key -> (invalid value, the key the problem names, fragments the message must contain). Each is refused by a
# rule that reads other keys too, or by a check that types cannot express (files, the instrument table, the
# conf/ groups).
RULES = {
    "T_lmax": (500, "T_lmax", ["allowed 2 <= T_lmax <= 393", "Nyquist"]),
    "kappa_lmax": (5000, "kappa_lmax", ["allowed", "Nyquist"]),
    "lensing_evaluate.rho_bin_width_in_fundamentals": (
        10.0,
        "lensing_evaluate.rho_bin_width_in_fundamentals",
        ["allowed", "fundamental", "must fit below L = 50"],
    ),
    "lensing_train.batch_size": (
        10_000,
        "lensing_train.batch_size",
        ["allowed 1 <= lensing_train.batch_size <= 2000", "scale.lensing.n_training"],
    ),
    "spectra.lmax": (1000, "spectra.lmax", ["1535 <= spectra.lmax <= 30000"]),
    "instrument.table": ("data/no_such_table.csv", "instrument.table", ["no such file", "allowed"]),
    "instrument.target_GHz": (
        150,
        "instrument.target_GHz",
        ["not a channel of the table", "allowed [100.0, 143.0, 217.0]"],
    ),
    "foregrounds.dust.template": ("planck_dust.fits", "foregrounds.dust.template", ["allowed", "dvc add data"]),
    "foregrounds.synchrotron.template": ("haslam.fits", "foregrounds.synchrotron.template", ["dvc add data"]),
    "foregrounds.radio.counts_table": ("counts.csv", "foregrounds.radio.counts_table", ["no such file"]),
    "foregrounds.infrared.counts_table": ("counts.csv", "foregrounds.infrared.counts_table", ["no such file"]),
    "foregrounds.radio.s_max_Jy": (0.005, "foregrounds.radio.s_max_Jy", ["above s_min_Jy"]),
    "foregrounds.infrared.s_min_Jy": (1e-4, "foregrounds.infrared.counts_table", ["outside the table"]),
    "foregrounds.model": (
        "nongaussian",
        "foregrounds.dust.ln_intensity_sigma",
        ["foregrounds.dust.ln_intensity_sigma: missing", "foregrounds.synchrotron.angle_sigma_deg: missing"],
    ),
    "unseen_foregrounds.noise": (False, "unseen_foregrounds.noise", ["allowed only foregrounds.noise = True"]),
    "cenn_simulate.holdout_lon_deg": (
        [0.0, 3.0],
        "cenn_simulate.holdout_lon_deg",
        ["no 6.40 deg patch fits", "allowed hi - lo >"],
    ),
    "cenn_simulate.early_stopping_lon_deg": (
        [60.5, 359.5],
        "cenn_simulate.holdout_lon_deg",
        ["cenn_simulate.early_stopping_lon_deg = [60.5, 359.5]", "leave no sky for Train", "allowed"],
    ),
    "cenn_train.batch_size": (
        5000,
        "cenn_train.batch_size",
        ["cenn_train.batch_size <= 3000", "scale.cenn.n_training"],
    ),
    "cenn_evaluate.apodization_deg": (5.0, "cenn_evaluate.apodization_deg", ["allowed", "a quarter of the cropped"]),
    "cenn_evaluate.bin_width": (35.0, "cenn_evaluate.bin_width", ["allowed", "fundamental"]),
    "cenn_evaluate.residual_ell_ranges": (
        [[2000, 3000]],
        "cenn_evaluate.residual_ell_ranges[0]",
        ["holds no bin", "allowed", "bin centre"],
    ),
    "cenn.components": (["B"], "cenn.components", ["does not match cenn.variant", "allowed ['E']"]),
    "cenn_train.b_mode_weight": (1.0, "cenn_train.b_mode_weight", ["allowed only 0", "needs Q and U"]),
    "cenn_net.architecture": (
        "eb",
        "cenn_net.architecture",
        ["allowed only for the variant with components ['Q', 'U']", "cenn.components = ['E']"],
    ),
    "cenn.spectra": (["BB"], "cenn.spectra", ["does not match cenn.variant", "allowed ['EE']"]),
    "scale.cenn.nside": (500, "scale.cenn.nside", ["allowed powers of two"]),
    "scale.cenn.npix": (60, "scale.cenn.npix", ["allowed multiples of 16"]),
    "scale.cenn.crop_pixels": (40, "scale.cenn.crop_pixels", ["allowed 0 <= scale.cenn.crop_pixels <= 15"]),
    "mlflow.tracking_uri": ("sqlite:////tmp/elsewhere.db", "mlflow.tracking_uri", ["outside the repository"]),
    "executor.scheduler_address": ("localhost:8786", "executor.scheduler_address", ["allowed", "tcp://host:port"]),
    "lensing_net.original.conv_kernels": (
        [3, 4, 3, 3],
        "lensing_net.original.conv_kernels[1] = 4",
        ["allowed odd integers"],
    ),
    "lensing_net.original.conv_filters": (
        [64, 0, 64, 64],
        "lensing_net.original.conv_filters[1] = 0",
        ["allowed integers 1 <= filters <= 4096"],
    ),
    "paths.lensing.metrics": ("/tmp/lensing.json", "paths.lensing.metrics", ["paths must be relative"]),
    "paths.cenn.unseen.patches": ("../outside", "paths.cenn.unseen.patches", ["stay inside the repository"]),
}


@pytest.mark.parametrize("key", sorted(RULES))
def test_each_rule_refuses_naming_the_key_and_what_is_allowed(key, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    value, named, fragments = RULES[key]
    found = problems(_set(DEFAULT, key, value))
    text = "\n".join(found)
    assert any(line.startswith(named) for line in found), f"no problem names {named}:\n{text}"
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} missing from:\n{text}"


def test_a_rule_reports_beside_the_problems_of_other_keys():
    """Checks across keys run on the keys that are valid: every problem is reported at once."""
    found = "\n".join(problems(_set(_set(DEFAULT, "npix", 0), "lensing_train.batch_size", 10_000)))
    assert "npix = 0" in found and "lensing_train.batch_size = 10000" in found


def test_the_nongaussian_foreground_parameters_are_valid():
    check_all(NONGAUSSIAN)


def test_the_unseen_sky_may_not_change_the_instrument_noise(monkeypatch):
    """The unseen sky changes the foregrounds only: its noise switch must be the training sky's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ParamError, match=r"unseen_foregrounds.noise = False: allowed only foregrounds.noise = True"):
        check_all(_set(DEFAULT, "unseen_foregrounds.noise", False))


def test_source_flux_cuts_must_lie_inside_the_counts_table(monkeypatch):
    """The counts tables start at 1 mJy: a fainter cut would extrapolate published counts, so it is refused."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ParamError, match=r"foregrounds.radio.counts_table = .* s_min_Jy = 0.0001.*outside the table"):
        check_all(_set(DEFAULT, "foregrounds.radio.s_min_Jy", 1e-4))


def test_a_dask_executor_needs_a_scheduler_address(monkeypatch):
    """executor.kind = dask with no address in the parameters or the environment is refused before any compute;
    with DASK_SCHEDULER_ADDRESS set it is accepted."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with pytest.raises(ParamError, match=r"executor.scheduler_address = null: executor.kind = dask needs a scheduler"):
        check_all(_set(DEFAULT, "executor.kind", "dask"))
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:8786")
    check_all(_set(DEFAULT, "executor.kind", "dask"))


def test_a_tracking_server_is_an_allowed_tracking_uri(monkeypatch):
    """mlflow.tracking_uri may name a tracking server (http or https) instead of the repository's SQLite file."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    check_all(_set(DEFAULT, "mlflow.tracking_uri", "http://127.0.0.1:5000"))
    with pytest.raises(ParamError, match="or a tracking server"):
        check_all(_set(DEFAULT, "mlflow.tracking_uri", "postgresql://db/mlflow"))


@pytest.mark.parametrize("key", ["lensing_train.strategy", "cenn_train.strategy"])
def test_multi_worker_training_is_refused_with_the_reason(key, monkeypatch):
    """Keras 3's Model.fit fails under MultiWorkerMirroredStrategy: asking for it stops before any compute and
    says why, instead of failing in the first training step on every node."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(
        ParamError,
        match=rf"{key} = 'multi_worker_mirrored': allowed values are single, mirrored; "
        r"Keras 3\.\S+ Model\.fit cannot train under MultiWorkerMirroredStrategy",
    ):
        check_all(_set(DEFAULT, key, "multi_worker_mirrored"))


@pytest.mark.parametrize(
    "dotted", ["lensing_trian", "lensing_train.learnig_rate", "foregrounds.dust.betta", "paths.cenn.unseen.patchez"]
)
def test_a_misspelt_key_is_refused_with_the_key_it_resembles(dotted):
    found = problems(_set(DEFAULT, dotted, 1))
    assert any(line.startswith(f"{dotted}: unknown key (did you mean ") for line in found), found
