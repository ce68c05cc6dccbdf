"""Expectation suites for the lensing datasets.

Each HDF5 split is reduced to one row per sample (statistics of ``T_lensed`` and
``kappa`` plus a content digest) and one row of file facts (schema, shapes, dtypes,
completion flag, generating parameters). The expected kappa variance is recomputed
from the theory spectrum and the *parameters*, not read from the file, so a dataset
generated with another exaggeration factor fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmbml.gate import GateTable
from cmbml.io import array_digest, sample_rows

REQUIRED = {"train": ("T_lensed", "kappa"), "val": ("T_lensed", "kappa"), "test": ("T_lensed", "kappa", "T_unlensed")}


@dataclass(frozen=True)
class LensingExpectation:
    """What the datasets of one parameter set should look like."""

    npix: int
    n_samples: Mapping[str, int]
    kappa_exaggeration_factor: float
    kappa_variance: float  # expected per-pixel variance of the exaggerated kappa
    kappa_effective_modes: float  # independent modes per map (sets the sampling scatter)
    t_rms: float  # expected rms of T_lensed (signal and noise), uK
    kappa_rms_nsigma: float = 5.0

    @classmethod
    def from_simulator(cls, simulator, n_samples: Mapping[str, int], kappa_rms_nsigma: float) -> LensingExpectation:
        """Expected shapes and statistics from the simulator's parameters and theory spectra (not from files).

        ``simulator`` is a :class:`~cmbml.lensing_sim.LensingSimulator`.
        """
        grid = simulator.grid
        t_var = simulator.cl_tt_grid.sum() / grid.area_sr + simulator.sigma_noise**2
        return cls(
            npix=grid.npix,
            n_samples=dict(n_samples),
            kappa_exaggeration_factor=simulator.config.kappa_exaggeration_factor,
            kappa_variance=simulator.expected_kappa_variance,
            kappa_effective_modes=simulator.kappa_effective_modes,
            t_rms=float(t_var**0.5),
            kappa_rms_nsigma=kappa_rms_nsigma,
        )


def _finite_stat(fn, x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(fn(finite)) if finite.size else np.nan


def sample_table(path: str | Path, split: str, chunk: int = 256):
    """One row per sample: statistics of T_lensed and kappa over their finite pixels, the
    non-finite count and a content digest. An unreadable file gives an empty table."""
    import pandas as pd

    def row(index, s):
        t, k = s["T_lensed"], s["kappa"]
        return {
            "split": split, "index": index,
            "t_mean": _finite_stat(np.mean, t), "t_std": _finite_stat(np.std, t),
            "t_absmax": _finite_stat(lambda x: np.abs(x).max(), t),
            "kappa_var": _finite_stat(np.var, k), "kappa_absmax": _finite_stat(lambda x: np.abs(x).max(), k),
            "nonfinite_count": int((~np.isfinite(t)).sum() + (~np.isfinite(k)).sum()),
            "digest": array_digest(np.stack([t, k]).astype(np.float32)),
        }

    columns = ["split", "index", "t_mean", "t_std", "t_absmax", "kappa_var", "kappa_absmax", "nonfinite_count", "digest"]
    return pd.DataFrame(sample_rows(path, ["T_lensed", "kappa"], row, chunk), columns=columns)


def file_facts(path: str | Path, split: str, expect: LensingExpectation) -> dict:
    """Schema facts of one split file, with the expected values beside them."""
    import h5py

    facts = {
        "split": split,
        "readable": False,
        "complete": False,
        "missing_datasets": ",".join(REQUIRED[split]),
        "n_samples": -1,
        "n_expected": int(expect.n_samples[split]),
        "npix_y": -1,
        "npix_x": -1,
        "npix_expected": int(expect.npix),
        "dtypes": "",
        "shapes_consistent": False,
        "attr_kappa_exaggeration_factor": float("nan"),
        "kappa_exaggeration_factor_expected": float(expect.kappa_exaggeration_factor),
    }
    try:
        with h5py.File(path, "r") as h5:
            facts["readable"] = True
            facts["complete"] = bool(h5.attrs.get("complete", False))
            missing = [name for name in REQUIRED[split] if name not in h5]
            facts["missing_datasets"] = ",".join(missing)
            present = [h5[name] for name in REQUIRED[split] if name in h5]
            if present:
                shape = present[0].shape
                facts["n_samples"] = int(shape[0])
                if len(shape) == 3:
                    facts["npix_y"], facts["npix_x"] = int(shape[1]), int(shape[2])
                facts["shapes_consistent"] = all(d.shape == shape for d in present) and len(shape) == 3
                facts["dtypes"] = ",".join(sorted({str(d.dtype) for d in present}))
            facts["attr_kappa_exaggeration_factor"] = float(h5.attrs.get("kappa_exaggeration_factor", np.nan))
    except (OSError, KeyError, ValueError):
        pass
    return facts


def build_tables(paths: Mapping[str, str | Path], expect: LensingExpectation) -> list[GateTable]:
    """Tables and expectation suites for every split plus the cross-split checks."""
    import great_expectations as gx
    import pandas as pd

    E = gx.expectations
    tables: list[GateTable] = []
    facts = pd.DataFrame([file_facts(paths[s], s, expect) for s in paths])
    tables.append(GateTable("files", facts, [
        E.ExpectColumnValuesToBeInSet(column="readable", value_set=[True]),
        E.ExpectColumnValuesToBeInSet(column="complete", value_set=[True]),
        E.ExpectColumnValuesToBeInSet(column="missing_datasets", value_set=[""]),
        E.ExpectColumnValuesToBeInSet(column="shapes_consistent", value_set=[True]),
        E.ExpectColumnValuesToBeInSet(column="dtypes", value_set=["float32"]),
        E.ExpectColumnPairValuesToBeEqual(column_A="n_samples", column_B="n_expected"),
        E.ExpectColumnPairValuesToBeEqual(column_A="npix_y", column_B="npix_expected"),
        E.ExpectColumnPairValuesToBeEqual(column_A="npix_x", column_B="npix_expected"),
        E.ExpectColumnPairValuesToBeEqual(column_A="attr_kappa_exaggeration_factor",
                                          column_B="kappa_exaggeration_factor_expected"),
    ]))
    samples = {s: sample_table(p, s) for s, p in paths.items()}
    for split, frame in samples.items():
        n = max(len(frame), 1)
        # Mean of per-map kappa variances: relative sampling sigma sqrt(2 / (n_eff * n)).
        rel_sigma = np.sqrt(2.0 / (expect.kappa_effective_modes * n))
        tol = expect.kappa_rms_nsigma * rel_sigma + 0.02  # 2% floor for pixel-window effects
        kvar = expect.kappa_variance
        tables.append(GateTable(f"{split}_samples", frame, [
            E.ExpectTableRowCountToEqual(value=int(expect.n_samples[split])),
            E.ExpectColumnValuesToBeBetween(column="nonfinite_count", min_value=0, max_value=0),
            *[E.ExpectColumnValuesToNotBeNull(column=c) for c in ("t_std", "kappa_var", "digest")],
            # per-map statistics in physical ranges for these parameters
            E.ExpectColumnValuesToBeBetween(column="t_std", min_value=0.3 * expect.t_rms, max_value=3.0 * expect.t_rms),
            E.ExpectColumnValuesToBeBetween(column="t_absmax", min_value=0.0, max_value=10.0 * expect.t_rms),
            E.ExpectColumnValuesToBeBetween(column="kappa_absmax", min_value=0.0,
                                            max_value=12.0 * np.sqrt(kvar) if kvar > 0 else 1e-12),
            # kappa rms consistent with the spectrum times the exaggeration factor
            E.ExpectColumnMeanToBeBetween(column="kappa_var", min_value=kvar * (1 - tol), max_value=kvar * (1 + tol)),
        ]))
    everything = pd.concat(list(samples.values()), ignore_index=True)
    tables.append(GateTable("all_samples", everything, [
        E.ExpectColumnValuesToBeUnique(column="digest"),  # no sample repeated within or across splits
    ]))
    return tables
