"""Lensing networks: the architecture registry (``lensing_net.architecture``) and its networks.

Each architecture is one class registered in :data:`ARCHITECTURES`: ``Params`` (a pydantic model of its
block ``lensing_net.<name>``: type, range and unit of each key, unknown keys refused) and ``build``,
which returns an uncompiled Keras model from a standardised lensed T map ``(npix, npix, 1)`` to
standardised kappa ``(npix, npix, 1)``. Keras is imported inside ``build`` only, so that checking
parameters stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cmbml.common.registry import Registry

if TYPE_CHECKING:
    import keras

ARCHITECTURES: Registry = Registry("lensing_net.architecture")

KERNEL_INITIALIZERS = ("glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
                       "orthogonal", "random_normal", "random_uniform", "truncated_normal")
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
        x = keras.layers.Conv2D(filters, kernel, padding="same", activation="relu",
                                kernel_initializer=kernel_initializer, name=f"conv{i + 1}")(x)
    outputs = keras.layers.Conv2D(1, output_kernel, padding="same", activation=None, dtype="float32",
                                  kernel_initializer=kernel_initializer, name="kappa_out")(x)
    return keras.Model(inputs, outputs, name=name)



@ARCHITECTURES.register
class Original:
    """The cnn_lensing network of each version (v1-v8): same-padded ReLU convolutions, linear output."""

    name: ClassVar[str] = "original"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        conv_filters: list[int] = Field(min_length=1, description="filters of each hidden Conv2D layer")
        conv_kernels: list[int] = Field(min_length=1, description="kernel side of each hidden layer, pixels (odd)")
        output_kernel: int = Field(ge=1, le=31, description="kernel side of the linear output layer, pixels")
        kernel_initializer: KernelInitializer = Field("orthogonal", description=(
            "Keras initializer of every kernel, one of " + ", ".join(KERNEL_INITIALIZERS)))

        @model_validator(mode="after")
        def _layers(self):
            problems = []
            if len(self.conv_filters) != len(self.conv_kernels):
                problems.append(f"conv_filters ({self.conv_filters!r}) and conv_kernels ({self.conv_kernels!r}) "
                                "must have the same length: one kernel per hidden layer")
            problems += [f"conv_filters[{i}] = {f!r}: allowed integers 1 <= filters <= 4096"
                         for i, f in enumerate(self.conv_filters) if not 1 <= f <= 4096]
            problems += [f"conv_kernels[{i}] = {k!r}: allowed odd integers 1 <= kernel <= 31"
                         for i, k in enumerate(self.conv_kernels) if not (1 <= k <= 31 and k % 2 == 1)]
            if problems:
                raise ValueError("; ".join(problems))
            return self

    @staticmethod
    def build(params: Params, npix: int | None, name: str = "lensing_cnn") -> keras.Model:
        return lensing_cnn(npix, params.conv_filters, params.conv_kernels, params.output_kernel,
                           params.kernel_initializer, name=name)
