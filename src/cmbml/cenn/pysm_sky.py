"""PySM 3 skies (``foregrounds.model: pysm``): Galactic dust and synchrotron from PySM's template-based presets.

PySM (Thorne et al. 2017; Zonca et al. 2021) scales full-sky templates (Q, U at a reference frequency, in uK_RJ)
with per-pixel spectral parameters read from further templates. The presets this project reads are PySM 2's
(``d0``-``d3`` dust, ``s0``-``s3`` synchrotron), whose templates are HEALPix maps at nside 512 under
``pysm_2/`` of PySM's data layout (the file names are PySM's own, read from its ``presets.cfg``). PySM 3's GNILC
presets (``d9``, ``d10``, ``s5`` ...) need templates at nside 2048 or more and are not offered.

Templates are read from the folder ``foregrounds.pysm.data_dir`` (inside the repository, tracked by DVC) through
PySM's local-data mechanism (``PYSM_LOCAL_DATA``), with astropy's downloads switched off: a missing template is
refused before any compute (:func:`missing_templates`), never fetched.

Units. PySM returns uK_RJ; each channel is converted with this project's
:func:`~cmbml.cenn.foregrounds.rj_to_cmb` (for a delta bandpass PySM's own equivalency gives the same factor).
Maps are RING-ordered, Galactic, like every map of this project.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cmbml.common.params import Checker

PRESET_COMPONENTS = {
    "d0": "dust",
    "d1": "dust",
    "d2": "dust",
    "d3": "dust",
    "s0": "synchrotron",
    "s1": "synchrotron",
    "s2": "synchrotron",
    "s3": "synchrotron",
}
"""The PySM presets offered, and the diffuse component (:data:`~cmbml.cenn.foregrounds.COMPONENTS`) each replaces."""

SUPPORTED_PRESETS = tuple(PRESET_COMPONENTS)

MEAN_SED_PRESETS = {"dust": "d0", "synchrotron": "s0"}
"""The preset of each family whose spectral parameters are single numbers: PySM's sky-constant version of that
family (d0: beta 1.54, T 20 K at 353 GHz; s0: index -3 at 23 GHz), the mean SED of d1-d3 and s1-s3."""

FETCH_HINT = "fetch the templates once (docs/cenn.md: PySM skies)"


@functools.cache
def preset_models() -> dict[str, dict[str, Any]]:
    """PySM's preset definitions (``pysm3/data/presets.cfg``), read without importing pysm3 (and numba)."""
    import importlib.util
    import tomllib

    spec = importlib.util.find_spec("pysm3")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pysm3 is not installed: pip install -r requirements.txt")
    cfg = Path(next(iter(spec.submodule_search_locations))) / "data/presets.cfg"  # pysm3/data, not ours
    return tomllib.loads(cfg.read_text())


def preset_templates(preset: str) -> list[str]:
    """The template files of ``preset`` relative to PySM's data folder (``pysm_2/dust_q_new.fits`` ...), in the
    order of ``presets.cfg``: every ``map_*`` entry that names a file rather than a number."""
    return [v for k, v in preset_models()[preset].items() if k.startswith("map_") and isinstance(v, str)]


def missing_templates(presets: Sequence[str], data_dir: str | Path) -> list[tuple[str, str]]:
    """``(preset, template)`` for every template of ``presets`` absent from ``data_dir`` (the template relative to
    it, as :func:`preset_templates` names it)."""
    return [
        (preset, rel) for preset in presets for rel in preset_templates(preset) if not (Path(data_dir) / rel).is_file()
    ]


def missing_message(key: str, missing: list[tuple[str, str]], shown_dir: str | Path) -> str:
    """One line naming the block, the first preset that lacks a template, that file under ``shown_dir`` (the
    folder as the parameters write it) and how many more are missing."""
    preset, rel = missing[0]
    files = dict.fromkeys(r for _, r in missing)  # presets of one family share templates
    more = ""
    if len(files) > 1:
        more = f" (and {len(files) - 1} more of presets {', '.join(dict.fromkeys(p for p, _ in missing))})"
    return f"{key}: preset {preset} needs {Path(shown_dir) / rel}, not found{more}: {FETCH_HINT}"


def check(c: Checker, key: str, reads_files: bool) -> None:
    """What the ``pysm`` block's types cannot show: its folder lies inside ``paths.cenn.data_dir`` (the foreground
    stage's dependency, so that new templates rerun it) and, where the experiment's files are read, holds every
    template of every preset. Problems go to ``c``, one line each."""
    sky, _, name = key.rpartition(".")
    block = (c.params.get(sky) or {}).get(name)  # absent: refused by the schema's rule, not twice
    if not isinstance(block, Mapping) or not isinstance(block.get("data_dir"), str):
        return
    data_dir, tracked = block["data_dir"], c.params.get("paths", {}).get("cenn", {}).get("data_dir")
    folder = (c.workdir / data_dir).resolve()
    if isinstance(tracked, str) and not folder.is_relative_to((c.workdir / tracked).resolve()):
        c.fail(
            f"{key}.data_dir = {data_dir!r}: allowed a folder inside paths.cenn.data_dir = {tracked!r} (tracked by "
            "data.dvc and a dependency of the foreground stage)"
        )
        return
    presets = [p for p in block.get("presets") or [] if p in PRESET_COMPONENTS]
    if reads_files and presets:
        missing = missing_templates(presets, folder)
        if missing:
            c.fail(missing_message(key, missing, data_dir))


@contextlib.contextmanager
def local_data(folder: str | Path) -> Iterator[None]:
    """PySM reads its templates from ``folder`` (``PYSM_LOCAL_DATA``) and astropy downloads nothing meanwhile."""
    from astropy.utils.data import conf

    before = os.environ.get("PYSM_LOCAL_DATA")
    os.environ["PYSM_LOCAL_DATA"] = str(Path(folder).resolve())
    try:
        with conf.set_temp("allow_internet", False):
            yield
    finally:
        if before is None:
            del os.environ["PYSM_LOCAL_DATA"]
        else:
            os.environ["PYSM_LOCAL_DATA"] = before


@dataclass
class PysmEmission:
    """One diffuse component of a PySM sky: ``sky`` is a ``pysm3.Sky`` of its presets, evaluated at ``nside``."""

    sky: Any
    presets: tuple[str, ...]
    nside: int

    def qu_cmb(self, freq_ghz: float, nside: int) -> np.ndarray:
        """(Q, U) (2, 12 nside^2) in uK_CMB at ``freq_ghz`` (a delta bandpass), RING, Galactic; degraded or
        upgraded from PySM's nside with ``healpy.ud_grade`` where the sky's differs."""
        import healpy as hp
        import pysm3.units as u

        from cmbml.cenn.foregrounds import rj_to_cmb

        iqu = self.sky.get_emission(freq_ghz * u.GHz)  # (3, npix) uK_RJ
        qu = np.asarray(iqu[1:3].to_value(u.uK_RJ), dtype=np.float64) * float(rj_to_cmb(freq_ghz))
        del iqu
        if nside != self.nside:
            qu = np.asarray(hp.ud_grade(qu, nside_out=nside, order_in="RING", order_out="RING"), dtype=np.float64)
        return qu


def pysm_components(block: Mapping, nside: int) -> dict[str, PysmEmission]:
    """The PySM emission of each diffuse component named in :data:`PRESET_COMPONENTS` from the ``pysm`` block
    (``presets``, ``nside``: PySM's resolution or null for the sky's ``nside``, ``data_dir``). A component
    without a preset gets none (its maps are zero).

    Raises
    ------
    FileNotFoundError
        A template is missing: the one line of :func:`missing_message` (nothing is downloaded).
    """
    data_dir = Path(block["data_dir"])
    missing = missing_templates(block["presets"], data_dir)
    if missing:
        raise FileNotFoundError(missing_message("foregrounds.pysm", missing, block["data_dir"]))
    import pysm3

    pysm_nside = int(block.get("nside") or nside)
    by_component: dict[str, list[str]] = {}
    for preset in block["presets"]:
        by_component.setdefault(PRESET_COMPONENTS[preset], []).append(preset)
    out = {}
    with local_data(data_dir):
        for name, presets in by_component.items():
            sky = pysm3.Sky(nside=pysm_nside, preset_strings=presets, output_unit="uK_RJ")
            out[name] = PysmEmission(sky, tuple(presets), pysm_nside)
    return out


def mean_sed_rj(presets: Sequence[str], freq_ghz) -> np.ndarray:
    """The SED ``T_RJ(freq) / T_RJ(ref)`` of the dominant family of ``presets`` with its sky-constant parameters
    (:data:`MEAN_SED_PRESETS`): PySM's d0 modified black body for any dust preset, else its s0 power law.

    This is what the dataset gate predicts the channels' common foreground to scale as: at 100-217 GHz and
    |b| > 30 deg polarized dust outshines synchrotron, and d1's beta and T maps scatter about d0's constants
    (PySM built d0 as d1 with its parameters fixed to those values).
    """
    from astropy import units as u

    from cmbml.cenn.foregrounds import dust_sed_rj, synchrotron_sed_rj

    families = {PRESET_COMPONENTS[p] for p in presets}
    family = "dust" if "dust" in families or not families else "synchrotron"
    cfg = preset_models()[MEAN_SED_PRESETS[family]]
    ref = u.Quantity(cfg["freq_ref_P"]).to_value(u.GHz)
    if family == "dust":
        return dust_sed_rj(freq_ghz, ref, float(cfg["map_mbb_index"]), float(cfg["map_mbb_temperature"]))
    return synchrotron_sed_rj(freq_ghz, ref, float(cfg["map_pl_index"]))
