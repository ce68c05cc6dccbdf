"""Keras building blocks shared by every network: dtype policy, standardisation, optimizers.

Importing this module imports Keras (and TensorFlow): keep it off start-up paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import numpy as np


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Build the layers created inside with a Keras dtype policy (``float32``, ``mixed_bfloat16`` or
    ``mixed_float16``: half-precision compute, float32 weights); the output layers of the networks here
    always compute in float32. The global policy is restored on exit, so the standardisation wrapper
    and everything after stay in float32. Under ``mixed_float16`` ``compile`` scales the loss."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def with_standardisation(core: keras.Model, x_mean, x_std, y_mean, y_std, name: str | None = None) -> keras.Model:
    """Wrap a network trained on standardised data so that it maps physical units to physical units.

    The statistics live in non-trainable ``Normalization`` layers, so they are saved with
    the model: ``x -> (x - x_mean) / x_std -> core -> y * y_std + y_mean``. Statistics may be
    scalars or per-channel sequences. The wrapped network is a predictor: a view of ``core``'s layers (the same
    weights) without its loss or optimizer, so that a model trained on a loss written in Python still loads in
    safe mode, with no custom objects.
    """
    norm_in = keras.layers.Normalization(mean=x_mean, variance=np.square(x_std), name="standardise_input")
    norm_out = keras.layers.Normalization(
        mean=y_mean, variance=np.square(y_std), invert=True, name="unstandardise_output"
    )
    inputs = keras.Input(
        shape=core.input_shape[1:], name=core.input_names[0] if hasattr(core, "input_names") else "input"
    )
    try:  # an uncompiled view of the same layers: no training configuration
        predictor = keras.Model(core.input, core.output, name=core.name)
    except AttributeError:  # never called on an Input (a Sequential built by fit): no graph to view, kept as it is
        predictor = core
    outputs = norm_out(predictor(norm_in(inputs)))
    return keras.Model(inputs, outputs, name=name or f"{core.name}_physical")


def make_optimizer(name: str, learning_rate: float, clipnorm: float | None = None):
    """A Keras optimizer by name, with optional gradient-norm clipping."""
    kwargs = {"learning_rate": learning_rate}
    if clipnorm:
        kwargs["clipnorm"] = float(clipnorm)
    classes = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "adagrad": keras.optimizers.Adagrad,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return classes[name](**kwargs)


def learning_rate(initial: float, schedule: str, total_steps: int):
    """The optimizer's learning rate: ``initial`` throughout (``"constant"``), or decaying from it to 0 along a
    half cosine over ``total_steps`` (``"cosine"``: the scale's epochs times the batches per epoch)."""
    if schedule == "constant":
        return initial
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(initial, max(int(total_steps), 1))
    raise ValueError(f"lr_schedule {schedule!r}: allowed constant or cosine")


def count_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
