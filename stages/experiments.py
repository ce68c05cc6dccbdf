"""Both experiments at once: the check of the whole params.yaml behind ``cmbml params check``, which the
``cmbml`` command also runs before any stage.

The library's experiments never import each other, so each setup validates only the shared blocks and its
own keys; this glue module names every experiment's schema, so that a key unknown anywhere in the file (a
misspelt top-level block included) is refused before any stage computes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


class SpaceError(ValueError):
    """A stage's outputs (or working set) would not fit: the parameters that set the size, the size and the room."""


@dataclass(frozen=True)
class StageNeeds:
    """What a stage writes and holds, estimated from the parameters before it runs.

    Attributes
    ----------
    disk_bytes : float
        Its outputs (float32 arrays; HDF5 and FITS overheads are small beside them).
    memory_bytes : float
        The arrays it holds at once (full-sky maps, alms), beside the interpreter and libraries.
    folder : str
        Where the outputs go (its free space is checked).
    keys : str
        The parameters that set the size, with their values.
    """

    disk_bytes: float
    memory_bytes: float
    folder: str
    keys: str


LENSING_SIZED = ("lensing_simulate",)
CENN_SIZED = (
    "cmb_maps",
    "foregrounds@training",
    "foregrounds@unseen",
    "cenn_simulate@training",
    "cenn_simulate@unseen",
    "cenn_separate",
)


def stage_needs(params: Mapping[str, Any], experiments: Sequence[str] = ("lensing", "cenn")) -> dict[str, StageNeeds]:
    """Disk and memory of the stages whose size grows with the parameters (simulation, full-sky maps), from a checked
    params file, for the ``experiments`` asked (a lensing stage never opens the CENN instrument table, which a
    lensing-only checkout need not hold)."""
    from cmbml.cenn.simulate import read_instrument

    f32, f64 = 4, 8
    out = {}
    sl, npix = params["scale"]["lensing"], params["npix"]
    n_tr, n_es, n_ev = sl["n_training"], sl["n_early_stopping"], sl["n_evaluation"]
    chunk, over = params["lensing_simulate"]["chunk_samples"], params["lensing_simulate"]["oversampling"]
    out["lensing_simulate"] = StageNeeds(
        f32 * npix**2 * (2 * n_tr + 2 * n_es + 3 * n_ev),  # T_lensed, kappa (and T_unlensed for evaluation)
        f64 * chunk * (over * npix) ** 2 * 8 * params["lensing_simulate"]["workers"],  # a chunk in flight per worker
        params["paths"]["lensing"]["datasets"],
        f"scale.lensing.n_training = {n_tr}, n_early_stopping = {n_es}, n_evaluation = {n_ev}, npix = {npix}",
    )
    if "cenn" not in experiments:
        return out
    sc = params["scale"]["cenn"]
    nside, p = sc["nside"], sc["npix"]
    sky = 12 * nside**2
    n_ch = len(read_instrument(params["instrument"]["table"]))
    n_comp, n_real = len(params["cenn"]["components"]), params["cmb_maps"]["n_realisations"]
    paths = params["paths"]["cenn"]
    out["cmb_maps"] = StageNeeds(
        f32 * 3 * sky * n_real,
        f64 * 3 * sky * 4,
        paths["cmb"],
        f"cmb_maps.n_realisations = {n_real}, scale.cenn.nside = {nside}",
    )
    for key, folder in (("training", paths["foregrounds"]), ("unseen", paths["unseen"]["foregrounds"])):
        out[f"foregrounds@{key}"] = StageNeeds(
            f32 * 2 * sky * n_ch, f64 * 2 * sky * 10, folder, f"scale.cenn.nside = {nside}"
        )  # components, spectral-parameter maps and one channel's total at once
    patch = f32 * p * p * (n_ch + 1) * n_comp
    # the beamed skies of every CMB realisation and component held for the cutting
    held = f32 * sky * n_real * n_comp * (n_ch + 1) + f64 * 2 * sky * n_ch
    keys = (
        f"scale.cenn.nside = {nside}, npix = {p}, n_training = {sc['n_training']}, cmb_maps.n_realisations = {n_real}"
    )
    out["cenn_simulate@training"] = StageNeeds(
        patch * (sc["n_training"] + sc["n_early_stopping"] + sc["n_evaluation"]), held, paths["patches"], keys
    )
    out["cenn_simulate@unseen"] = StageNeeds(patch * sc["n_evaluation"], held, paths["unseen"]["patches"], keys)
    out["cenn_separate"] = StageNeeds(
        f32 * sky * (2 * n_ch + 2 + 4 * n_comp + 2),
        f64 * sky * (2 * n_ch + 6 * n_comp) * 2,
        paths["fullsky"],
        f"scale.cenn.nside = {nside}",
    )
    return out


def _free_bytes(folder: str | Path) -> float:
    """Free space of the file system that holds ``folder`` (its nearest existing ancestor)."""
    import shutil

    path = Path(folder).resolve()
    while not path.exists():
        path = path.parent
    return float(shutil.disk_usage(path).free)


def _available_memory_bytes() -> float | None:
    """MemAvailable of /proc/meminfo (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def check_space(params: Mapping[str, Any], stages: Sequence[str] | None = None) -> None:
    """Refuse, before any compute, a stage whose outputs would not fit in the free space of their folder or whose
    arrays would not fit in the available memory: :class:`SpaceError` naming the parameters, the size and the room.
    ``stages``: those to check (default every stage :func:`stage_needs` knows)."""
    if stages is None:
        needs = stage_needs(params)
    elif not set(stages) & {*LENSING_SIZED, *CENN_SIZED}:
        return
    else:
        needs = stage_needs(params, ["cenn"] if set(stages) & set(CENN_SIZED) else ["lensing"])
    memory = _available_memory_bytes()
    for stage in stages if stages is not None else needs:
        if stage not in needs:
            continue
        need = needs[stage]
        free = _free_bytes(need.folder)
        if need.disk_bytes > 0.95 * free:
            raise SpaceError(
                f"{stage}: {need.keys} make about {_size(need.disk_bytes)} of outputs in {need.folder}/, where "
                f"{_size(free)} is free; lower them or free space"
            )
        if memory is not None and need.memory_bytes > 0.9 * memory:
            raise SpaceError(
                f"{stage}: {need.keys} need about {_size(need.memory_bytes)} of memory, {_size(memory)} is available; "
                "lower them or run on a larger machine"
            )
