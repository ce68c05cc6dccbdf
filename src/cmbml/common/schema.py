"""The parameter schema: shared blocks, the machinery of every experiment's schema, and the whole file.

params.yaml holds the shared blocks (``seed``, ``cosmology``, ``spectra``, ``executor``, ``mlflow``, ``paths``,
``scale``) and the keys of each experiment. Each experiment declares its keys in its own ``schema`` module
(:mod:`cmbml.lensing.schema`, :mod:`cmbml.cenn.schema`) as a :class:`Section`, a pydantic model registered
in :data:`SECTIONS` when that module is imported; :func:`params_model` composes the shared blocks and the
sections asked for. An experiment's setup validates the shared blocks and its own section (unknown keys
refused at every depth inside them; the other experiments' top-level blocks are not its business), and the
glue (``cmbml params check``, and the ``cmbml`` command before any stage runs) validates the whole file with
every section, so that a key unknown anywhere, the top level included, is refused. The library's experiments
never import each other: only the glue names them all.

A field is declared once, with :func:`Param`: its type, its range (``ge``, ``gt``, ``le``, ``lt``), its unit
and meaning (``description``) and, for the experiments it belongs to, its role: ``dataset`` (it decides the
datasets' content and enters their ``params_digest``), ``logged`` (a parameter of the experiment's MLflow
runs) or ``evaluation`` (it sets only the evaluation, which logs it as a tag). :func:`keys_of` reads the
roles back. Checks across keys are methods marked :func:`rule`; they run also when other keys of the file
are invalid, on the keys that are valid, so that every problem is reported at once. :func:`validate_params`
turns pydantic's errors into one line per problem that names its dotted key, its value and what is
allowed, and raises :class:`~cmbml.common.params.ParamError`.

Nothing here imports Keras or TensorFlow: checking parameters stays fast.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from types import SimpleNamespace, UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticUndefined
from pydantic_core.core_schema import ErrorType

from cmbml.common.executors import EXECUTORS, SCHEDULER_SCHEMES
from cmbml.common.params import ParamError, available_options, repository_root
from cmbml.common.registry import Registry

ROLES = ("dataset", "logged", "evaluation")
"""What a key is to an experiment: it decides the datasets' content (and is logged), it is logged as an MLflow
run parameter, or it sets only the evaluation (logged by it as a tag)."""
EVERY = "*"
"""The experiment name that stands for every experiment (for ``seed``, ``cosmology``, ``scale.name``)."""


# ---- context ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a check may read besides the values: the repository, ``conf/``, the raw file.

    Attributes
    ----------
    workdir : Path
        The repository (or DVC's copy of it): files named in the parameters must lie inside it.
    conf_dir : Path
        The Hydra configuration, whose group options are the allowed choices of some keys.
    experiment : str or None
        The experiment that reads the file; the input files of the others (tables in ``data/``) are not
        opened. None: every experiment's (``cmbml params check``).
    params : Mapping
        The raw parameters, for checks written against them.
    """

    workdir: Path = Path(".")
    conf_dir: Path = Path("conf")
    experiment: str | None = None
    params: Mapping[str, Any] = dataclass_field(default_factory=dict)

    def reads_files_of(self, experiment: str) -> bool:
        """Whether the input files of ``experiment`` are opened (those of the experiment reading the file)."""
        return self.experiment is None or self.experiment == experiment

    @classmethod
    def of(cls, info: ValidationInfo | None) -> Context:
        found = info.context if info is not None else None
        return found if isinstance(found, Context) else cls()


# ---- fields --------------------------------------------------------------------------------------------


def Param(
    default: Any = PydanticUndefined,
    *,
    description: str,
    unit: str | None = None,
    why: str | None = None,
    dataset: str | Iterable[str] = (),
    logged: str | Iterable[str] = (),
    evaluation: str | Iterable[str] = (),
    meta: Mapping[str, Any] | None = None,
    **constraints: Any,
) -> Any:
    """A parameter field: pydantic's ``Field`` with the project's metadata.

    Parameters
    ----------
    default : Any
        Only for keys that may be absent (a sky model's own keys); every other key is required, its value
        written once in ``conf/``.
    description : str
        Its meaning, with its unit in words.
    unit : str, optional
        Its unit (``"arcmin"``, ``"GHz"``, ``"uK_RJ^2"``), for readers of the JSON schema.
    why : str, optional
        The reason for its range, appended to an out-of-range message.
    dataset, logged, evaluation : str or iterable of str
        The experiments (or :data:`EVERY`) to which it has this role (:data:`ROLES`); the key of a block
        stands for every key inside it.
    meta : Mapping, optional
        Further metadata an experiment's checks read (JSON-serialisable).
    **constraints
        ``ge``, ``gt``, ``le``, ``lt``, ``multiple_of``, ``min_length`` ...
    """
    roles: dict[str, str] = {}
    for role, experiments in (("logged", logged), ("evaluation", evaluation), ("dataset", dataset)):
        for experiment in [experiments] if isinstance(experiments, str) else experiments:
            roles[experiment] = role
    extra = {k: v for k, v in (("unit", unit), ("why", why), ("roles", roles)) if v} | dict(meta or {})
    return Field(default, description=description, json_schema_extra=extra or None, **constraints)


def field_extra(field: FieldInfo | None, name: str) -> Any:
    """A field's metadata from :func:`Param` (``unit``, ``why``, ``roles``, keys of ``meta``), or None."""
    extra = field.json_schema_extra if field is not None else None
    return extra.get(name) if isinstance(extra, dict) else None


def refuse(text: str, depth: int = 1) -> PydanticCustomError:
    """The error of a refused value; ``text`` says why, with ``{key}`` for the value's dotted key and
    ``{block}`` for that of the block ``depth`` levels up (the model whose check refuses it)."""
    return PydanticCustomError("param", "{text}", {"text": text, "depth": depth})


def _keep_int(value: Any, handler: Callable[[Any], Any]) -> Any:
    checked = handler(value)  # a finite number in range (strict: not a boolean, not a string)
    return value if type(value) is int else checked  # an integer stays one: files and logs show what was written


Number = Annotated[float, WrapValidator(_keep_int)]
"""A finite real number, kept as written (``143`` stays an integer, as in the MLflow logs and the files)."""


def _relative_path(value: Any) -> Path:
    if not isinstance(value, (str, Path)) or not str(value) or Path(value).is_absolute() or ".." in Path(value).parts:
        raise refuse(f"{{key}} = {value!r}: paths must be relative and stay inside the repository")
    return Path(value)


RepoPath = Annotated[Path, BeforeValidator(_relative_path)]
"""A path relative to the repository that stays inside it (a DVC output or a folder of the pipeline)."""


@dataclass(frozen=True)
class ConfChoice:
    """The options of a Hydra config group (``conf/<group>/*.yaml``) as the allowed values of a key."""

    group: str
    fallback: tuple[str, ...] = ()  # where conf/ has no such group

    def options(self, conf_dir: Path) -> list[str]:
        return available_options(self.group, conf_dir) or list(self.fallback)

    def __call__(self, value: str, info: ValidationInfo) -> str:
        options = self.options(Context.of(info).conf_dir)
        if options and value not in options:
            raise refuse(f"{{key}} = {value!r}: allowed values are {', '.join(options)}")
        return value


def conf_choice(group: str, *fallback: str) -> Any:
    """A key whose allowed values are the options of a config group (``lensing_version``: v1 ... v8)."""
    return Annotated[str, AfterValidator(ConfChoice(group, fallback))]


# ---- checks across keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A value refused by a check across keys.

    Attributes
    ----------
    loc : tuple
        Where, from the model the check belongs to (``("lensing_train", "batch_size")``).
    value : Any
        The refused value.
    text : str
        Why, with ``{key}`` for the dotted key of ``loc`` and ``{block}`` for that of the model.
    """

    loc: tuple[str | int, ...]
    value: Any
    text: str

    @classmethod
    def at(cls, dotted: str, value: Any, text: str) -> Problem:
        return cls(tuple(dotted.split(".")), value, text)

    @classmethod
    def out_of_range(
        cls,
        dotted: str,
        value: Any,
        lo: float | None = None,
        hi: float | None = None,
        *,
        lo_open: bool = False,
        hi_open: bool = False,
        why: str = "",
    ) -> Problem:
        """``<key> = <value> is out of range: allowed lo <= <key> <= hi (why)``, with bounds found by a check."""
        return cls.at(dotted, value, range_text("{key}", value, lo, hi, lo_open, hi_open, why))

    def line_error(self) -> InitErrorDetails:
        return InitErrorDetails(type=refuse(self.text, len(self.loc)), loc=self.loc, input=self.value)


def rule(method: Callable[[Any, Context], Iterable[Problem]]) -> Callable[[Any, Context], Iterable[Problem]]:
    """Mark a method of a :class:`Block` as a check across its keys: ``method(self, context)`` yields
    :class:`Problem` s. It also runs when some keys of the block are invalid, on a model that holds the
    valid ones only; a check that reads an invalid key is then skipped (its reading raises AttributeError)."""
    method._is_rule = True  # type: ignore[attr-defined]
    return method


@functools.cache
def _rules_of(cls: type) -> tuple[Callable, ...]:
    """The rules of a model and its bases; one a subclass redefines runs once, sections' namesakes each run."""
    mro = cls.__mro__
    found = []
    for i, base in reversed(list(enumerate(mro))):
        for name, value in vars(base).items():
            if getattr(value, "_is_rule", False) and not any(name in vars(c) and issubclass(c, base) for c in mro[:i]):
                found.append(value)
    return tuple(found)


@functools.cache
def _field_adapter(cls: type[BaseModel], name: str) -> TypeAdapter:
    field = cls.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, field])


_KNOWN_ERRORS = frozenset(get_args(ErrorType))


def _line_error(error: Mapping[str, Any]) -> InitErrorDetails:
    """One of pydantic's errors, raised again (with problems of the checks across keys beside it)."""
    kind, ctx = error["type"], error.get("ctx")
    if kind == "param":
        kind = refuse(ctx["text"], ctx["depth"])
    elif kind not in _KNOWN_ERRORS:
        kind = PydanticCustomError(kind, error["msg"])
    out = InitErrorDetails(type=kind, loc=error["loc"], input=error.get("input"))
    if ctx is not None and isinstance(kind, str):
        out["ctx"] = ctx
    return out


class Block(BaseModel):
    """A block of parameters: unknown keys, values of another type (a string or a boolean for a number, an
    integer for a boolean) and non-finite numbers are refused; a validated block is read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    @model_validator(mode="wrap")
    @classmethod
    def _checks_across_keys(cls, data: Any, handler: Callable[[Any], Any], info: ValidationInfo) -> Any:
        rules = _rules_of(cls)
        if not rules:
            return handler(data)
        context = Context.of(info)
        try:
            model = handler(data)
        except ValidationError as err:
            errors = err.errors()
            valid = cls._valid_part(data, errors, context)
            problems = _run_rules(rules, valid, context, partial=True) if valid is not None else []
            raise ValidationError.from_exception_data(
                cls.__name__, [*map(_line_error, errors), *(p.line_error() for p in problems)]
            ) from None
        problems = _run_rules(rules, model, context, partial=False)
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, [p.line_error() for p in problems])
        return model

    @classmethod
    def _valid_part(cls, data: Any, errors: list, context: Context) -> Block | None:
        """The block with only its valid keys (checks across keys read those), None if it is no mapping."""
        if not isinstance(data, Mapping) or any(not e["loc"] for e in errors):
            return None
        failing = {e["loc"][0] for e in errors}
        values = {}
        for name, field in cls.model_fields.items():
            if name in failing:
                continue
            if name in data:
                try:
                    values[name] = _field_adapter(cls, name).validate_python(data[name], strict=True, context=context)
                except ValidationError:
                    failing.add(name)
            elif not field.is_required():
                values[name] = field.get_default(call_default_factory=True)
        valid = cls.model_construct(**values)
        for name in failing:  # absent, not its default: a check reading it is skipped
            valid.__dict__.pop(name, None)
        return valid


def _run_rules(rules: Iterable[Callable], model: Block, context: Context, partial: bool) -> list[Problem]:
    problems: list[Problem] = []
    for check in rules:
        try:
            problems += list(check(model, context))
        except AttributeError:
            if not partial:
                raise  # on a valid block every key is there: a bug, not an invalid key
    return problems


# ---- messages ----------------------------------------------------------------------------------------


def dotted(loc: Iterable[str | int]) -> str:
    """``("cenn_evaluate", "residual_ell_ranges", 0)`` -> ``cenn_evaluate.residual_ell_ranges[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def bounds_text(key: str, lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    """``1 <= key <= 16``, ``0 < key <= 10``, ``1 <= key``."""
    text = key
    if lo is not None:
        text = f"{lo:g} {'<' if lo_open else '<='} {text}"
    if hi is not None:
        text = f"{text} {'<' if hi_open else '<='} {hi:g}"
    return text


def range_text(
    key: str,
    value: Any,
    lo: float | None,
    hi: float | None,
    lo_open: bool = False,
    hi_open: bool = False,
    why: str = "",
) -> str:
    """The message of a number out of its range (``why`` gives the reason for the range)."""
    return f"{key} = {value!r} is out of range: allowed {bounds_text(key, lo, hi, lo_open, hi_open)}" + (
        f" ({why})" if why else ""
    )


def field_bounds(field: FieldInfo | None) -> tuple[float | None, float | None, bool, bool]:
    """``(lo, hi, lo_open, hi_open)`` of a field's static range."""
    lo = hi = None
    lo_open = hi_open = False
    for m in field.metadata if field is not None else ():
        if isinstance(m, Ge):
            lo = m.ge
        elif isinstance(m, Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, Le):
            hi = m.le
        elif isinstance(m, Lt):
            hi, hi_open = m.lt, True
    return lo, hi, lo_open, hi_open


def strip_type(tp: Any) -> Any:
    """The type under ``Annotated`` and ``X | None``."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, UnionType) and len(get_args(tp)) == 2 and type(None) in get_args(tp):
            tp = next(a for a in get_args(tp) if a is not type(None))
        else:
            return tp


def model_of(tp: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (through ``Annotated`` and ``| None``), or None."""
    tp = strip_type(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def lookup(root: type[BaseModel], loc: Iterable[str | int]) -> tuple[FieldInfo | None, Any, type[BaseModel] | None]:
    """The field at ``loc``, the type there (a list's item for an index) and the model that holds the field."""
    tp: Any = root
    field: FieldInfo | None = None
    parent: type[BaseModel] | None = None
    for part in loc:
        tp = strip_type(tp)
        if isinstance(part, int):
            args = get_args(tp)
            tp = args[0] if args else Any
            continue
        model = model_of(tp)
        if model is None:
            return None, None, parent
        parent, field = model, model.model_fields.get(part)
        if field is None:
            return None, None, parent
        tp = field.annotation
    return field, tp, parent


_NUMBER_ERRORS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a number",
}
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def describe(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    """One of pydantic's errors as a line that names the dotted key, its value and what is allowed."""
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    key = dotted(loc) or "the file"
    field, tp, parent = lookup(root, loc)
    described = f"; {field.description}" if field is not None and field.description else ""
    if kind == "param":
        ctx = error["ctx"]
        block = dotted(loc[: max(len(loc) - ctx["depth"], 0)])
        return ctx["text"].replace("{key}", key).replace("{block}", block)
    if kind == "extra_forbidden":
        names = list(parent.model_fields) if parent is not None else []
        near = difflib.get_close_matches(str(loc[-1]), names, n=1)
        where = dotted(loc[:-1]) or "the top level"
        return (
            f"{key}: unknown key{f' (did you mean {near[0]}?)' if near else ''}; allowed keys in {where}: "
            f"{', '.join(names) or 'none (an empty block)'}"
        )
    if kind == "missing":
        return f"{key}: missing{described}"
    lo, hi, lo_open, hi_open = field_bounds(field)
    why = field_extra(field, "why")
    if kind in _RANGE_ERRORS:
        ctx = error.get("ctx", {})
        if lo is None and hi is None:  # a bound of a foreign model's type: pydantic names the one crossed
            lo, lo_open = ctx.get("ge", ctx.get("gt")), "gt" in ctx
            hi, hi_open = ctx.get("le", ctx.get("lt")), "lt" in ctx
        return range_text(key, value, lo, hi, lo_open, hi_open, why or "")
    if kind == "multiple_of":
        step = error.get("ctx", {}).get("multiple_of")
        return (
            f"{key} = {value!r}: allowed multiples of {step}{f' ({why})' if why else ''}, "
            f"{bounds_text(key, lo, hi, lo_open, hi_open)}"
        )
    if kind in _NUMBER_ERRORS:
        kind_text = _NUMBER_ERRORS[kind]
        allowed = (
            bounds_text(key, lo, hi, lo_open, hi_open)
            if (lo, hi) != (None, None)
            else f"any {kind_text.split(' ', 1)[1]}"
        )
        if value is None:
            return f"{key} = null: a value is required, allowed {allowed}"
        return f"{key} = {value!r}: must be {kind_text}, allowed {allowed}"
    if kind == "literal_error":
        choices = get_args(strip_type(tp)) if get_origin(strip_type(tp)) is Literal else ()
        allowed = ", ".join(map(str, choices)) if choices else error.get("ctx", {}).get("expected", "")
        return f"{key} = {value!r}: allowed values are {allowed}"
    if kind == "bool_type":
        return f"{key} = {value!r}: allowed true or false"
    if kind in ("string_type", "string_too_short"):
        return f"{key} = {value!r}: allowed a non-empty string{described}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        block = model_of(tp)
        keys = f" with the keys {', '.join(block.model_fields)}" if block is not None else ""
        return f"{key} = {value!r}: allowed a block{keys}"
    if kind in ("value_error", "assertion_error"):
        why = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        block = model_of(tp)
        first = re.match(r"\w+", why)
        named = block is not None and first is not None and first[0] in block.model_fields
        return f"{key}.{why}" if named else f"{key}: {why}"  # a block's check that names one of its keys
    return (
        f"{key} = {value!r}: {error['msg'][:1].lower()}{error['msg'][1:]}; allowed: {described[2:] or 'see the schema'}"
    )


# ---- experiments' sections and network blocks -------------------------------------------------------


class Section(Block):
    """The top-level keys of one experiment, its checks across them, and what it adds to the shared blocks.

    A subclass sets :attr:`experiment`, may add fields to shared blocks through :attr:`extends` (``{"scale":
    a model with the field ``lensing``}``) and may define ``spectra_lmax_need(self) -> int``, the highest
    multipole its simulations read from the CAMB table; it is registered in :data:`SECTIONS`.
    """

    experiment: ClassVar[str] = ""
    extends: ClassVar[Mapping[str, type[BaseModel]]] = {}


SECTIONS: Registry[type[Section]] = Registry("parameter section")
"""Every experiment's :class:`Section`, by experiment name; filled by importing ``cmbml.<experiment>.schema``."""


class NetworkBlock(Block):
    """A network block ``{architecture: <name>, <name>: {...}}``: the chosen architecture and one settings
    block (that architecture's ``Params``) per registered architecture."""

    registry: ClassVar[Registry]

    @property
    def params(self) -> BaseModel:
        """The chosen architecture's validated settings (its defaults where its block is absent)."""
        block = getattr(self, self.architecture)
        return block if block is not None else self.registry[self.architecture].Params()

    @rule
    def _chosen_block(self, context: Context) -> Iterator[Problem]:
        if getattr(self, self.architecture) is None:
            try:
                self.registry[self.architecture].Params()
            except ValidationError:
                yield Problem(
                    (self.architecture,),
                    None,
                    f"{{key}}: missing; the architecture {self.architecture!r} needs its settings block",
                )


def architecture_params(block: Mapping[str, Any], registry: Registry) -> BaseModel:
    """The chosen architecture's validated ``Params`` from a network block ``{architecture: name, name: {...}}``
    outside a parameter file (an unknown name is a KeyError naming the parameter and the registered names)."""
    name = block["architecture"]
    return registry[name].Params.model_validate(block.get(name) or {})


def network_block(registry: Registry, name: str, module: str, description: str) -> type[NetworkBlock]:
    """The model of a network block whose architectures are the entries of ``registry`` (each with ``Params``)."""
    names = tuple(registry.names())
    namespace: dict[str, Any] = {
        "__module__": module,
        "__qualname__": name,
        "registry": registry,
        "__doc__": f"{description}: ``architecture`` names one of {', '.join(names)}; one block per architecture.",
        "__annotations__": {"architecture": Literal[names], **{n: registry[n].Params | None for n in names}},
        "architecture": Param(
            description=f"the network, a name of {registry.key.split('.')[0]} architectures: " + ", ".join(names)
        ),
    }
    for n in names:
        doc = (registry[n].__doc__ or "").strip().split("\n")[0]
        namespace[n] = Param(None, description=f"settings of the {n!r} architecture{': ' + doc if doc else ''}")
    return type(name, (NetworkBlock,), namespace)


# ---- shared blocks -------------------------------------------------------------------------------------

OPTIMIZERS = ("adam", "sgd", "adagrad", "rmsprop")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("single", "mirrored")
"""tf.distribute strategies: one device; one replica per GPU of this node (Mirrored). Not MultiWorkerMirrored:
Keras 3's Model.fit fails under it (upstream keras-team/keras#20585)."""


def _keras_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras")
    except PackageNotFoundError:
        return "3"


def _one_node(value: Any) -> Any:
    if value == "multi_worker_mirrored":
        raise refuse(
            f"{{key}} = 'multi_worker_mirrored': allowed values are {', '.join(STRATEGIES)}; Keras "
            f"{_keras_version()} Model.fit cannot train under MultiWorkerMirroredStrategy (its first batch and "
            "its metrics are reduced across workers in ways TensorFlow refuses)"
        )
    return value


class Cosmology(Block):
    """The flat LambdaCDM cosmology of the CAMB table (Planck 2018 by default)."""

    H0: Number = Param(ge=20, le=150, unit="km/s/Mpc", description="Hubble constant, km/s/Mpc")
    ombh2: Number = Param(ge=0.005, le=0.1, description="physical baryon density Omega_b h^2")
    omch2: Number = Param(ge=0.01, le=0.99, description="physical cold dark matter density Omega_c h^2")
    tau: Number = Param(ge=0.01, le=0.8, description="optical depth to reionization")
    As: Number = Param(ge=1e-10, le=1e-8, description="primordial scalar amplitude at k = 0.05 / Mpc")
    ns: Number = Param(ge=0.5, le=1.5, description="primordial scalar spectral index")
    mnu: Number = Param(ge=0.0, le=3.0, unit="eV", description="sum of the neutrino masses, eV")
    r: Number = Param(ge=0.0, le=1.0, description="tensor-to-scalar ratio")


class Spectra(Block):
    """The CAMB table every simulation reads."""

    lmax: int = Param(
        ge=100,
        le=30000,
        description=(
            "highest multipole of the CAMB table; at least what every simulation needs (spectra_lmax_need of each "
            "experiment: the lensing band limits, 3 nside - 1 of the CENN skies)"
        ),
    )


def _scheduler_address(value: str | None) -> str | None:
    if value is not None and not value.startswith(SCHEDULER_SCHEMES):
        raise refuse(
            f"{{key}} = {value!r}: allowed a Dask scheduler address "
            f"({' or '.join(s + 'host:port' for s in SCHEDULER_SCHEMES[:2])}) or null"
        )
    return value


class Executor(Block):
    """Where the simulation stages run; their files are byte-identical whatever runs them."""

    kind: Literal[tuple(EXECUTORS)] = Param(
        description=("local: <stage>.workers forked processes; dask: the workers of a dask.distributed scheduler")
    )
    scheduler_address: Annotated[str | None, AfterValidator(_scheduler_address)] = Param(
        description=("Dask scheduler, tcp://host:port; null reads DASK_SCHEDULER_ADDRESS from the environment")
    )

    @rule
    def _dask_needs_a_scheduler(self, context: Context) -> Iterator[Problem]:
        if self.kind == "dask" and self.scheduler_address is None and not os.environ.get("DASK_SCHEDULER_ADDRESS"):
            yield Problem(
                ("scheduler_address",),
                None,
                "{key} = null: {block}.kind = dask needs a scheduler, allowed tcp://host:port "
                "(or DASK_SCHEDULER_ADDRESS in the environment)",
            )

    def spec(self, workers: int):
        """The :class:`~cmbml.common.executors.ExecutorSpec` of a stage with ``workers`` local processes."""
        from cmbml.common.executors import ExecutorSpec

        return ExecutorSpec(kind=self.kind, workers=int(workers), scheduler_address=self.scheduler_address)


def _tracking_uri(uri: str) -> str:
    if "MLFLOW_TRACKING_URI" in os.environ or uri.startswith(("http://", "https://")):
        return uri  # the environment wins; or a tracking server (docs/beyond-one-machine.md)
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        raise refuse(
            f"{{key}} = {uri!r}: allowed a SQLite store inside the repository, sqlite:///<file>, "
            "or a tracking server, http(s)://host:port"
        )
    root = repository_root()
    path = (root / uri[len(prefix) :]).resolve()
    if not path.is_relative_to(root):
        raise refuse(
            f"{{key}} = {uri!r}: resolves to {path}, outside the repository {root}; "
            "allowed a SQLite file inside it, e.g. sqlite:///mlflow.db"
        )
    return uri


class Mlflow(Block):
    """The MLflow store; each experiment adds its MLflow experiment and registered-model names."""

    tracking_uri: Annotated[str, AfterValidator(_tracking_uri)] = Param(
        min_length=1,
        description=(
            "MLflow store: sqlite:///<file> inside the repository or http(s)://host:port; MLFLOW_TRACKING_URI wins"
        ),
    )


class SpectraPaths(Block):
    """The CAMB table's files."""

    dir: RepoPath = Param(description="folder of the spectra stage's outputs")
    camb_cls: RepoPath = Param(description="the CAMB table (CSV: ell, C_ell in uK^2)")
    plots: RepoPath = Param(description="folder of the spectra figure")


class Paths(Block):
    """Every dataset, model, metrics, plot and report path, relative to the repository (dvc.yaml reads
    them too); each experiment adds its block."""

    data_docs: RepoPath = Param(
        description=("folder of the HTML Data Docs of every validation gate, as <data_docs>/<stage>/<experiment>")
    )
    spectra: SpectraPaths = Param(description="the CAMB table's files")


ScaleName = conf_choice("scale")
"""A scale, an option of conf/scale."""


class Scale(Block):
    """Sample sizes and epochs (conf/scale): smoke, default or paper; each experiment adds its block."""

    name: ScaleName = Param(logged=EVERY, description=("the scale, an option of conf/scale"))


class TrainBase(Block):
    """Training settings every experiment has."""

    optimizer: Literal[OPTIMIZERS] = Param(description="Keras optimizer")
    learning_rate: Number = Param(gt=0.0, le=10.0, description="the optimizer's learning rate")
    lr_schedule: Literal["constant", "cosine"] = Param(
        description=(
            "learning rate over training: constant, or cosine (from learning_rate to 0 over the scale's epochs)"
        )
    )
    augment: bool = Param(
        description=(
            "random 8-fold rotations and flips of each (input, label) pair; Stokes Q and U turn as spin-2 fields"
        )
    )
    batch_size: int = Param(
        ge=1, description=("global batch (all replicas together), samples; at most the training set")
    )
    precision: Literal[PRECISIONS] = Param(
        description=("Keras dtype policy: float32, or half-precision compute with float32 weights")
    )
    strategy: Annotated[Literal[STRATEGIES], BeforeValidator(_one_node)] = Param(
        description=("tf.distribute strategy: single (one device) or mirrored (one replica per GPU of this node)")
    )


class Shared(Block):
    """The blocks every experiment reads."""

    seed: int = Param(
        ge=0, le=2**63 - 1, dataset=EVERY, description=("master seed: every sample's generator is derived from it")
    )
    cosmology: Cosmology = Param(dataset=EVERY, description="cosmology of the CAMB table")
    spectra: Spectra = Param(description="the CAMB table")
    executor: Executor = Param(description="where the simulations run (not a parameter of their files)")
    mlflow: Mlflow = Param(description="the MLflow store and each experiment's names in it")
    paths: Paths = Param(description="every path of the pipeline, relative to the repository")
    scale: Scale = Param(description="sample sizes and epochs of each experiment")

    def required_spectra_lmax(self) -> int:
        """Highest multipole the simulations need from CAMB: the largest ``spectra_lmax_need`` of the sections."""
        needs = [100]
        for cls in type(self).__mro__:
            need = vars(cls).get("spectra_lmax_need")
            if need is not None:
                needs.append(int(need(self)))
        return max(needs)

    @rule
    def _spectra_cover_the_simulations(self, context: Context) -> Iterator[Problem]:
        lmax, need = self.spectra.lmax, self.required_spectra_lmax()
        if lmax < need:
            hi = field_bounds(Spectra.model_fields["lmax"])[1]
            yield Problem.at(
                "spectra.lmax",
                lmax,
                f"{{key}} = {lmax}: the simulations need CAMB spectra to ell = "
                f"{need}; allowed {bounds_text('{key}', need, hi)}",
            )


# ---- the whole file ------------------------------------------------------------------------------------

EXTENSIBLE = ("scale", "paths", "mlflow")
"""The shared blocks to which each experiment adds its own keys (:attr:`Section.extends`)."""


@functools.cache
def params_model(experiments: tuple[str, ...] | None = None) -> type[Block]:
    """The model of params.yaml: the shared blocks and the sections of ``experiments``.

    ``None``: every registered section (those whose schema module is imported), and no other top-level key
    is allowed: the whole file, as the glue checks it. With names, the model holds those sections and ignores
    the other top-level blocks (another experiment's), while refusing unknown keys inside its own blocks.
    """
    whole = experiments is None
    names = sorted(SECTIONS.names()) if whole else sorted(experiments)
    sections = [SECTIONS[name] for name in names]
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": "ParamsFile",
        "__annotations__": {},
        "__doc__": "Keys of params.yaml: " + ", ".join(["shared blocks", *names]),
    }
    if not whole:
        namespace["model_config"] = ConfigDict(**{**Block.model_config, "extra": "ignore"})
    for name, field in Shared.model_fields.items():
        parts = [s.extends[name] for s in sections if name in s.extends]
        if parts or (not whole and name in EXTENSIBLE):  # a shared block with each experiment's keys
            base = model_of(field.annotation)
            body = {"__module__": __name__, "__doc__": base.__doc__}
            if not whole:  # the other experiments' keys of the block are theirs (the whole file's check sees them)
                body["model_config"] = ConfigDict(**{**Block.model_config, "extra": "ignore"})
            # bases after the parts: pydantic orders fields from the last base on (the shared keys first)
            namespace["__annotations__"][name] = type(base.__name__, (*reversed(parts), base), body)
            namespace[name] = Param(description=field.description, **_roles_kwargs(field))
    return type("ParamsFile", (*reversed(sections), Shared), namespace)


def _roles_kwargs(field: FieldInfo) -> dict[str, tuple[str, ...]]:
    roles = field_extra(field, "roles") or {}
    return {role: tuple(e for e, r in roles.items() if r == role) for role in ROLES}


def validate_params(
    params: Any,
    conf_dir: str | Path = "conf",
    source: str = "params.yaml",
    experiment: str | None = None,
    workdir: str | Path = ".",
    files_of: str | None = None,
) -> Block:
    """The validated parameters of a whole file.

    Parameters
    ----------
    params : Mapping
        The parameters as read from the file.
    conf_dir : str or Path
        The Hydra configuration (the choices of ``lensing_version``, ``cenn.variant``, ``scale.name`` ...).
    source : str
        Where the parameters come from, for the message.
    experiment : str, optional
        The experiment that reads them: the shared blocks and its section are validated (the other top-level
        blocks are left to the glue's check of the whole file), and the input files of no other experiment
        are opened. None: the whole file, with every registered section.
    files_of : str, optional
        With ``experiment`` None: the experiment whose input files are opened (a stage about to run checks the
        whole file but needs only its own experiment's files: ``data/`` may be absent for a lensing run).
    workdir : str or Path
        The repository: files named in the parameters must lie inside it.

    Raises
    ------
    ParamError
        Listing every problem, one line each, naming its dotted key.
    """
    if not isinstance(params, Mapping):
        raise ParamError([f"{source}: allowed a mapping of parameter blocks, got {type(params).__name__}"], source)
    model = params_model(None if experiment is None else tuple(e for e in (experiment,) if e in SECTIONS))
    context = Context(Path(workdir), Path(conf_dir), experiment if experiment is not None else files_of, params)
    try:
        return model.model_validate(params, context=context)
    except ValidationError as err:
        raise ParamError(list(dict.fromkeys(describe(e, model) for e in err.errors())), source) from None


# ---- what the schema says of each key -------------------------------------------------------------------


def _role_of(field: FieldInfo, experiment: str) -> str | None:
    roles = field_extra(field, "roles") or {}
    return roles.get(experiment) or roles.get(EVERY)


def _keys(model: type[BaseModel], prefix: str, experiment: str, role: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        key, have = f"{prefix}{name}", _role_of(field, experiment)
        if have is not None and (role == "logged" or have == role):
            yield key
            continue
        sub = model_of(field.annotation)
        if sub is not None:
            yield from _keys(sub, f"{key}.", experiment, role)


@functools.cache
def keys_of(experiment: str, role: str) -> tuple[str, ...]:
    """The dotted keys that have ``role`` for ``experiment``, read from the schema's field metadata.

    ``dataset``: the keys that decide the datasets' content (their ``params_digest``); ``evaluation``: those that
    set only the evaluation; ``logged``: every key of the experiment (what its MLflow runs log), a block's key
    standing for the keys inside it.
    """
    if role not in ROLES:
        raise ValueError(f"role {role!r}: allowed {', '.join(ROLES)}")
    return tuple(_keys(params_model((experiment,)), "", experiment, role))


class SchemaKeys:
    """A class attribute holding :func:`keys_of` ``(experiment, role)``, read on first use."""

    def __init__(self, experiment: str, role: str):
        self.experiment, self.role = experiment, role

    def __get__(self, instance: Any, owner: type | None = None) -> tuple[str, ...]:
        return keys_of(self.experiment, self.role)


# ---- views -------------------------------------------------------------------------------------------


class Merged:
    """Several validated blocks (and named values) read as one object: the first that has an attribute gives it.

    ``Merged(params.lensing_train, params.scale.lensing)`` is the lensing training settings with the scale's
    epochs; ``Merged(params.paths.lensing, camb_cls=..., data_docs=...)`` the lensing paths with the shared ones.
    """

    __slots__ = ("_parts",)

    def __init__(self, *parts: Any, **named: Any):
        object.__setattr__(self, "_parts", ((SimpleNamespace(**named),) if named else ()) + parts)

    def __getattr__(self, name: str) -> Any:
        if name == "_parts" or name.startswith("__"):  # copy and pickle protocols are the view's own
            raise AttributeError(name)
        for part in self._parts:
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(f"{name!r}: not among {', '.join(sorted(self.__dir__()))}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __dir__(self) -> list[str]:
        names = set()
        for part in self._parts:
            names |= set(type(part).model_fields) if isinstance(part, BaseModel) else set(vars(part))
        return sorted(names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Merged) and self._parts == other._parts

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):
        return _merged, (self._parts,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__dir__())})"


def _merged(parts: tuple) -> Merged:
    out = Merged()
    object.__setattr__(out, "_parts", parts)
    return out
