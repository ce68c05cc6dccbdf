"""Stage `lensing_train`: the version's CNN learns kappa from lensed T; everything is logged to MLflow."""

from __future__ import annotations

from stages._tracking import TrainingJob, train_and_log


def main() -> None:
    from cmbml.common.gate import require_passed
    from cmbml.lensing.setup import load

    setup = load()
    require_passed(setup.paths.validation)

    import keras

    from cmbml.common.networks import dtype_policy, make_optimizer
    from cmbml.lensing.networks import ARCHITECTURES
    from cmbml.common.training import H5Batches, distribution_strategy, streamed_mean_std, tf_dataset

    train, paths = setup.train, setup.paths
    strategy = distribution_strategy(train.strategy)
    keras.utils.set_random_seed(setup.seed)
    # Standardise inputs and targets with training-set statistics (saved inside the model).
    t_stats, k_stats = streamed_mean_std(paths.train, "T_lensed"), streamed_mean_std(paths.train, "kappa")
    with strategy.scope(), dtype_policy(train.precision):  # variables mirrored on every replica of the strategy
        architecture = ARCHITECTURES[setup.net_architecture]
        core = architecture.build(setup.net_params, setup.grid.npix, name=f"lensing_cnn_{setup.version}")
        core.compile(optimizer=make_optimizer(train.optimizer, train.learning_rate, train.clipnorm), loss="mse")
    record = train_and_log(TrainingJob(
        tracking=setup.tracking, parameter_set=setup.version, scale=setup.scale, core=core,
        group_choices={"lensing": setup.version, "scale": setup.scale}, model_card=setup.model_card,
        datasets={"training": [paths.train], "early_stopping": [paths.val]},
        train_batches=H5Batches(paths.train, "T_lensed", "kappa", train.batch_size, t_stats, k_stats,
                                augment=train.augment, shuffle=True, seed=setup.seed),
        val_batches=H5Batches(paths.val, "T_lensed", "kappa", train.batch_size, t_stats, k_stats),
        input_pipeline=tf_dataset,
        x_stats=t_stats, y_stats=k_stats, epochs=train.epochs, patience=train.early_stopping_patience,
        model_file=paths.model, card_file=paths.model_card, history_file=paths.history,
        curve_file=paths.train_plots / "training_curve.png", title=f"lensing {setup.version}: training",
        stage="lensing_train",
    ))
    print(f"lensing_train: {setup.version}, best val_loss {record['best_val_loss']:.4f} at epoch "
          f"{record['best_epoch']}; MLflow run {record['run_id']}, {record['registered']}")
