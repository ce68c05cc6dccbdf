"""Stage `cenn_train`: CENN learns the target channel's CMB from every channel; logged and registered in MLflow."""

from __future__ import annotations

from stages.model_registry import train_log_and_register
from stages.tracking import ParameterSet


def main() -> None:
    from cmbml.cenn.setup import load
    from cmbml.common.gate import require_passed

    setup = load()
    require_passed(setup.paths.validation)

    import keras

    from cmbml.cenn.baselines import BASELINES
    from cmbml.cenn.evaluation import iter_train_chunks
    from cmbml.cenn.fourier_layers import standardised_filter
    from cmbml.cenn.networks import ARCHITECTURES, qu_loss, spin2_statistics
    from cmbml.common.networks import dtype_policy, learning_rate, make_optimizer
    from cmbml.common.roles import EARLY_STOPPING, TRAINING
    from cmbml.common.training import H5Batches, distribution_strategy, stacked_mean_std

    train, paths = setup.train, setup.paths
    strategy = distribution_strategy(train.strategy)
    keras.utils.set_random_seed(setup.seed)
    # Sky maps and target CMB standardised per channel with training-set statistics, which the saved model
    # carries; the early-stopping patches (Test files) stop training.
    train_files = [paths.patch_file(TRAINING, c) for c in setup.components]
    test_files = [paths.patch_file(EARLY_STOPPING, c) for c in setup.components]
    # Q and U keep one scale per frequency and no offset, so that a turned sky is standardised alike.
    x_stats = spin2_statistics(*stacked_mean_std(train_files, "M"), setup.components)
    y_stats = spin2_statistics(*stacked_mean_std(train_files, "M0"), setup.components)
    # Rotated and flipped copies of each patch (the sky has no preferred direction), Q and U turned as spin-2.
    stokes = ([c for c in setup.components for _ in setup.instrument.channels], list(setup.components))
    training = H5Batches(
        train_files,
        "M",
        "M0",
        train.batch_size,
        x_stats,
        y_stats,
        shuffle=True,
        seed=setup.seed,
        stack_channels=True,
        augment=train.augment,
        stokes=stokes,
    )
    early_stopping = H5Batches(test_files, "M", "M0", train.batch_size, x_stats, y_stats, stack_channels=True)
    # One network sees every component of a patch at once (E, B, or Q and U together: one filter shared by Q
    # and U cannot tell E from B), one input channel per component and frequency, one output per component;
    # from the architecture registry, its variables mirrored on every replica.
    architecture = ARCHITECTURES[setup.net_architecture]
    informed = {}
    if getattr(architecture, "informed_by", None):  # a network that starts from a classical answer: that answer,
        # fitted on the same Train patches, as a fixed filter of the standardised maps
        files = dict(zip(setup.components, train_files))
        baseline = BASELINES[architecture.informed_by].fit(setup.baseline_setup(), lambda: iter_train_chunks(files))
        informed["linear_filter"] = standardised_filter(baseline.mode_matrix(), x_stats, y_stats)
    with strategy.scope(), dtype_policy(train.precision):
        core = architecture.build(
            setup.net_params,
            n_channels=len(setup.components) * len(setup.instrument.channels),
            l2=train.l2,
            name=f"cenn_{setup.variant}",
            n_outputs=len(setup.components),
            npix=training.x_shape[0],
            **informed,
        )
        rate = learning_rate(train.learning_rate, train.lr_schedule, train.epochs * len(training))
        core.compile(
            optimizer=make_optimizer(train.optimizer, rate), loss=qu_loss(train.b_mode_weight, training.x_shape[0])
        )
    # Fit until val_loss stops improving and keep the best epoch; each epoch is logged to MLflow, the model
    # saved beside its card and registered as cmbml-cenn-<variant>@<scale>.
    parameter_set = ParameterSet(setup.tracking, "cenn", setup.variant, setup.scale, setup.model_card)
    fitted, run_id, registered = train_log_and_register(
        parameter_set,
        "cenn_train",
        core,
        training,
        early_stopping,
        train,
        paths,
        title=f"CENN {setup.variant}: training",
    )
    print(
        f"cenn_train: {setup.variant}, best val_loss {fitted.best_val_loss:.4f} at epoch "
        f"{fitted.best_epoch}; MLflow run {run_id}, {registered}"
    )
