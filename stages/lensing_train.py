"""Stage `lensing_train`: the version's CNN learns kappa from lensed T; everything is logged to MLflow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stages._common import flatten, run_tags, stage_params, start_mlflow
from stages.lensing_simulate import OUT_DIR
from stages.lensing_validate import RESULT as VALIDATION_RESULT

MODEL_DIR = Path("models/lensing")
MODEL_FILE = MODEL_DIR / "model.keras"
RUN_FILE = MODEL_DIR / "mlflow_run.json"
PLOT_DIR = Path("plots/lensing/train")


def require_validated(result_file: Path) -> None:
    """Refuse to train on data the gate did not pass."""
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    if not result.get("success"):
        sys.exit(f"lensing_train: {result_file} does not record a passed validation; run lensing_validate first")


class MlflowEpochLogger:
    """Keras callback factory: per-epoch losses to the active MLflow run."""

    @staticmethod
    def make(mlflow):
        import keras

        class _Logger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch + 1)

        return _Logger()


def main() -> None:
    params = stage_params("lensing")
    require_validated(VALIDATION_RESULT)

    import keras
    import numpy as np
    from mlflow.models import infer_signature

    from cmbml.io import atomic_path, write_json
    from cmbml.models import count_parameters, lensing_cnn, make_optimizer, with_standardisation
    from cmbml.plots import plot_training_curve
    from cmbml.training import make_h5_sequence, streamed_mean_std

    keras.utils.set_random_seed(params["seed"])
    net, train, scale = params["lensing_net"], params["lensing_train"], params["scale"]["lensing"]
    version = params["lensing_version"]
    train_h5, val_h5 = OUT_DIR / "train.h5", OUT_DIR / "val.h5"

    # Standardise inputs and targets with training-set statistics (saved inside the model).
    t_stats = streamed_mean_std(train_h5, "T_lensed")
    k_stats = streamed_mean_std(train_h5, "kappa")
    batch = train["batch_size"]
    train_seq = make_h5_sequence(train_h5, "T_lensed", "kappa", batch, t_stats, k_stats,
                                 augment=train["augment"], shuffle=True, seed=params["seed"])
    val_seq = make_h5_sequence(val_h5, "T_lensed", "kappa", batch, t_stats, k_stats)

    core = lensing_cnn(params["npix"], net["conv_filters"], net["conv_kernels"], net["output_kernel"],
                       net["kernel_initializer"], name=f"lensing_cnn_{version}")
    core.compile(optimizer=make_optimizer(train["optimizer"], train["learning_rate"], train["clipnorm"]), loss="mse")

    mlflow = start_mlflow(params, params["mlflow"]["lensing_experiment"])
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    with mlflow.start_run(run_name=f"{version}-{params['scale']['name']}", tags=run_tags(params, version)) as run:
        logged = {k: v for k, v in flatten("", params).items() if not k.startswith(("mlflow.", "lensing_paper."))}
        mlflow.log_params({k: str(v) for k, v in logged.items()})
        mlflow.log_params({"n_parameters": count_parameters(core), "T_mean_uK": t_stats[0], "T_std_uK": t_stats[1],
                           "kappa_mean": k_stats[0], "kappa_std": k_stats[1]})
        best_path = MODEL_DIR / ".best.weights.h5"  # scratch: never read by a later stage
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=scale["early_stopping_patience"],
                                          restore_best_weights=True),
            keras.callbacks.ModelCheckpoint(best_path, monitor="val_loss", save_best_only=True,
                                            save_weights_only=True),
            MlflowEpochLogger.make(mlflow),
        ]
        history = core.fit(train_seq, validation_data=val_seq, epochs=scale["epochs"], callbacks=callbacks,
                           verbose=2).history
        core.load_weights(best_path)
        best_path.unlink()

        model = with_standardisation(core, *t_stats, *k_stats, name=f"lensing_{version}")
        with atomic_path(MODEL_FILE) as tmp:
            model.save(tmp)
        plot_training_curve(history, PLOT_DIR / "training_curve.png", f"lensing {version}: training")
        write_json(PLOT_DIR / "history.json", {"history": [
            {"epoch": i + 1, **{k: float(v[i]) for k, v in history.items()}} for i in range(len(history["loss"]))]})

        x_example = val_seq[0][0][:2] * t_stats[1] + t_stats[0]
        signature = infer_signature(x_example.astype(np.float32), model.predict(x_example, verbose=0))
        best_epoch = int(np.argmin(history["val_loss"])) + 1
        mlflow.log_metrics({"best_val_loss": float(np.min(history["val_loss"])), "best_epoch": best_epoch,
                            "epochs_run": len(history["loss"])})
        mlflow.log_artifact(str(PLOT_DIR / "training_curve.png"), artifact_path="plots")
        info = mlflow.keras.log_model(model, name="model", signature=signature,
                                      registered_model_name=params["mlflow"]["lensing_registered_model"])
        write_json(RUN_FILE, {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                              "model_uri": info.model_uri, "tracking_uri": mlflow.get_tracking_uri()})
    print(f"lensing_train: {version}, best val_loss {min(history['val_loss']):.4f} at epoch {best_epoch}; "
          f"MLflow run {run.info.run_id}")
