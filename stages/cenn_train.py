"""Stage `cenn_train`: CENN learns the 143 GHz CMB from the three channels; logged and registered in MLflow."""

from __future__ import annotations

from pathlib import Path

from stages._common import stage_params
from stages._training import TrainingJob, require_validated, train_and_log
from stages.cenn_simulate import dataset_path
from stages.cenn_validate import RESULT as VALIDATION_RESULT

MODEL_DIR = Path("models/cenn")
MODEL_FILE = MODEL_DIR / "model.keras"
RUN_FILE = MODEL_DIR / "mlflow_run.json"
PLOT_DIR = Path("plots/cenn/train")


def main() -> None:
    params = stage_params("cenn")
    require_validated(VALIDATION_RESULT)

    import keras

    from cmbml.models import cenn_network, make_optimizer
    from cmbml.training import make_h5_sequence, streamed_mean_std

    keras.utils.set_random_seed(params["seed"])
    train, variant = params["cenn_train"], params["cenn"]
    # One network for every component of the variant (E, B, or Q and U together).
    train_files = [dataset_path("Train", c) for c in variant["components"]]
    test_files = [dataset_path("Test", c) for c in variant["components"]]
    x_stats = streamed_mean_std(train_files, "M", per_channel=True)
    y_stats = streamed_mean_std(train_files, "M0", per_channel=True)
    core = cenn_network(n_channels=len(x_stats[0]), l2=train["l2"], name=f"cenn_{variant['variant']}")
    core.compile(optimizer=make_optimizer(train["optimizer"], train["learning_rate"]), loss="mse")
    batch = train["batch_size"]
    record = train_and_log(TrainingJob(
        params=params, experiment=params["mlflow"]["cenn_experiment"],
        registered_model=f"{params['mlflow']['cenn_registered_model_prefix']}-{variant['variant']}",
        parameter_set=variant["variant"], core=core,
        train_seq=make_h5_sequence(train_files, "M", "M0", batch, x_stats, y_stats, shuffle=True, seed=params["seed"]),
        val_seq=make_h5_sequence(test_files, "M", "M0", batch, x_stats, y_stats),
        x_stats=x_stats, y_stats=y_stats, epochs=params["scale"]["cenn"]["epochs"],
        patience=train["early_stopping_patience"], model_dir=MODEL_DIR, plot_dir=PLOT_DIR,
        title=f"CENN {variant['variant']}: training",
    ))
    print(f"cenn_train: {variant['variant']}, best val_loss {record['best_val_loss']:.4f} at epoch "
          f"{record['best_epoch']}; MLflow run {record['run_id']}")
