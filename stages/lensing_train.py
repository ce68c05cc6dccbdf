"""Stage `lensing_train`: the version's CNN learns kappa from lensed T; everything is logged to MLflow."""

from __future__ import annotations

from pathlib import Path

from stages._common import stage_params
from stages._training import TrainingJob, require_validated, train_and_log
from stages.lensing_simulate import OUT_DIR
from stages.lensing_validate import RESULT as VALIDATION_RESULT

MODEL_DIR = Path("models/lensing")
MODEL_FILE = MODEL_DIR / "model.keras"
RUN_FILE = MODEL_DIR / "mlflow_run.json"
PLOT_DIR = Path("plots/lensing/train")


def main() -> None:
    params = stage_params("lensing")
    require_validated(VALIDATION_RESULT)

    import keras

    from cmbml.models import lensing_cnn, make_optimizer
    from cmbml.training import make_h5_sequence, streamed_mean_std

    keras.utils.set_random_seed(params["seed"])
    net, train, scale = params["lensing_net"], params["lensing_train"], params["scale"]["lensing"]
    version = params["lensing_version"]
    train_h5, val_h5 = OUT_DIR / "train.h5", OUT_DIR / "val.h5"

    # Standardise inputs and targets with training-set statistics (saved inside the model).
    t_stats, k_stats = streamed_mean_std(train_h5, "T_lensed"), streamed_mean_std(train_h5, "kappa")
    batch = train["batch_size"]
    core = lensing_cnn(params["npix"], net["conv_filters"], net["conv_kernels"], net["output_kernel"],
                       net["kernel_initializer"], name=f"lensing_cnn_{version}")
    core.compile(optimizer=make_optimizer(train["optimizer"], train["learning_rate"], train["clipnorm"]), loss="mse")
    record = train_and_log(TrainingJob(
        params=params, experiment=params["mlflow"]["lensing_experiment"],
        registered_model=params["mlflow"]["lensing_registered_model"], parameter_set=version, core=core,
        train_seq=make_h5_sequence(train_h5, "T_lensed", "kappa", batch, t_stats, k_stats,
                                   augment=train["augment"], shuffle=True, seed=params["seed"]),
        val_seq=make_h5_sequence(val_h5, "T_lensed", "kappa", batch, t_stats, k_stats),
        x_stats=t_stats, y_stats=k_stats, epochs=scale["epochs"], patience=scale["early_stopping_patience"],
        model_dir=MODEL_DIR, plot_dir=PLOT_DIR, title=f"lensing {version}: training",
    ))
    print(f"lensing_train: {version}, best val_loss {record['best_val_loss']:.4f} at epoch {record['best_epoch']}; "
          f"MLflow run {record['run_id']}")
