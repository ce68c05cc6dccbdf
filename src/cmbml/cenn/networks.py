"""The CENN encoder-decoder network and the architecture registry (``cenn_net.architecture``).

Each architecture is one class registered in :data:`ARCHITECTURES`: ``Params`` (a pydantic model of its
block ``cenn_net.<name>``) and ``build``, which returns an uncompiled Keras model from standardised
patches ``(n, n, channels)`` to the standardised target-channel CMB ``(n, n, n_outputs)``: every component
of a patch at once (E; B; or Q and U together, channels ``[Q at each frequency, U at each frequency]``, so that
the network can tell E from B, which no filter shared by Q and U can). Keras is imported
inside the functions only, so that checking parameters stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cmbml.common.registry import Registry

if TYPE_CHECKING:
    import keras

ARCHITECTURES: Registry = Registry("cenn_net.architecture")


def leaky_relu(x, negative_slope: float, name: str):
    """LeakyReLU as ``max(x, negative_slope * x)`` from built-in layers (saved and loaded without custom
    objects), for ``0 <= negative_slope < 1``.

    Equal to ``keras.layers.LeakyReLU(negative_slope)`` in value; the gradient differs only at ``x == 0``
    exactly (1 instead of the slope). It builds no LeakyRelu op, whose fusion with a preceding
    convolution breaks Grappler's remapper in training graphs (see :func:`cenn_network`).
    Layers: ``<name>_slope`` (the scaled copy) and ``<name>_leaky`` (the maximum).
    """
    if not 0.0 <= negative_slope < 1.0:
        raise ValueError(f"negative_slope = {negative_slope}: max(x, a x) is a leaky ReLU only for 0 <= a < 1")
    import keras

    scaled = keras.layers.Rescaling(negative_slope, name=f"{name}_slope")(x)
    return keras.layers.Maximum(name=f"{name}_leaky")([x, scaled])


def cenn_network(n_channels: int = 3, l2: float = 1e-6, name: str = "cenn", n_outputs: int = 1) -> keras.Model:
    """CENN (Casas et al. 2022): a convolutional encoder-decoder with concatenated skips.

    Encoder: Conv2D 8/16/64/128 filters, kernels 9/9/7/7, stride 2, LeakyReLU(0.2). Decoder: four
    stride-2 transposed convolutions (64/16/8/1 filters, kernels 7/9/9/9), each but the last
    concatenated with the encoder output of the same size. L2 weight decay on every kernel.
    The output layer is linear (the CMB is signed), with ``n_outputs`` maps (2 for Q and U seen together, whose
    inputs are then the ``n_channels`` = 2 x frequencies of both). About 1.0 M parameters; the patch side can
    be any multiple of 16 (the model is built without a fixed size).

    LeakyReLU(0.2) is built as ``max(x, 0.2 x)`` (:func:`leaky_relu`), not with ``keras.layers.LeakyReLU``:
    TensorFlow's Grappler remapper (with oneDNN, the default on recent x86 CPUs) fuses
    Conv2D + BiasAdd + LeakyRelu and deletes the BiasAdd that the training graph's LeakyReluGrad still
    reads, then abandons the whole pass with "remapper failed: ... fanout ... LeakyReluGrad exist for
    missing node .../BiasAdd" on every fit. The maximum has the same values and, away from a
    pre-activation of exactly 0, the same gradient.
    """
    import keras

    inputs = keras.Input(shape=(None, None, n_channels), name="M")
    return keras.Model(inputs, cenn_core(inputs, l2, n_outputs), name=name)


def cenn_core(inputs: keras.KerasTensor, l2: float, n_outputs: int) -> keras.KerasTensor:
    """The layers of :func:`cenn_network` on a tensor (batch, n, n, channels): ``n_outputs`` linear maps."""
    import keras

    reg = keras.regularizers.L2(l2)

    def conv(filters, kernel, layer_name):
        return keras.layers.Conv2D(filters, kernel, strides=2, padding="same", kernel_regularizer=reg, name=layer_name)

    def deconv(filters, kernel, layer_name, **kwargs):
        return keras.layers.Conv2DTranspose(
            filters, kernel, strides=2, padding="same", kernel_regularizer=reg, name=layer_name, **kwargs
        )

    c1 = leaky_relu(conv(8, 9, "conv1")(inputs), 0.2, "conv1")
    c2 = leaky_relu(conv(16, 9, "conv2")(c1), 0.2, "conv2")
    c3 = leaky_relu(conv(64, 7, "conv3")(c2), 0.2, "conv3")
    c4 = leaky_relu(conv(128, 7, "conv4")(c3), 0.2, "conv4")
    d3 = leaky_relu(deconv(64, 7, "deconv3")(c4), 0.2, "deconv3")
    d4 = leaky_relu(deconv(16, 9, "deconv4")(keras.layers.Concatenate(name="skip3")([d3, c3])), 0.2, "deconv4")
    d5 = leaky_relu(deconv(8, 9, "deconv5")(keras.layers.Concatenate(name="skip2")([d4, c2])), 0.2, "deconv5")
    return deconv(n_outputs, 9, "deconv6", dtype="float32")(keras.layers.Concatenate(name="skip1")([d5, c1]))


@ARCHITECTURES.register
class Original:
    """The published CENN (Casas et al. 2022): four stride-2 convolutions, four transposed convolutions
    with skips, about 1.0 M parameters; L2 weight decay ``cenn_train.l2``."""

    name: ClassVar[str] = "original"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    @staticmethod
    def build(
        params: Params, n_channels: int, l2: float, name: str = "cenn", n_outputs: int = 1, npix: int | None = None
    ) -> keras.Model:
        return cenn_network(n_channels=n_channels, l2=l2, name=name, n_outputs=n_outputs)


@ARCHITECTURES.register
class EB:
    """CENN in E and B: fixed Fourier layers turn the Q and U maps of each frequency into E and B maps
    (:func:`cmbml.cenn.fourier_layers.spin_fourier`), the CENN layers map those to the target's E and B, and the
    inverse layers return Q and U. Its B output is a channel of its own, so noise need not leak into B. For the QU
    variant only (Q and U inputs and outputs, standardised with one scale per frequency for Q and U, see
    :func:`spin2_statistics`); built for one patch size.

    ``b_modes = "zero"`` returns an E-only estimate (its B output is zero): where the B signal per mode is far
    below the noise, as at Planck depth, the optimal B gain is close to zero, and B errors are too small a
    share of the MSE for a network to learn that gain from it."""

    name: ClassVar[str] = "eb"
    components: ClassVar[tuple[str, ...]] = ("Q", "U")  # the variants it takes (checked with the parameters)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        b_modes: Literal["learned", "zero"] = Field(
            "learned", description=("the B output: learned by the network, or zero (an E-only estimate of Q and U)")
        )

    @staticmethod
    def build(
        params: Params, n_channels: int, l2: float, name: str = "cenn", n_outputs: int = 2, npix: int | None = None
    ) -> keras.Model:
        import keras

        from cmbml.cenn.fourier_layers import spin_fourier

        if n_outputs != 2 or n_channels % 2 or npix is None:
            raise ValueError(
                f"cenn_net.architecture = eb needs Q and U in and out and the patch size (got "
                f"{n_channels} channels in, {n_outputs} out, npix {npix}): use it with cenn=QU"
            )
        inputs = keras.Input(shape=(npix, npix, n_channels), name="M")
        e_and_b = spin_fourier(inputs, npix, n_channels // 2, name="eb_in")
        if params.b_modes == "zero":  # the network's E beside a B made zero by built-in layers (safe-mode loadable)
            e = cenn_core(e_and_b, l2, 1)
            e_and_b_out = keras.layers.Concatenate(name="e_and_zero_b")(
                [e, keras.layers.Rescaling(0.0, name="zero_b")(e)]
            )
        else:
            e_and_b_out = cenn_core(e_and_b, l2, 2)
        return keras.Model(inputs, spin_fourier(e_and_b_out, npix, 1, inverse=True, name="eb_out"), name=name)


@ARCHITECTURES.register
class WienerInformed:
    """The Wiener filter plus a learned correction, as the ML + ILC hybrids: fixed Fourier layers apply the
    multi-channel Wiener filter fitted on the Train patches (:func:`cmbml.cenn.fourier_layers.fourier_filter`,
    its weights saved in the model), the CENN layers see the inputs and that estimate and return a correction,
    added to it. The last layer starts at zero, so the untrained network is the Wiener filter. For Q and U the
    correction is made in E and B (as :class:`EB`), so that it need not put noise into B. Built for one patch size;
    the stage passes ``linear_filter``, the filter on standardised maps (:func:`standardised_filter`)."""

    name: ClassVar[str] = "wiener_informed"
    informed_by: ClassVar[str] = "wiener"  # the stage fits this baseline on Train and passes it to build

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    @staticmethod
    def build(
        params: Params,
        n_channels: int,
        l2: float,
        name: str = "cenn",
        n_outputs: int = 1,
        npix: int | None = None,
        linear_filter: tuple | None = None,
    ) -> keras.Model:
        import keras

        from cmbml.cenn.fourier_layers import fourier_filter, spin_fourier

        if npix is None or linear_filter is None:
            raise ValueError("cenn_net.architecture = wiener_informed needs the patch size and the Wiener filter")
        weights, offset = linear_filter
        inputs = keras.Input(shape=(npix, npix, n_channels), name="M")
        wiener = fourier_filter(inputs, weights, offset, name="wiener")
        if n_outputs == 2:  # Q and U: the network sees and corrects E and B
            seen = keras.layers.Concatenate(name="eb_seen")(
                [
                    spin_fourier(inputs, npix, n_channels // 2, name="eb_in"),
                    spin_fourier(wiener, npix, 1, name="eb_wiener"),
                ]
            )
            correction = spin_fourier(cenn_core(seen, l2, 2), npix, 1, inverse=True, name="eb_out")
        else:
            correction = cenn_core(keras.layers.Concatenate(name="with_wiener")([inputs, wiener]), l2, n_outputs)
        model = keras.Model(inputs, keras.layers.Add(name="wiener_plus_correction")([wiener, correction]), name=name)
        last = model.get_layer("deconv6")
        last.set_weights([np.zeros_like(w) for w in last.get_weights()])
        return model


def spin2_statistics(
    means: list[float], stds: list[float], components: tuple[str, ...]
) -> tuple[list[float], list[float]]:
    """Standardisation of Q and U channels that keeps them a spin-2 field: zero mean and, per pair
    ``(Q_i, U_i)`` (channels ``[Q_1 .. Q_F, U_1 .. U_F]``), one scale, the root mean square of both.

    A rotation of the sky turns Q into U, so separate offsets or scales would make the standardised maps
    depend on the orientation and put B into a pure-E map. Scalar components (E, B) are returned unchanged.
    """
    if tuple(components) != ("Q", "U"):
        return list(means), list(stds)
    f = len(means) // 2
    m, s = np.asarray(means, dtype=float), np.asarray(stds, dtype=float)
    rms = np.sqrt((s[:f] ** 2 + m[:f] ** 2 + s[f:] ** 2 + m[f:] ** 2) / 2)
    return [0.0] * (2 * f), np.concatenate([rms, rms]).tolist()


def edge_taper(npix: int, width_pixels: int) -> np.ndarray:
    """A window (npix, npix) that rises as sin^2 from 0 at the patch edge to 1 at ``width_pixels`` from it."""
    ramp = np.ones(npix)
    x = (np.arange(width_pixels) + 0.5) / width_pixels
    ramp[:width_pixels] = np.sin(np.pi * x / 2) ** 2
    ramp[npix - width_pixels :] = ramp[:width_pixels][::-1]
    return np.outer(ramp, ramp)


def qu_loss(b_mode_weight: float, npix: int):
    """The training loss of a Q and U network: the MSE plus ``b_mode_weight`` times the B-mode power of the error
    (per pixel, as the MSE), measured as a pseudo-spectrum is: the Q and U error tapered to zero over the outer
    ``npix // 8`` pixels (:func:`edge_taper`), Fourier transformed and turned into E and B
    (:func:`cmbml.cenn.fourier_layers.spin_rotation`). Every positive quadratic loss of the error has the same
    minimiser, the posterior mean; the weight tells a finite network that noise put into B costs more than its
    share of the MSE. ``"mse"`` when the weight is 0."""
    if b_mode_weight == 0:
        return "mse"
    import keras

    from cmbml.cenn.fourier_layers import spin_rotation

    ops = keras.ops
    c, s = (ops.convert_to_tensor(r.astype(np.float32)) for r in spin_rotation(npix))
    window = ops.convert_to_tensor(edge_taper(npix, max(npix // 8, 1)).astype(np.float32))
    weight, n_modes = float(b_mode_weight), float(npix * npix)

    def mse_and_b_modes(y_true, y_pred):
        error = ops.cast(y_pred, "float32") - ops.cast(y_true, "float32")
        q, u = error[..., 0] * window, error[..., 1] * window
        zero = ops.zeros_like(q)
        q_re, q_im = ops.fft2((q, zero))
        u_re, u_im = ops.fft2((u, zero))
        b_re, b_im = c * u_re - s * q_re, c * u_im - s * q_im
        b_power = ops.mean(ops.square(b_re) + ops.square(b_im), axis=(1, 2)) / n_modes
        return ops.mean(ops.square(error), axis=(1, 2, 3)) + weight * b_power

    return mse_and_b_modes
