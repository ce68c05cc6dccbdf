"""Extragalactic point-source counts from published tables (``data/source_counts/``): differential counts
``dN/dS`` against flux density, their integral ``N(>S)`` and the flux cuts a table supports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SourceCounts:
    """Tabulated differential source counts ``dN/dS`` (Jy^-1 sr^-1) against flux density ``S`` (Jy) at one
    frequency, interpolated in log-log between the rows."""

    flux_jy: np.ndarray
    dn_ds: np.ndarray

    @classmethod
    def read(cls, path) -> SourceCounts:
        """A counts table: CSV with ``#`` comment lines (its source) and columns ``S_Jy, dN_dS``."""
        import csv

        with open(path) as fh:
            rows = list(csv.DictReader(line for line in fh if not line.lstrip().startswith("#")))
        flux, dn_ds = (np.array([float(r[k]) for r in rows]) for k in ("S_Jy", "dN_dS"))
        if flux.size < 2 or np.any(np.diff(flux) <= 0) or np.any(dn_ds <= 0):
            raise ValueError(f"{path}: counts need increasing S_Jy and positive dN_dS in at least two rows")
        return cls(flux, dn_ds)

    def cumulative(self, s_min_jy: float, s_max_jy: float, n_grid: int = 4000) -> tuple[np.ndarray, np.ndarray]:
        """A fine log grid of S between the cuts and ``N(>S) - N(>s_max)`` per sr on it (trapezoids in ln S
        of ``S dN/dS``); ``ValueError`` if the cuts leave the table."""
        if not (self.flux_jy[0] <= s_min_jy < s_max_jy <= self.flux_jy[-1]):
            raise ValueError(
                f"flux cuts [{s_min_jy}, {s_max_jy}] Jy outside the table's "
                f"[{self.flux_jy[0]:g}, {self.flux_jy[-1]:g}] Jy"
            )
        ln_s = np.linspace(np.log(s_min_jy), np.log(s_max_jy), n_grid)
        s_dn_ds = np.exp(ln_s + np.interp(ln_s, np.log(self.flux_jy), np.log(self.dn_ds)))
        steps = 0.5 * (s_dn_ds[1:] + s_dn_ds[:-1]) * np.diff(ln_s)
        return np.exp(ln_s), np.concatenate([np.cumsum(steps[::-1])[::-1], [0.0]])

    def number_above(self, flux_jy, s_max_jy: float) -> np.ndarray:
        """``N(>S) - N(>s_max)`` per sr at each ``flux_jy``."""
        flux_jy = np.atleast_1d(np.asarray(flux_jy, dtype=float))
        grid, n_above = self.cumulative(float(flux_jy.min()), s_max_jy)
        return np.interp(np.log(flux_jy), np.log(grid), n_above)
