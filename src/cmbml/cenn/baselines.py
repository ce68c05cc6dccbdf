"""Classical component separation on flat patches, the answers a network must be compared with.

All methods map the multi-frequency inputs ``M`` of a patch, ``{component: (N, n, n, channels)}`` in
uK_CMB, to an estimate of the label ``M0`` (the CMB through the target channel's beam):

- :class:`WienerFilter`: the multi-channel Wiener filter ``t = S a^T (S a a^T + R)^-1 d`` per Fourier
  mode, with ``S`` the CAMB spectrum of the label, ``a_c = B_c / B_target`` the response of channel ``c``
  to the label and ``R`` the foreground + noise covariance between channels. On Gaussian stationary skies
  it is the minimum-MSE estimator of all, linear or not; a network can match it, not beat it.
- :class:`PerModeLinearFilter`: the least-squares linear map from the input modes to the label modes,
  fitted per 2-d Fourier mode on Train patches; the empirical Wiener filter, no model needed.
- :func:`harmonic_ilc`: beams equalised to the target, then minimum-variance weights with unit CMB
  response per multipole bin (full second moments of the cleaned set).
- :func:`pixel_ilc`: one set of weights per patch from the full second moments of its pixels.

Fourier conventions: ``numpy.fft.fft2`` over the two patch axes, so a field with spectrum ``C_ell`` has
``E|F_k|^2 = C_ell n^2 / dx^2`` (see :func:`cmbml.common.flatsky.power_2d`). Spin-2 patches (components Q, U)
are filtered as E and B modes, ``E = Q cos 2phi + U sin 2phi``, ``B = -Q sin 2phi + U cos 2phi``, with the
angle ``phi`` of each wavevector in NaMaster's flat-sky convention (tested against its spin-2 estimator).

The registry :data:`BASELINES` holds what the evaluation scores beside the network: one small class per
baseline with its ``name`` (the ``<name>`` of its metrics, ``map_mse_<name>_uK2``), its ``label`` (its text in
tables and figures), ``fit`` (on the Train patches and the :class:`BaselineSetup`) and ``apply`` (patches ->
estimated label). Registration order is the order of columns and legends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cmbml.common.flatsky import FlatGrid
from cmbml.common.registry import Registry


def _fft(maps: np.ndarray) -> np.ndarray:
    return np.fft.fft2(maps, axes=(1, 2))


def _ifft(modes: np.ndarray) -> np.ndarray:
    return np.fft.ifft2(modes, axes=(1, 2)).real


def _rotation(grid: FlatGrid, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """cos 2 phi and sin 2 phi on the grid, shaped to broadcast over stacks (N, n, n, ...) of ``ndim`` axes."""
    # NaMaster's flat-sky Stokes convention on arrays indexed [iy, ix] (the patches' own): phi = -atan2(ly, lx).
    lx, ly = grid.ell_xy
    phi = -np.arctan2(ly, lx)
    trailing = (1,) * (ndim - 3)  # channel axes after (N, n, n), if any
    return np.cos(2 * phi).reshape(phi.shape + trailing), np.sin(2 * phi).reshape(phi.shape + trailing)


def harmonic_modes(maps: Mapping[str, np.ndarray], grid: FlatGrid) -> dict[str, np.ndarray]:
    """Fourier modes of a variant's maps keyed by spectrum: ``{"E"}``, ``{"B"}`` or, from Q and U, ``{"E", "B"}``.

    Each value has the maps' shape (N, n, n, channels), complex.
    """
    if set(maps) == {"Q", "U"}:
        q, u = _fft(maps["Q"]), _fft(maps["U"])
        c, s = _rotation(grid, q.ndim)
        return {"E": q * c + u * s, "B": -q * s + u * c}
    (comp,) = maps
    return {comp: _fft(maps[comp])}


def maps_from_modes(modes: Mapping[str, np.ndarray], grid: FlatGrid) -> dict[str, np.ndarray]:
    """Inverse of :func:`harmonic_modes`: E and B modes together give Q and U maps (stacks (N, n, n, ...))."""
    if set(modes) == {"E", "B"}:
        e, b = modes["E"], modes["B"]
        c, s = _rotation(grid, e.ndim)
        return {"Q": _ifft(e * c - b * s), "U": _ifft(e * s + b * c)}
    return {name: _ifft(m) for name, m in modes.items()}


def response_on_grid(grid: FlatGrid, response: np.ndarray) -> np.ndarray:
    """Per-channel transfer functions ``response`` (C, lmax + 1) on the Fourier grid, (n, n, C); 1 at ell = 0."""
    a = np.stack([grid.cl_on_grid(r) for r in response], axis=-1)
    a[0, 0] = response[:, 0]
    return a


def annulus_index(grid: FlatGrid, width: float) -> np.ndarray:
    """Bin index of every Fourier mode, annuli of ``width`` in |ell|; the mean (ell = 0) is bin 0."""
    index = 1 + np.floor(grid.ell / width).astype(int)
    index[0, 0] = 0
    return index


def mode_second_moment(modes: np.ndarray) -> np.ndarray:
    """Sum over samples of ``d d^H`` per Fourier mode, real part: (N, n, n, C) -> (n, n, C, C)."""
    return np.einsum("aijc,aijd->ijcd", modes, modes.conj()).real


def bin_over_annuli(per_mode: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Average a per-mode (n, n, ...) quantity over each annulus of ``index`` and spread it back onto the grid."""
    n_bins = index.max() + 1
    sums = np.zeros((n_bins, *per_mode.shape[2:]))
    np.add.at(sums, index.ravel(), per_mode.reshape(-1, *per_mode.shape[2:]))
    counts = np.bincount(index.ravel(), minlength=n_bins)
    return (sums / np.maximum(counts, 1).reshape(-1, *[1] * (per_mode.ndim - 2)))[index]


@dataclass(frozen=True)
class WienerFilter:
    """Multi-channel Wiener filter per Fourier mode, for each spectrum of a variant (E, B or both).

    ``weights[spectrum]`` (n, n, C): the label estimate is ``sum_c weights_c d_c`` per mode;
    ``error_power[spectrum]`` (n, n): the expected ``|t - t_hat|^2`` per mode, in FFT units.
    """

    grid: FlatGrid
    weights: Mapping[str, np.ndarray]
    error_power: Mapping[str, np.ndarray]

    @classmethod
    def build(
        cls,
        grid: FlatGrid,
        cl_label: Mapping[str, np.ndarray],
        response: np.ndarray,
        nuisance: Mapping[str, np.ndarray],
    ) -> WienerFilter:
        """``cl_label[spectrum]``: the label's C_ell (CMB x target beam^2 x pixel window^2, ell = 0, 1, ...);
        ``response`` (C, lmax + 1): ``B_c / B_target`` per channel; ``nuisance[spectrum]`` (n, n, C, C):
        foreground + noise covariance per mode in FFT units (:meth:`nuisance_from_train`)."""
        a = response_on_grid(grid, response)
        weights, error = {}, {}
        for spectrum, r_cov in nuisance.items():
            signal = grid.cl_on_grid(cl_label[spectrum]) * grid.npix**2 / grid.dx**2
            total = signal[..., None, None] * a[..., :, None] * a[..., None, :] + r_cov
            w = np.linalg.solve(total, a[..., None])[..., 0] * signal[..., None]
            weights[spectrum] = w
            error[spectrum] = signal - signal * np.einsum("ijc,ijc->ij", w, a)
        return cls(grid, weights, error)

    @staticmethod
    def nuisance_from_train(
        chunks: Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
        grid: FlatGrid,
        response: np.ndarray,
        bin_width: float,
    ) -> dict[str, np.ndarray]:
        """Foreground + noise covariance of the channels, ``d_c - a_c t``, measured on chunks of Train
        (inputs (N, n, n, C), labels (N, n, n, 1) per component) and averaged over annuli of ``bin_width``."""
        a = response_on_grid(grid, response)
        sums: dict[str, np.ndarray] = {}
        count = 0
        for inputs, labels in chunks:
            d, t = harmonic_modes(inputs, grid), harmonic_modes(labels, grid)
            for s in d:
                sums[s] = sums.get(s, 0.0) + mode_second_moment(d[s] - a * t[s])
            count += next(iter(inputs.values())).shape[0]
        index = annulus_index(grid, bin_width)
        return {s: bin_over_annuli(total / count, index) for s, total in sums.items()}

    @property
    def predicted_mse(self) -> float:
        """Expected map MSE (uK^2) over a periodic patch, averaged over the variant's components."""
        n = self.grid.npix
        return float(np.mean([e.sum() for e in self.error_power.values()]) / n**4)

    def apply(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Label estimates ``{component: (N, n, n)}``."""
        d = harmonic_modes(inputs, self.grid)
        return maps_from_modes({s: np.einsum("aijc,ijc->aij", d[s], self.weights[s]) for s in d}, self.grid)

    def mode_matrix(self) -> np.ndarray:
        """The filter as one real matrix per Fourier mode from the input maps to the label's, (n, n, K_in, K_out),
        for :func:`cmbml.cenn.fourier_layers.fourier_filter`: channels of E or B to the label; or
        ``[Q at each channel, U at each channel]`` to ``[Q, U]``, the E and B weights turned by ``2 phi``
        (the Nyquist row and column as :func:`cmbml.cenn.fourier_layers.spin_rotation`)."""
        if set(self.weights) != {"E", "B"}:
            (w,) = self.weights.values()
            return w[..., None]
        from cmbml.cenn.fourier_layers import spin_rotation

        c, s = (r[..., None] for r in spin_rotation(self.grid.npix))
        w_e, w_b = self.weights["E"], self.weights["B"]
        # Q = c E - s B and U = s E + c B of E = sum w_E (c Q + s U), B = sum w_B (-s Q + c U).
        q_from_q, u_from_u = c * c * w_e + s * s * w_b, s * s * w_e + c * c * w_b
        q_from_u = u_from_q = c * s * (w_e - w_b)
        return np.stack(
            [np.concatenate([q_from_q, q_from_u], axis=-1), np.concatenate([u_from_q, u_from_u], axis=-1)], axis=-1
        )


@dataclass(frozen=True)
class PerModeLinearFilter:
    """Least-squares linear map from input modes to label modes, one matrix per 2-d Fourier mode.

    ``weights`` (n, n, K_out, K_in) over the components x channels of a variant (for Q and U, 2 x 6),
    so the fit is free to mix Q and U as the data demand.
    """

    components: tuple[str, ...]
    weights: np.ndarray

    @classmethod
    def fit(
        cls,
        chunks: Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
        components: Sequence[str],
        ridge: float = 1e-9,
    ) -> PerModeLinearFilter:
        """Accumulate ``sum d d^H`` and ``sum t d^H`` over chunks of (inputs, labels) Train patches."""
        dd = td = None
        for inputs, labels in chunks:
            d = _fft(np.concatenate([inputs[c] for c in components], axis=-1))
            t = _fft(np.concatenate([labels[c] for c in components], axis=-1))
            dd_c = np.einsum("aijc,aijd->ijcd", d, d.conj())
            td_c = np.einsum("aijc,aijd->ijcd", t, d.conj())
            dd, td = (dd_c, td_c) if dd is None else (dd + dd_c, td + td_c)
        scale = np.trace(dd, axis1=-2, axis2=-1).real[..., None, None] / dd.shape[-1]
        regular = dd + ridge * scale * np.eye(dd.shape[-1])
        # W = (t d^H)(d d^H)^-1, solved as the transposed system.
        weights = np.swapaxes(np.linalg.solve(np.swapaxes(regular, -1, -2), np.swapaxes(td, -1, -2)), -1, -2)
        return cls(tuple(components), weights)

    def apply(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Label estimates ``{component: (N, n, n)}``."""
        d = _fft(np.concatenate([inputs[c] for c in self.components], axis=-1))
        t = _ifft(np.einsum("ijod,aijd->aijo", self.weights, d))
        return {c: t[..., k] for k, c in enumerate(self.components)}


def ilc_weights(second_moment: np.ndarray) -> np.ndarray:
    """Minimum-variance weights with unit CMB response, ``w = C^-1 1 / (1^T C^-1 1)``, for each (..., C, C)."""
    n = second_moment.shape[-1]
    # A tiny ridge keeps modes beyond the band limit (all zero) solvable; they get equal weights.
    ridge = 1e-10 * np.trace(second_moment, axis1=-2, axis2=-1)[..., None, None] / n + 1e-30
    inv_one = np.linalg.solve(second_moment + ridge * np.eye(n), np.ones(second_moment.shape[:-1])[..., None])[..., 0]
    return inv_one / inv_one.sum(axis=-1, keepdims=True)


def pixel_ilc(patches: np.ndarray) -> np.ndarray:
    """Pixel ILC of each patch (N, n, n, C) -> (N, n, n), weights from the full second moments of its pixels.

    Not mean-subtracted: a foreground offset over the patch is part of what the weights must remove.
    """
    flat = patches.reshape(patches.shape[0], -1, patches.shape[-1])
    moments = np.einsum("apc,apd->acd", flat, flat) / flat.shape[1]
    weights = ilc_weights(moments)
    return np.einsum("aijc,ac->aij", patches, weights)


def harmonic_ilc(
    inputs: Mapping[str, np.ndarray], grid: FlatGrid, response: np.ndarray, bin_width: float
) -> dict[str, np.ndarray]:
    """Harmonic ILC: each channel's beam equalised to the target (divided by ``response``), then per
    annulus of ``bin_width`` the weights from the second moments of all patches and components."""
    a = response_on_grid(grid, response)
    equalised = {c: _fft(m) / np.where(a > 0, a, np.inf) for c, m in inputs.items()}
    index = annulus_index(grid, bin_width)
    n = sum(m.shape[0] for m in equalised.values())
    moments = bin_over_annuli(sum(mode_second_moment(m) for m in equalised.values()) / n, index)
    weights = ilc_weights(moments)  # (n, n, C), unit response: the CMB passes unchanged
    return {c: _ifft(np.einsum("aijc,ijc->aij", m, weights)) for c, m in equalised.items()}


Chunks = Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]]
"""``(inputs, labels)`` pairs of patch stacks, ``{component: (N, n, n, C)}`` and ``{component: (N, n, n, 1)}``,
uK_CMB."""

# Where a baseline's scores are shown, beyond the full score file (a :class:`Baseline`'s ``shown_in``).
SUMMARY = "summary"
"""Its map MSE on the training sky's Validation patches among the summary metrics (DVC metrics, MLflow)."""
UNSEEN_SUMMARY = "unseen_summary"
"""Its map MSE on the unseen sky's Validation patches among the summary metrics."""
METHODS_TABLE = "methods_table"
"""A column of the results pages' per-variant tables (map MSE, transfer per multipole range)."""
FOREGROUND_TABLE = "foreground_table"
"""A map-MSE column of the results pages' foreground-model table."""
RESIDUALS = "residuals"
"""Its residual D_ell per multipole range in the foreground-model table."""
VIEWS = (SUMMARY, UNSEEN_SUMMARY, METHODS_TABLE, FOREGROUND_TABLE, RESIDUALS)


@dataclass(frozen=True)
class BaselineSetup:
    """What a baseline may use besides the patches.

    Attributes
    ----------
    grid : FlatGrid
        The patches' geometry (uncropped).
    response : ndarray, shape (C, lmax + 1)
        Each channel's transfer over the target channel's, ``B_c / B_target`` per multipole.
    cl_label : dict
        ``"EE"``, ``"BB"`` -> the label's C_ell (uK^2; CMB x target beam^2 x pixel window^2, ell = 0, 1, ...).
    bin_width : float
        Width in ``|ell|`` of the annuli of the harmonic ILC's weights.
    components : tuple of str
        The variant's components (``("E",)``, ``("B",)`` or ``("Q", "U")``), the keys of every patch mapping.
    """

    grid: FlatGrid
    response: np.ndarray
    cl_label: Mapping[str, np.ndarray]
    bin_width: float
    components: tuple[str, ...]


class Baseline:
    """A registered estimator of the label, scored beside the network by the same code.

    A subclass sets ``name`` and ``label`` and implements :meth:`fit` and :meth:`apply`; ``fit`` returns the
    fitted instance. Registered in :data:`BASELINES` it is fitted, applied to both skies' Validation patches,
    scored (``map_mse_<name>_uK2``, its error, transfer and residual D_ell per multipole range, spectra rows),
    drawn in the spectra figures and shown where ``shown_in`` says.

    Attributes
    ----------
    name : str
        Its key in metric names, tables and files (``map_mse_<name>_uK2``).
    label : str
        Its text in tables and figure legends.
    oracle : bool
        True for a bound rather than a method: it is fitted on the very patches it cleans, with their labels,
        once per sky (``fit`` receives them instead of Train), and scored by its map MSE alone (no error bar,
        no spectra).
    shown_in : frozenset of str
        The :data:`VIEWS` that show it; by default the training sky's summary metrics and both results tables'
        map-MSE columns.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    oracle: ClassVar[bool] = False
    shown_in: ClassVar[frozenset[str]] = frozenset({SUMMARY, METHODS_TABLE, FOREGROUND_TABLE})

    @classmethod
    def fit(cls, setup: BaselineSetup, chunks: Callable[[], Chunks]) -> Baseline:
        """The fitted baseline; ``chunks()`` starts a new pass over the Train patches (the cleaned patches for
        an oracle)."""
        raise NotImplementedError

    def apply(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Label estimates ``{component: (N, n, n)}`` in uK_CMB from ``inputs`` ``{component: (N, n, n, C)}``."""
        raise NotImplementedError

    def fit_metrics(self) -> dict[str, float]:
        """Scores known from the fit alone (named in full), logged beside the Validation scores."""
        return {}

    def mode_matrix(self) -> np.ndarray:
        """A linear baseline as one real matrix per Fourier mode, (n, n, K_in, K_out), for a network that starts
        from it (:func:`cmbml.cenn.fourier_layers.fourier_filter`)."""
        raise NotImplementedError(f"{self.name} is not a fixed linear filter per Fourier mode")


BASELINES: Registry = Registry("cenn_evaluate baseline")
"""The classical answers scored beside the network, in the order of columns and legends."""


@BASELINES.register
@dataclass(frozen=True)
class WienerBaseline(Baseline):
    """The multi-channel Wiener filter: the label's C_ell and the foreground + noise covariance of the Train
    patches, averaged over annuli one fundamental wide."""

    name: ClassVar[str] = "wiener"
    label: ClassVar[str] = "Wiener"
    shown_in: ClassVar[frozenset[str]] = frozenset(VIEWS)
    wiener: WienerFilter

    @classmethod
    def fit(cls, setup: BaselineSetup, chunks: Callable[[], Chunks]) -> WienerBaseline:
        nuisance = WienerFilter.nuisance_from_train(chunks(), setup.grid, setup.response, setup.grid.ell_fundamental)
        return cls(
            WienerFilter.build(setup.grid, {s[0]: cl for s, cl in setup.cl_label.items()}, setup.response, nuisance)
        )

    def apply(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.wiener.apply(inputs)

    def mode_matrix(self) -> np.ndarray:
        return self.wiener.mode_matrix()

    def fit_metrics(self) -> dict[str, float]:
        """``map_mse_<name>_predicted_uK2``: the map MSE predicted from its covariances (valid on the Train sky)."""
        return {f"map_mse_{self.name}_predicted_uK2": self.wiener.predicted_mse}


@BASELINES.register
@dataclass(frozen=True)
class WienerOwnSkyBaseline(WienerBaseline):
    """The Wiener filter with the foreground + noise covariance of the very patches it cleans: the linear
    optimum for their sky, an oracle that shows how much a sky other than Train's costs the Train-fitted
    filters."""

    name: ClassVar[str] = "wiener_own_sky"
    label: ClassVar[str] = "Wiener, own-sky covariance"
    oracle: ClassVar[bool] = True
    shown_in: ClassVar[frozenset[str]] = frozenset({UNSEEN_SUMMARY, FOREGROUND_TABLE})


def per_patch_nuisance(
    inputs: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    grid: FlatGrid,
    response: np.ndarray,
    bin_width: float,
) -> dict[str, np.ndarray]:
    """Each patch's own foreground + noise covariance between channels, ``d_c - a_c t`` of that patch alone,
    averaged over annuli of ``bin_width``: ``{spectrum: (N, n, n, C, C)}`` in FFT units."""
    a = response_on_grid(grid, response)
    d, t = harmonic_modes(inputs, grid), harmonic_modes(labels, grid)
    index = annulus_index(grid, bin_width)
    out = {}
    for s in d:
        r = d[s] - a * t[s]
        moments = np.einsum("aijc,aijd->aijcd", r, r.conj()).real  # (N, n, n, C, C)
        cov = np.stack([bin_over_annuli(m, index) for m in moments])
        # An annulus with fewer modes than channels (or none, beyond the band limit) gives a singular covariance:
        # a ridge of 1e-9 of the mode's mean channel power keeps it solvable without changing the filter.
        scale = np.trace(cov, axis1=-2, axis2=-1) / cov.shape[-1]
        out[s] = cov + (1e-9 * scale + 1e-30)[..., None, None] * np.eye(cov.shape[-1])
    return out


@dataclass(frozen=True)
class PerPatchWienerFilter:
    """One multi-channel Wiener filter per patch, an oracle of what adapting to each patch's own foregrounds gains.

    ``weights[spectrum]`` (N, n, n, C): the filter of patch ``i`` is ``weights[spectrum][i]``; applied to the very
    patches (in the same order) whose covariances built it.
    """

    grid: FlatGrid
    weights: Mapping[str, np.ndarray]

    @classmethod
    def build(
        cls,
        inputs: Mapping[str, np.ndarray],
        labels: Mapping[str, np.ndarray],
        grid: FlatGrid,
        cl_label: Mapping[str, np.ndarray],
        response: np.ndarray,
        bin_width: float,
    ) -> PerPatchWienerFilter:
        """Patches ``inputs`` {component: (N, n, n, C)} and their ``labels`` {component: (N, n, n, 1)}.

        Each patch gets the Wiener filter of its own foreground + noise covariance (:func:`per_patch_nuisance`) or
        that of all the patches together, whichever leaves it the smaller error against its label: a covariance
        measured on one patch's few modes per annulus is noisy, and where the foregrounds' directions in channel
        space do not change from patch to patch the common filter is better. So the oracle is never worse than the
        own-sky global filter, and better where the local sky differs (spectral indices, sources).
        """
        local = per_patch_nuisance(inputs, labels, grid, response, bin_width)
        common = {s: cov.mean(axis=0) for s, cov in local.items()}
        shared = WienerFilter.build(grid, cl_label, response, common).weights
        d, t = harmonic_modes(inputs, grid), harmonic_modes(labels, grid)
        weights = {}
        for s, cov in local.items():
            own = np.stack([WienerFilter.build(grid, cl_label, response, {s: r}).weights[s] for r in cov])
            err_own = (np.abs(np.einsum("aijc,aijc->aij", d[s], own) - t[s][..., 0]) ** 2).sum(axis=(1, 2))
            err_shared = (np.abs(np.einsum("aijc,ijc->aij", d[s], shared[s]) - t[s][..., 0]) ** 2).sum(axis=(1, 2))
            weights[s] = np.where((err_own <= err_shared)[:, None, None, None], own, shared[s][None])
        return cls(grid, weights)

    def apply(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Label estimates ``{component: (N, n, n)}`` of the patches the filter was built on."""
        d = harmonic_modes(inputs, self.grid)
        n_built = next(iter(self.weights.values())).shape[0]
        if next(iter(d.values())).shape[0] != n_built:
            raise ValueError(f"a per-patch filter built on {n_built} patches applies to those patches only")
        return maps_from_modes({s: np.einsum("aijc,aijc->aij", d[s], self.weights[s]) for s in d}, self.grid)


@BASELINES.register
@dataclass(frozen=True)
class WienerPerPatchBaseline(Baseline):
    """The Wiener filter of each patch from its own foreground + noise power (annuli two fundamentals wide), or the
    own-sky global one where that serves the patch better (:class:`PerPatchWienerFilter`): an oracle that adapts
    to local foregrounds as no global filter can. The gap between it and the global Wiener filter is the room an
    estimator that adapts to the local sky (a network) could gain."""

    name: ClassVar[str] = "wiener_per_patch"
    label: ClassVar[str] = "Wiener per patch (oracle)"
    oracle: ClassVar[bool] = True
    shown_in: ClassVar[frozenset[str]] = frozenset({SUMMARY, UNSEEN_SUMMARY, METHODS_TABLE, FOREGROUND_TABLE})
    wiener: PerPatchWienerFilter

    @classmethod
    def fit(cls, setup: BaselineSetup, chunks: Callable[[], Chunks]) -> WienerPerPatchBaseline:
        parts = list(chunks())
        inputs = {c: np.concatenate([p[0][c] for p in parts]) for c in setup.components}
        labels = {c: np.concatenate([p[1][c] for p in parts]) for c in setup.components}
        return cls(
            PerPatchWienerFilter.build(
                inputs,
                labels,
                setup.grid,
                {s[0]: cl for s, cl in setup.cl_label.items()},
                setup.response,
                2 * setup.grid.ell_fundamental,
            )
        )

    def apply(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.wiener.apply(inputs)


@BASELINES.register
@dataclass(frozen=True)
class LinearBaseline(Baseline):
    """The per-mode linear filter fitted on Train: the empirical Wiener filter."""

    name: ClassVar[str] = "linear"
    label: ClassVar[str] = "linear (Train fit)"
    shown_in: ClassVar[frozenset[str]] = frozenset({SUMMARY, METHODS_TABLE})
    linear: PerModeLinearFilter

    @classmethod
    def fit(cls, setup: BaselineSetup, chunks: Callable[[], Chunks]) -> LinearBaseline:
        return cls(PerModeLinearFilter.fit(chunks(), list(setup.components)))

    def apply(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.linear.apply(inputs)


@BASELINES.register
@dataclass(frozen=True)
class HarmonicILCBaseline(Baseline):
    """The harmonic ILC, weights from the patches it cleans (nothing fitted on Train)."""

    name: ClassVar[str] = "harmonic_ilc"
    label: ClassVar[str] = "harmonic ILC"
    shown_in: ClassVar[frozenset[str]] = frozenset(VIEWS)
    setup: BaselineSetup

    @classmethod
    def fit(cls, setup: BaselineSetup, chunks: Callable[[], Chunks]) -> HarmonicILCBaseline:
        return cls(setup)

    def apply(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return harmonic_ilc(inputs, self.setup.grid, self.setup.response, self.setup.bin_width)


@BASELINES.register
@dataclass(frozen=True)
class PixelILCBaseline(Baseline):
    """The pixel ILC, one set of weights per patch (nothing fitted on Train)."""

    name: ClassVar[str] = "pixel_ilc"
    label: ClassVar[str] = "pixel ILC"
    shown_in: ClassVar[frozenset[str]] = frozenset({SUMMARY, METHODS_TABLE, FOREGROUND_TABLE})

    @classmethod
    def fit(cls, setup: BaselineSetup, chunks: Callable[[], Chunks]) -> PixelILCBaseline:
        return cls()

    def apply(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {c: pixel_ilc(m) for c, m in inputs.items()}
