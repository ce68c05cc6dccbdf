"""What a lensing network is given: its input channels, made from lensed T maps.

A channel is a name of :data:`CHANNELS`. ``T`` is the lensed temperature map itself; ``kappa_qe`` is the
Wiener-filtered TT quadratic estimate of kappa, ``C^kk / (C^kk + N0)`` times the normalised estimate, computed
from the same T map with the estimator of the version's sky (:func:`cmbml.lensing.evaluation.sky_estimator`).
A network that takes derived channels stores what makes them (:meth:`InputMaker.to_card`) in its model card,
so ``cmbml predict`` rebuilds them from T alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmbml.lensing.quadratic_estimator import QuadraticEstimator, shell_average

CHANNELS = {
    "T": "lensed CMB temperature, uK_CMB",
    "kappa_qe": (
        "Wiener-filtered TT quadratic estimate of kappa (dimensionless, times the exaggeration factor), "
        "made from T by the estimator stored in the model card"
    ),
}


@dataclass(frozen=True, eq=False)
class InputMaker:
    """Makes a network's input channels from lensed T maps.

    Attributes
    ----------
    channels : tuple of str
        Names of :data:`CHANNELS`, in the network's channel order.
    estimator : QuadraticEstimator, optional
        Needed by ``kappa_qe``.
    cl_kk : numpy.ndarray, optional
        The kappa power per shell of grid modes (band limit and exaggeration included), for the Wiener filter.
    """

    channels: tuple[str, ...]
    estimator: QuadraticEstimator | None = None
    cl_kk: np.ndarray | None = None

    def __post_init__(self):
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown input channel(s) {unknown}; allowed {', '.join(CHANNELS)}")
        if "kappa_qe" in self.channels and (self.estimator is None or self.cl_kk is None):
            raise ValueError("the kappa_qe channel needs the quadratic estimator and the kappa power")

    @property
    def derived(self) -> bool:
        """Whether any channel is made from T (rather than being T)."""
        return self.channels != ("T",)

    @classmethod
    def for_sky(
        cls, channels: Sequence[str], estimator: QuadraticEstimator | None, cl_kk_grid: np.ndarray | None
    ) -> InputMaker:
        """From the kappa power on the grid ((npix, npix), as :meth:`LensingSimConfig.kappa_power_on_grid`)."""
        cl_kk = None if cl_kk_grid is None or estimator is None else shell_average(estimator.grid, cl_kk_grid)
        return cls(tuple(channels), estimator, cl_kk)

    def __call__(self, t_maps: np.ndarray) -> np.ndarray:
        """Channels (N, npix, npix, n_channels) float32 from T maps (N, npix, npix) or (N, npix, npix, 1), uK."""
        t = np.asarray(t_maps)
        if t.ndim == 4:
            t = t[..., 0]
        out = []
        for name in self.channels:
            if name == "T":
                out.append(t.astype(np.float32))
            else:  # kappa_qe
                est = self.estimator
                out.append(est.wiener_filter(est.reconstruct(t), est.on_grid(self.cl_kk)).astype(np.float32))
        return np.stack(out, axis=-1)

    def to_card(self) -> dict[str, Any]:
        """The model card's ``input.derived`` entry: what each channel is and the spectra that make it (JSON)."""
        card: dict[str, Any] = {"channels": list(self.channels), "meaning": {c: CHANNELS[c] for c in self.channels}}
        if self.estimator is not None and self.cl_kk is not None:
            card["estimator"] = self.estimator.to_dict()
            card["cl_kk"] = np.asarray(self.cl_kk).tolist()
        return card

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> InputMaker:
        """Rebuild from :meth:`to_card` (plain numbers only: nothing in a card executes)."""
        estimator = QuadraticEstimator.from_dict(card["estimator"]) if "estimator" in card else None
        cl_kk = np.asarray(card["cl_kk"], dtype=float) if "cl_kk" in card else None
        return cls(tuple(card["channels"]), estimator, cl_kk)
