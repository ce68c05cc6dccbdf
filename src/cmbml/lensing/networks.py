"""Lensing networks: the architecture registry (``lensing_net.architecture``) and its networks.

Each architecture is one class registered in :data:`ARCHITECTURES`: ``Params`` (a pydantic model of its
block ``lensing_net.<name>``: type, range and unit of each key, unknown keys refused), ``inputs`` (the input
channels, names of :data:`cmbml.lensing.inputs.CHANNELS`: the lensed T map, and for a physics-informed network
what the quadratic estimator makes of it) and ``build``, which returns an uncompiled Keras model from
standardised inputs ``(npix, npix, len(inputs))`` to standardised kappa ``(npix, npix, 1)``; optionally
``start(model, x_stats, y_stats)``, which sets the initial weights from the training statistics. Every layer is a
Keras built-in, so the saved models load in safe mode. Keras is imported inside ``build`` only, so that checking
parameters stays fast.

- ``original``: the cnn_lensing network of each version, the record of the original project: same-padded
  3 x 3 convolutions at full resolution, which see a few pixels of a map whose lensing is spread over all of it.
- ``resunet``: a multi-scale residual encoder-decoder with skips (after ResUNet-CMB, Guzman & Meyers 2021) on
  the periodically padded map: it sees the whole patch, from the lensed T alone.
- ``resunet_qe``: the same network given also the Wiener-filtered quadratic estimate of kappa, which it may pass
  straight to its output (a 1 x 1 convolution over the decoder's features and the inputs): it starts from the
  classical answer and learns what it misses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cmbml.common.registry import Registry

if TYPE_CHECKING:
    import keras

ARCHITECTURES: Registry = Registry("lensing_net.architecture")

KERNEL_INITIALIZERS = (
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "orthogonal",
    "random_normal",
    "random_uniform",
    "truncated_normal",
)
"""Keras initializers a convolution kernel may take by name without arguments (tested against Keras)."""
KernelInitializer = Literal[KERNEL_INITIALIZERS]


def lensing_cnn(
    npix: int | None,
    conv_filters: Sequence[int],
    conv_kernels: Sequence[int],
    output_kernel: int,
    kernel_initializer: str = "orthogonal",
    name: str = "lensing_cnn",
) -> keras.Model:
    """The cnn_lensing network: a stack of same-padded ReLU convolutions.

    Unlike the original, the output layer is linear: a ReLU there clips negative kappa.
    Input (npix, npix, 1) standardised lensed T; output (npix, npix, 1) standardised kappa.
    ``npix=None`` builds a size-agnostic (fully convolutional) model.
    """
    import keras

    inputs = keras.Input(shape=(npix, npix, 1), name="T_lensed")
    x = inputs
    for i, (filters, kernel) in enumerate(zip(conv_filters, conv_kernels)):
        x = keras.layers.Conv2D(
            filters,
            kernel,
            padding="same",
            activation="relu",
            kernel_initializer=kernel_initializer,
            name=f"conv{i + 1}",
        )(x)
    outputs = keras.layers.Conv2D(
        1,
        output_kernel,
        padding="same",
        activation=None,
        dtype="float32",
        kernel_initializer=kernel_initializer,
        name="kappa_out",
    )(x)
    return keras.Model(inputs, outputs, name=name)


@ARCHITECTURES.register
class Original:
    """The cnn_lensing network of each version (v1-v8): same-padded ReLU convolutions, linear output."""

    name: ClassVar[str] = "original"
    inputs: ClassVar[tuple[str, ...]] = ("T",)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        conv_filters: list[int] = Field(min_length=1, description="filters of each hidden Conv2D layer")
        conv_kernels: list[int] = Field(min_length=1, description="kernel side of each hidden layer, pixels (odd)")
        output_kernel: int = Field(ge=1, le=31, description="kernel side of the linear output layer, pixels")
        kernel_initializer: KernelInitializer = Field(
            "orthogonal", description=("Keras initializer of every kernel, one of " + ", ".join(KERNEL_INITIALIZERS))
        )

        @model_validator(mode="after")
        def _layers(self):
            problems = []
            if len(self.conv_filters) != len(self.conv_kernels):
                problems.append(
                    f"conv_filters ({self.conv_filters!r}) and conv_kernels ({self.conv_kernels!r}) "
                    "must have the same length: one kernel per hidden layer"
                )
            problems += [
                f"conv_filters[{i}] = {f!r}: allowed integers 1 <= filters <= 4096"
                for i, f in enumerate(self.conv_filters)
                if not 1 <= f <= 4096
            ]
            problems += [
                f"conv_kernels[{i}] = {k!r}: allowed odd integers 1 <= kernel <= 31"
                for i, k in enumerate(self.conv_kernels)
                if not (1 <= k <= 31 and k % 2 == 1)
            ]
            if problems:
                raise ValueError("; ".join(problems))
            return self

    @staticmethod
    def build(params: Params, npix: int | None, name: str = "lensing_cnn") -> keras.Model:
        return lensing_cnn(
            npix, params.conv_filters, params.conv_kernels, params.output_kernel, params.kernel_initializer, name=name
        )


def periodic_margin(npix: int, depth: int, min_margin: int) -> int:
    """Pixels added on each side by periodic padding so that the padded side, ``npix + 2 margin``, halves
    ``depth`` times exactly, with at least ``min_margin`` pixels of wrapped context."""
    if npix % 2:
        raise ValueError(
            f"npix = {npix}: a multi-scale network needs an even map side (a padded side of "
            f"npix + 2 margin must halve {depth} times)"
        )
    step = 2**depth
    side = npix + 2 * min_margin
    side = -(-side // step) * step
    while (side - npix) % 2:
        side += step
    return (side - npix) // 2


def periodic_pad(x, margin: int, npix: int, name: str):
    """Pad (batch, npix, npix, c) maps periodically by ``margin`` pixels per side: the patches are periodic
    (simulated by FFT), so a convolution at the edge sees the pixels across it. Built from ``Cropping2D`` and
    ``Concatenate`` (Keras built-ins)."""
    import keras

    if margin == 0:
        return x
    if margin > npix:
        raise ValueError(f"periodic margin {margin} exceeds the map side {npix}")
    L = keras.layers
    rest = npix - margin
    left = L.Cropping2D(((0, 0), (rest, 0)), name=f"{name}_wrap_left")(x)  # the last columns, placed before
    right = L.Cropping2D(((0, 0), (0, rest)), name=f"{name}_wrap_right")(x)
    x = L.Concatenate(axis=2, name=f"{name}_wrap_x")([left, x, right])
    top = L.Cropping2D(((rest, 0), (0, 0)), name=f"{name}_wrap_top")(x)
    bottom = L.Cropping2D(((0, rest), (0, 0)), name=f"{name}_wrap_bottom")(x)
    return L.Concatenate(axis=1, name=f"{name}_wrap_y")([top, x, bottom])


def residual_block(x, filters: int, name: str, batch_norm: bool, initializer: str):
    """``relu(x W + conv(relu(conv(x))))``: two 3 x 3 convolutions beside a 1 x 1 projection of the input."""
    import keras

    L = keras.layers
    shortcut = (
        x if x.shape[-1] == filters else L.Conv2D(filters, 1, kernel_initializer=initializer, name=f"{name}_project")(x)
    )
    y = x
    for k in (1, 2):
        y = L.Conv2D(
            filters, 3, padding="same", kernel_initializer=initializer, use_bias=not batch_norm, name=f"{name}_conv{k}"
        )(y)
        if batch_norm:  # momentum 0.9: the moving statistics settle within the few hundred steps of a short run
            y = L.BatchNormalization(momentum=0.9, name=f"{name}_bn{k}")(y)
        if k == 1:
            y = L.Activation("relu", name=f"{name}_relu{k}")(y)
    return L.Activation("relu", name=f"{name}_out")(L.Add(name=f"{name}_add")([shortcut, y]))


def resunet(
    npix: int,
    n_inputs: int,
    base_filters: int,
    depth: int,
    blocks_per_level: int,
    min_margin: int,
    batch_norm: bool,
    kernel_initializer: str,
    pass_inputs: bool,
    name: str,
) -> keras.Model:
    """A residual encoder-decoder with skips on periodically padded maps.

    Input (npix, npix, n_inputs) standardised channels; output (npix, npix, 1) standardised kappa. Level ``k``
    works at ``2^-k`` of the padded resolution with ``base_filters * 2^k`` filters; strided convolutions go
    down, transposed convolutions up, each decoder level concatenates the encoder's features of its
    resolution. With ``pass_inputs`` the linear output layer also sees the (cropped) inputs, so a channel that
    already estimates kappa reaches the output through one weight.
    """
    import keras

    L = keras.layers
    margin = periodic_margin(npix, depth, min_margin)
    inputs = keras.Input(shape=(npix, npix, n_inputs), name="inputs")
    x = periodic_pad(inputs, margin, npix, "pad")
    x = L.Conv2D(base_filters, 3, padding="same", kernel_initializer=kernel_initializer, name="stem")(x)
    skips = []
    for level in range(depth):
        for b in range(blocks_per_level):
            x = residual_block(x, base_filters * 2**level, f"down{level}_{b}", batch_norm, kernel_initializer)
        skips.append(x)
        x = L.Conv2D(
            base_filters * 2 ** (level + 1),
            3,
            strides=2,
            padding="same",
            kernel_initializer=kernel_initializer,
            name=f"down{level}_stride",
        )(x)
    for b in range(blocks_per_level):
        x = residual_block(x, base_filters * 2**depth, f"bottom_{b}", batch_norm, kernel_initializer)
    for level in reversed(range(depth)):
        x = L.Conv2DTranspose(
            base_filters * 2**level, 2, strides=2, kernel_initializer=kernel_initializer, name=f"up{level}_transpose"
        )(x)
        x = L.Concatenate(name=f"up{level}_skip")([x, skips[level]])
        for b in range(blocks_per_level):
            x = residual_block(x, base_filters * 2**level, f"up{level}_{b}", batch_norm, kernel_initializer)
    x = L.Cropping2D(margin, name="crop")(x)
    if pass_inputs:
        x = L.Concatenate(name="features_and_inputs")([x, inputs])
    # Zero-initialised output: training starts from kappa = 0 (the mean) rather than from random decoder
    # features, so a channel that already estimates kappa is picked up within a few steps.
    outputs = L.Conv2D(1, 1, activation=None, dtype="float32", kernel_initializer="zeros", name="kappa_out")(x)
    return keras.Model(inputs, outputs, name=name)


class _ResUNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: "yes" is not a boolean, 1.5 not an integer
    base_filters: int = Field(16, ge=1, le=512, description="filters at full resolution, doubled at each level down")
    depth: int = Field(3, ge=1, le=6, description="times the resolution halves")
    blocks_per_level: int = Field(1, ge=1, le=8, description="residual blocks at each resolution")
    min_margin_pixels: int = Field(
        4,
        ge=0,
        le=64,
        description=(
            "least periodic padding per side, pixels (more is added so that the padded side halves depth times)"
        ),
    )
    batch_norm: bool = Field(True, description="batch normalisation after each convolution of a residual block")
    kernel_initializer: KernelInitializer = Field(
        "he_normal", description=("Keras initializer of every kernel, one of " + ", ".join(KERNEL_INITIALIZERS))
    )


@ARCHITECTURES.register
class ResUNet:
    """Multi-scale residual encoder-decoder on the periodically padded lensed T map (the data alone)."""

    name: ClassVar[str] = "resunet"
    inputs: ClassVar[tuple[str, ...]] = ("T",)
    even_npix: ClassVar[bool] = True  # its resolution halves
    pass_inputs: ClassVar[bool] = False  # whether the linear output layer also sees the inputs
    Params = _ResUNetParams

    @classmethod
    def build(cls, params: _ResUNetParams, npix: int | None, name: str | None = None) -> keras.Model:
        if npix is None:
            raise ValueError(f"{cls.name} needs the map side (its periodic padding depends on it)")
        return resunet(
            npix,
            len(cls.inputs),
            params.base_filters,
            params.depth,
            params.blocks_per_level,
            params.min_margin_pixels,
            params.batch_norm,
            params.kernel_initializer,
            pass_inputs=cls.pass_inputs,
            name=name or f"lensing_{cls.name}",
        )


@ARCHITECTURES.register
class ResUNetQE(ResUNet):
    """The residual encoder-decoder given the lensed T map and the Wiener-filtered quadratic estimate of
    kappa, which its linear output layer can pass through: physics in, the network learns the rest."""

    name: ClassVar[str] = "resunet_qe"
    inputs: ClassVar[tuple[str, ...]] = ("T", "kappa_qe")
    pass_inputs: ClassVar[bool] = True

    @classmethod
    def start(cls, model: keras.Model, x_stats, y_stats) -> None:
        """Set the output layer so that the untrained network returns the kappa_qe channel: in standardised
        units ``(q - m_q) / s_q * s_q / s_k + (m_q - m_k) / s_k = (q - m_k) / s_k``. Training thus starts from
        the classical answer (rho of the quadratic estimator) instead of from zero, whatever the learning rate,
        and the weight of the other features grows only where they add something."""
        import numpy as np

        layer = model.get_layer("kappa_out")
        kernel, bias = (np.array(w) for w in layer.get_weights())
        channel = kernel.shape[2] - len(cls.inputs) + cls.inputs.index("kappa_qe")
        m_q, s_q = x_stats[0][cls.inputs.index("kappa_qe")], x_stats[1][cls.inputs.index("kappa_qe")]
        m_k, s_k = (float(np.ravel(v)[0]) for v in y_stats)
        kernel[:] = 0.0
        kernel[0, 0, channel, 0] = s_q / s_k
        bias[:] = (m_q - m_k) / s_k
        layer.set_weights([kernel, bias])
