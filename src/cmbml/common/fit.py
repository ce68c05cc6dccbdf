"""Fitting a network: early stopping on held-out batches, the best epoch's weights kept, and the
standardisation wrapped around the result.

Any compiled Keras model trains here on any batch source of :mod:`cmbml.common.training`. Nothing is
logged: a caller that tracks experiments passes ``on_epoch_end`` (the training stages log each epoch to
MLflow with it). Keras is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmbml.common.training import BatchSource, tf_dataset

if TYPE_CHECKING:
    import keras

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called after each epoch with its number (from 1) and its losses (``loss``, ``val_loss``) as floats."""

BEST_WEIGHTS = ".best.weights.h5"
"""Scratch file of the best epoch's weights, in the ``scratch`` folder of :func:`fit`; removed when it returns."""

RESUME_HISTORY = "history.json"
"""The losses of every finished epoch, in the ``resume_dir`` of :func:`fit` (beside Keras's backup)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training stopped at that epoch instead of running on."""


def _resumed_early_stopping(keras, patience: int, prior_val_losses: Sequence[float]):
    """Early stopping that continues from the epochs run before an interruption: the best ``val_loss`` so far and
    the epochs since it are taken from ``prior_val_losses`` instead of starting again from nothing."""

    class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if len(prior_val_losses):
                best = int(np.argmin(prior_val_losses))
                self.best, self.wait = float(prior_val_losses[best]), len(prior_val_losses) - 1 - best

    return ResumedEarlyStopping(monitor="val_loss", patience=patience)


@dataclass(frozen=True)
class Fit:
    """A fitted network.

    Attributes
    ----------
    history : mapping of str to list of float
        Keras's ``History.history``: ``loss`` and ``val_loss`` (standardised MSE) of each epoch run.
    model : keras.Model
        The network at its best epoch, wrapped to map physical units to physical units.
    """

    history: Mapping[str, Sequence[float]]
    model: Any

    @property
    def epochs_run(self) -> int:
        return len(self.history["loss"])

    @property
    def best_epoch(self) -> int:
        """The epoch (from 1) of the lowest ``val_loss``: the weights the model holds."""
        return int(np.argmin(self.history["val_loss"])) + 1

    @property
    def best_val_loss(self) -> float:
        return float(np.min(self.history["val_loss"]))

    def epochs(self) -> list[dict[str, float]]:
        """One record per epoch: ``{"epoch": 1, "loss": ..., "val_loss": ...}``."""
        return [{"epoch": i + 1, **{k: float(v[i]) for k, v in self.history.items()}} for i in range(self.epochs_run)]


def fit(
    core: keras.Model,
    training: BatchSource,
    early_stopping: BatchSource,
    epochs: int,
    patience: int,
    *,
    on_epoch_end: EpochCallback | None = None,
    input_pipeline: Callable[[BatchSource, int], Any] = tf_dataset,
    scratch: str | Path | None = None,
    resume_dir: str | Path | None = None,
    verbose: int = 2,
) -> Fit:
    """Fit a compiled network on standardised batches and wrap it for physical units.

    Training stops once ``val_loss`` on ``early_stopping`` has not improved for ``patience`` epochs, or
    after ``epochs``; the weights of the best epoch are then restored from a checkpoint.

    Parameters
    ----------
    core : keras.Model
        Compiled network on standardised data (built inside the distribution strategy's scope).
    training, early_stopping : BatchSource
        Batches to fit on (shuffled and augmented as they were built) and to stop on. The statistics of
        ``training`` (``x_stats``, ``y_stats``) are wrapped around the returned model.
    epochs : int
        At most this many passes over ``training``.
    patience : int
        Epochs without a lower ``val_loss`` before training stops.
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, losses)`` after each epoch: epoch from 1, losses as floats.
    input_pipeline : callable, optional
        ``(batches, epochs) -> what Model.fit reads``; :func:`~cmbml.common.training.tf_dataset` reads and
        standardises batches in parallel, ahead of the model step.
    scratch : path, optional
        Folder for the best-epoch checkpoint (:data:`BEST_WEIGHTS`, removed on return); default a temporary one.
    resume_dir : path, optional
        Folder that survives an interruption (a killed process, a batch system's wall-time limit): after every epoch
        it holds the model and optimizer (Keras's ``BackupAndRestore``), the best epoch's weights and the losses so
        far, and a later call with the same folder resumes after the last finished epoch, early stopping counting
        on from where it was. Removed once the fit ends.
    verbose : int, optional
        Keras's progress output: 2 prints one line per epoch.

    Returns
    -------
    Fit
        The losses of each epoch and the physical-units model (``x -> standardise -> core -> unstandardise``).

    Raises
    ------
    TrainingDiverged
        When the loss becomes NaN or infinite (training stops at that batch: nothing runs on with it).
    """
    import keras

    from cmbml.common.networks import with_standardisation

    if training.x_stats is None or training.y_stats is None:
        raise ValueError(
            "the training batches carry no standardisation statistics (x_stats, y_stats): the fitted "
            "model could not map physical units"
        )
    import json
    import shutil

    from cmbml.common.io import write_json

    with contextlib.ExitStack() as stack:
        if scratch is None:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="cmbml-fit-"))
        scratch = Path(resume_dir if resume_dir is not None else scratch)
        scratch.mkdir(parents=True, exist_ok=True)
        best = scratch / BEST_WEIGHTS
        prior: dict[str, list[float]] = {}
        if resume_dir is not None and (scratch / RESUME_HISTORY).is_file() and best.is_file():
            prior = json.loads((scratch / RESUME_HISTORY).read_text())
        prior_val = prior.get("val_loss", [])
        callbacks = [
            keras.callbacks.TerminateOnNaN(),
            _resumed_early_stopping(keras, patience, prior_val),
            keras.callbacks.ModelCheckpoint(
                best,
                monitor="val_loss",
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=min(prior_val) if prior_val else None,
            ),
        ]
        if resume_dir is not None:
            done = {k: list(v) for k, v in prior.items()}

            def record(epoch, logs):  # after the checkpoint and the backup of this epoch are written
                for k in ("loss", "val_loss"):
                    done.setdefault(k, []).append(float((logs or {}).get(k, float("nan"))))
                write_json(scratch / RESUME_HISTORY, done)

            callbacks += [
                keras.callbacks.BackupAndRestore(str(scratch / "backup"), delete_checkpoint=False),
                keras.callbacks.LambdaCallback(on_epoch_end=record),
            ]
        if on_epoch_end is not None:
            callbacks.append(
                keras.callbacks.LambdaCallback(
                    on_epoch_end=lambda epoch, logs: on_epoch_end(
                        epoch + 1, {k: float(v) for k, v in (logs or {}).items()}
                    )
                )
            )
        try:
            history = core.fit(
                input_pipeline(training, epochs),
                steps_per_epoch=len(training),
                validation_data=input_pipeline(early_stopping, 1),
                epochs=epochs,
                shuffle=False,  # the batches shuffle themselves, per epoch
                callbacks=callbacks,
                verbose=verbose,
            ).history
            history = {k: [*prior.get(k, []), *v] for k, v in history.items()}
            bad = [i + 1 for i, v in enumerate(history.get("loss", [])) if not np.isfinite(v)]
            if bad or not np.all(np.isfinite(history.get("val_loss", []))):
                epoch = bad[0] if bad else len(history.get("loss", []))
                raise TrainingDiverged(
                    f"the loss became NaN or infinite at epoch {epoch}: training stopped there; lower the learning "
                    "rate or check the inputs for non-finite values"
                )
            core.load_weights(best)
        except TrainingDiverged:
            if resume_dir is not None:
                shutil.rmtree(scratch, ignore_errors=True)  # nothing to resume from a diverged fit
            raise
        finally:
            if resume_dir is None:
                best.unlink(missing_ok=True)
    if resume_dir is not None:
        shutil.rmtree(scratch, ignore_errors=True)  # the fit ended: a later run starts afresh
    model = with_standardisation(core, *training.x_stats, *training.y_stats, name=core.name + "_physical")
    return Fit(history, model)


def write_fit(
    fitted: Fit, model_file: str | Path, history_file: str | Path, curve_file: str | Path, title: str
) -> None:
    """Write the physical-units model (same weights, same bytes), the losses per epoch
    (``{"history": [{"epoch": 1, "loss": ..., "val_loss": ...}, ...]}``) and the training curve."""
    from cmbml.common.io import write_json, write_keras_model
    from cmbml.common.plotting import plot_training_curve

    write_keras_model(fitted.model, model_file)
    plot_training_curve(fitted.history, curve_file, title)
    write_json(history_file, {"history": fitted.epochs()})
