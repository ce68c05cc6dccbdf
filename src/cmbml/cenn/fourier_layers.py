"""Fixed Fourier layers built from built-in Keras layers: a network that works in E and B and returns Q and U.

On a periodic ``n`` x ``n`` patch the E and B modes of Stokes maps are a rotation of their Fourier modes,
``E = Q cos 2phi + U sin 2phi``, ``B = -Q sin 2phi + U cos 2phi`` (``phi`` the angle of the wavevector in
NaMaster's flat-sky convention, as :func:`cmbml.cenn.baselines.harmonic_modes`), and the inverse rotation returns
Q and U. :func:`spin_fourier` builds that map, and its inverse, from layers every Keras installation knows
(``Dense`` for the discrete Fourier transform along each axis, ``DepthwiseConv1D`` for the per-mode factors,
``Dense`` for the mixing of fields), with fixed, non-trainable weights: a model that holds them is saved and
loaded in safe mode with no custom objects, and its E/B maps are exactly those of the FFT (to float32 round-off).

Conventions: maps are indexed ``[iy, ix]``; fields are the last axis, ``[A_1 .. A_F, B_1 .. B_F]`` (Q at each
frequency, then U; or E, then B). On an even grid the Nyquist row and column have no sign for ``ly`` or ``lx``,
so ``sin 2phi`` is set to 0 there and ``cos 2phi`` to its sign: the rotation stays orthogonal and maps real maps
to real maps, and the inverse undoes it exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras


def dft_kernels(npix: int) -> tuple[np.ndarray, np.ndarray]:
    """``cos(2 pi j k / n)`` and ``sin(2 pi j k / n)``, each (npix, npix), symmetric in ``j`` and ``k``."""
    k = np.arange(npix)
    angle = 2.0 * np.pi * np.outer(k, k) / npix
    return np.cos(angle), np.sin(angle)


def spin_rotation(npix: int) -> tuple[np.ndarray, np.ndarray]:
    """``cos 2phi`` and ``sin 2phi`` of every Fourier mode of an ``npix`` x ``npix`` patch, each (npix, npix)
    indexed ``[ky, kx]`` as ``numpy.fft.fft2``; ``phi = -atan2(ly, lx)`` (NaMaster's flat-sky convention on arrays
    indexed ``[iy, ix]``). On the Nyquist row and column (even ``npix``) ``sin 2phi = 0`` and ``cos 2phi = +-1``, so
    that the rotation of a real map's modes is Hermitian and orthogonal; at ``ell = 0``, ``cos = 1, sin = 0``."""
    freqs = np.fft.fftfreq(npix)
    lx, ly = np.meshgrid(freqs, freqs, indexing="xy")
    phi = -np.arctan2(ly, lx)
    c, s = np.cos(2 * phi), np.sin(2 * phi)
    if npix % 2 == 0:
        nyquist = np.zeros((npix, npix), dtype=bool)
        nyquist[npix // 2, :] = nyquist[:, npix // 2] = True
        s[nyquist] = 0.0
        c[nyquist] = np.where(c[nyquist] >= 0, 1.0, -1.0)
    return c, s


def field_mixing(n_pairs: int, inverse: bool) -> np.ndarray:
    """The (4 F, 2 F) matrix that turns ``[cos 2phi X, sin 2phi X]`` of fields ``X = [A_1..A_F, B_1..B_F]`` into
    the rotated fields: ``E = c Q + s U``, ``B = -s Q + c U``; with ``inverse``, ``Q = c E - s B``, ``U = s E + c B``."""
    f = n_pairs
    m = np.zeros((4 * f, 2 * f))
    sign = -1.0 if inverse else 1.0
    for v in range(f):
        a, b = v, f + v  # the pair's two fields; their cos-weighted copies at a, b and sin-weighted at 2F + a, 2F + b
        m[a, a] = 1.0
        m[2 * f + b, a] = sign
        m[b, b] = 1.0
        m[2 * f + a, b] = -sign
    return m


def _fixed(layer, x, *weights):
    """Call ``layer`` on ``x`` and set its (non-trainable) weights."""
    y = layer(x)
    layer.set_weights([np.asarray(w, dtype=np.float32) for w in weights])
    return y


class _FixedDFT:
    """The 2-d discrete Fourier transform of real maps and its real inverse, from two shared fixed ``Dense`` layers
    (the cosine and sine matrices: ``Dense`` on the last axis is the 1-d transform along it).

    Tensors are laid out (batch, fields, a, b): :meth:`forward` takes maps (batch, fields, y, x) and returns the
    real and imaginary modes (batch, fields, kx, ky); :meth:`inverse` takes those and returns the real part of the
    inverse transform, (batch, fields, y, x).
    """

    def __init__(self, npix: int, name: str):
        import keras

        L = keras.layers
        self.npix, self.name = npix, name
        self.cos = L.Dense(npix, use_bias=False, trainable=False, name=f"{name}_dft_cos")
        self.sin = L.Dense(npix, use_bias=False, trainable=False, name=f"{name}_dft_sin")
        self.swap = L.Permute((1, 3, 2), name=f"{name}_swap_axes")
        self._kernels = dft_kernels(npix)

    def forward(self, t):
        import keras

        L = keras.layers
        tc = self.swap(_fixed(self.cos, t, self._kernels[0]))  # (batch, fields, kx, y)
        ts = self.swap(_fixed(self.sin, t, self._kernels[1]))
        # exp(-i(a + b)) = cos a cos b - sin a sin b - i (sin a cos b + cos a sin b), a along y and b along x.
        real = L.Subtract(name=f"{self.name}_re")([self.cos(tc), self.sin(ts)])
        imag = L.Rescaling(-1.0, name=f"{self.name}_im")(
            L.Add(name=f"{self.name}_im_sum")([self.sin(tc), self.cos(ts)])
        )
        return real, imag

    def inverse(self, real, imag):
        import keras

        L = keras.layers
        # Real part of the inverse: [C_x (Re C_y - Im S_y) - S_x (Re S_y + Im C_y)] / n^2.
        re_c, re_s, im_c, im_s = (self.swap(dft(part)) for part in (real, imag) for dft in (self.cos, self.sin))
        first = self.cos(L.Subtract(name=f"{self.name}_inv_c")([re_c, im_s]))
        second = self.sin(L.Add(name=f"{self.name}_inv_s")([re_s, im_c]))
        return L.Rescaling(1.0 / self.npix**2, name=f"{self.name}_norm")(
            L.Subtract(name=f"{self.name}_inv")([first, second])
        )


def spin_fourier(
    x: keras.KerasTensor, npix: int, n_pairs: int, inverse: bool = False, name: str = "eb"
) -> keras.KerasTensor:
    """Q and U maps to E and B maps (or back, with ``inverse``), per pair of fields, inside a Keras graph.

    Parameters
    ----------
    x : KerasTensor, shape (batch, npix, npix, 2 n_pairs)
        ``[Q_1 .. Q_F, U_1 .. U_F]`` (or ``[E_1 .. E_F, B_1 .. B_F]`` with ``inverse``), any units.
    npix : int
        The patch side in pixels (the transform is built for one size).
    n_pairs : int
        ``F``, the number of (Q, U) pairs, e.g. frequencies.
    inverse : bool
        Return Q and U from E and B.
    name : str
        Prefix of the layers' names.

    Returns
    -------
    KerasTensor, shape (batch, npix, npix, 2 n_pairs)
        The E and B maps (real-space maps of the E and B modes, same units), or Q and U.
    """
    import keras

    L = keras.layers
    k = 2 * n_pairs
    c, s = spin_rotation(npix)
    dft = _FixedDFT(npix, name)
    real, imag = dft.forward(L.Permute((3, 1, 2), name=f"{name}_fields_first")(x))

    # Per-mode factors cos 2phi and sin 2phi (modes flattened in (kx, ky) order), then the mixing of fields.
    flat = L.Reshape((k, npix * npix), name=f"{name}_flat")
    times_cos = L.DepthwiseConv1D(1, use_bias=False, trainable=False, name=f"{name}_cos2phi")
    times_sin = L.DepthwiseConv1D(1, use_bias=False, trainable=False, name=f"{name}_sin2phi")
    mix = L.Dense(k, use_bias=False, trainable=False, name=f"{name}_mix")
    modes_last, modes_first = (
        L.Permute((2, 1), name=f"{name}_modes_last"),
        L.Permute((2, 1), name=f"{name}_modes_first"),
    )
    rotated = []
    for part, label in ((real, "re"), (imag, "im")):
        flat_part = flat(part)
        cos_part = _fixed(times_cos, flat_part, c.T.reshape(1, -1, 1))
        sin_part = _fixed(times_sin, flat_part, s.T.reshape(1, -1, 1))
        joined = L.Concatenate(axis=1, name=f"{name}_{label}_parts")([cos_part, sin_part])  # (batch, 4F, modes)
        rotated.append(modes_first(_fixed(mix, modes_last(joined), field_mixing(n_pairs, inverse))))
    unflat = L.Reshape((k, npix, npix), name=f"{name}_unflat")
    fields = dft.inverse(unflat(rotated[0]), unflat(rotated[1]))
    return L.Permute((2, 3, 1), name=f"{name}_fields_last")(fields)  # (batch, y, x, fields)


def fourier_filter(
    x: keras.KerasTensor, weights: np.ndarray, offset: np.ndarray | None = None, name: str = "filter"
) -> keras.KerasTensor:
    """A fixed linear filter, one real matrix per Fourier mode, inside a Keras graph:
    ``out_o(l) = sum_c weights[l, c, o] x_c(l)`` (+ ``offset[o]`` in every pixel).

    Parameters
    ----------
    x : KerasTensor, shape (batch, npix, npix, K_in)
    weights : ndarray, shape (npix, npix, K_in, K_out)
        Indexed ``[ky, kx]`` as ``numpy.fft.fft2``; even in the wavevector (``weights[-l] = weights[l]``) so
        that real maps give real maps, as a Wiener filter's are.
    offset : ndarray, shape (K_out,), optional
    name : str
        Prefix of the layers' names.

    Returns
    -------
    KerasTensor, shape (batch, npix, npix, K_out)
    """
    import keras

    L = keras.layers
    npix, _, k_in, k_out = weights.shape
    modes = npix * npix
    dft = _FixedDFT(npix, name)
    real, imag = dft.forward(L.Permute((3, 1, 2), name=f"{name}_fields_first")(x))
    flat = L.Reshape((1, k_in * modes), name=f"{name}_flat")
    # Each (field, mode) times its K_out weights, then the sum over input fields.
    times = L.DepthwiseConv1D(1, depth_multiplier=k_out, use_bias=False, trainable=False, name=f"{name}_weights")
    split = L.Reshape((k_in, modes, k_out), name=f"{name}_split")
    fields_last = L.Permute((2, 3, 1), name=f"{name}_inputs_last")
    total = L.Dense(1, use_bias=False, trainable=False, name=f"{name}_sum")
    outputs_first = L.Reshape((modes, k_out), name=f"{name}_drop")
    to_grid = L.Reshape((k_out, npix, npix), name=f"{name}_unflat")
    kernel = np.transpose(weights, (2, 1, 0, 3)).reshape(1, k_in * modes, k_out)  # [field, kx, ky] then output
    parts = []
    for part in (real, imag):
        weighted = split(_fixed(times, flat(part), kernel))
        summed = outputs_first(_fixed(total, fields_last(weighted), np.ones((k_in, 1))))
        parts.append(to_grid(L.Permute((2, 1), name=f"{name}_outputs_first_{len(parts)}")(summed)))
    out = L.Permute((2, 3, 1), name=f"{name}_fields_last")(dft.inverse(*parts))
    if offset is not None:
        shift = L.Conv2D(k_out, 1, trainable=False, name=f"{name}_offset")
        out = _fixed(shift, out, np.eye(k_out).reshape(1, 1, k_out, k_out), np.asarray(offset, dtype=float))
    return out


def standardised_filter(weights: np.ndarray, x_stats: tuple, y_stats: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A filter of maps in physical units, ``weights`` (npix, npix, K_in, K_out), as one of standardised maps
    (``(v - mean) / std`` per channel, the networks' inputs and outputs): ``(weights', offset)`` for
    :func:`fourier_filter`, with ``weights' = weights std_in / std_out`` and the constant the means leave."""
    (x_mean, x_std), (y_mean, y_std) = x_stats, y_stats
    x_mean, x_std = np.asarray(x_mean, dtype=float), np.asarray(x_std, dtype=float)
    y_mean, y_std = np.asarray(y_mean, dtype=float), np.asarray(y_std, dtype=float)
    scaled = weights * x_std[:, None] / y_std[None, :]
    # A constant input x_mean is the mode l = 0 alone: it passes with the weights of that mode.
    offset = (weights[0, 0].T @ x_mean - y_mean) / y_std
    return scaled, offset
