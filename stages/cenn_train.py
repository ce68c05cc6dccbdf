"""Stage `cenn_train`: CENN learns the target channel's CMB from every channel; logged and registered in MLflow."""

from __future__ import annotations

from stages._tracking import TrainingJob, train_and_log


def main() -> None:
    from cmbml.cenn.setup import load
    from cmbml.common.gate import require_passed

    setup = load()
    require_passed(setup.paths.validation)

    import keras

    from cmbml.cenn.networks import ARCHITECTURES
    from cmbml.common.networks import dtype_policy, make_optimizer
    from cmbml.common.training import H5Batches, distribution_strategy, streamed_mean_std, tf_dataset

    train, paths = setup.train, setup.paths
    strategy = distribution_strategy(train.strategy)
    keras.utils.set_random_seed(setup.seed)
    # One network for every component of the variant (E, B, or Q and U together); Test patches stop training.
    train_files = [paths.patch_file("Train", c) for c in setup.components]
    test_files = [paths.patch_file("Test", c) for c in setup.components]
    x_stats = streamed_mean_std(train_files, "M", per_channel=True)
    y_stats = streamed_mean_std(train_files, "M0", per_channel=True)
    with strategy.scope(), dtype_policy(train.precision):  # variables mirrored on every replica of the strategy
        architecture = ARCHITECTURES[setup.net_architecture]
        core = architecture.build(setup.net_params, n_channels=len(x_stats[0]), l2=train.l2, name=f"cenn_{setup.variant}")
        core.compile(optimizer=make_optimizer(train.optimizer, train.learning_rate), loss="mse")
    record = train_and_log(TrainingJob(
        tracking=setup.tracking, parameter_set=setup.variant, scale=setup.scale, core=core,
        group_choices={"cenn": setup.variant, "scale": setup.scale}, model_card=setup.model_card,
        datasets={"training": train_files, "early_stopping": test_files},
        train_batches=H5Batches(train_files, "M", "M0", train.batch_size, x_stats, y_stats, shuffle=True,
                                seed=setup.seed),
        val_batches=H5Batches(test_files, "M", "M0", train.batch_size, x_stats, y_stats),
        input_pipeline=tf_dataset,
        x_stats=x_stats, y_stats=y_stats, epochs=train.epochs, patience=train.early_stopping_patience,
        model_file=paths.model, card_file=paths.model_card, history_file=paths.history,
        curve_file=paths.train_plots / "training_curve.png", title=f"CENN {setup.variant}: training",
        stage="cenn_train",
    ))
    print(f"cenn_train: {setup.variant}, best val_loss {record['best_val_loss']:.4f} at epoch "
          f"{record['best_epoch']}; MLflow run {record['run_id']}, {record['registered']}")
