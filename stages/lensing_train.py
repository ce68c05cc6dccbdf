"""Stage `lensing_train`: the network of `lensing_net.architecture` learns kappa from lensed T (a physics-informed
one also from what the quadratic estimator makes of T); everything is logged to MLflow."""

from __future__ import annotations

from stages.model_registry import train_log_and_register
from stages.tracking import ParameterSet


def main() -> None:
    from cmbml.common.gate import require_passed
    from cmbml.lensing.setup import load

    setup = load()
    require_passed(setup.paths.validation)

    import keras

    from cmbml.common.networks import dtype_policy, learning_rate, make_optimizer
    from cmbml.common.training import H5Batches, distribution_strategy, streamed_mean_std
    from cmbml.lensing.networks import ARCHITECTURES

    train, paths = setup.train, setup.paths
    # The network's input channels: lensed T, and for a physics-informed network what the quadratic estimator
    # of the version's sky makes of it (computed per batch, after the rotation or flip).
    maker = setup.input_maker()
    # Inputs and kappa standardised with training-set statistics, which the saved model carries.
    k_stats = streamed_mean_std(paths.training, "kappa")
    derived = {"x_transform": maker, "x_channels": len(maker.channels)} if maker.derived else {}
    if maker.derived:
        x_stats = streamed_mean_std(paths.training, "T_lensed", per_channel=True, transform=maker, max_samples=2000)
    else:
        x_stats = streamed_mean_std(paths.training, "T_lensed")
    training = H5Batches(
        paths.training,
        "T_lensed",
        "kappa",
        train.batch_size,
        x_stats,
        k_stats,
        augment=train.augment,
        shuffle=True,
        seed=setup.seed,
        **derived,
    )
    early_stopping = H5Batches(paths.early_stopping, "T_lensed", "kappa", train.batch_size, x_stats, k_stats, **derived)
    strategy = distribution_strategy(train.strategy)
    keras.utils.set_random_seed(setup.seed)
    # The version's network from the architecture registry; its variables mirrored on every replica.
    with strategy.scope(), dtype_policy(train.precision):
        architecture = ARCHITECTURES[setup.net_architecture]
        core = architecture.build(
            setup.net_params, setup.grid.npix, name=f"lensing_{setup.net_architecture}_{setup.version}"
        )
        if hasattr(architecture, "start"):  # e.g. a physics-informed network starts at the estimator's map
            architecture.start(core, x_stats, k_stats)
        rate = learning_rate(train.learning_rate, train.lr_schedule, train.epochs * len(training))
        core.compile(optimizer=make_optimizer(train.optimizer, rate, train.clipnorm), loss="mse")
    # Fit until val_loss stops improving and keep the best epoch; each epoch is logged to MLflow, the model
    # saved beside its card and registered as cmbml-lensing-<version>@<scale>.
    parameter_set = ParameterSet(setup.tracking, "lensing", setup.version, setup.scale, setup.model_card_for(maker))
    fitted, run_id, registered = train_log_and_register(
        parameter_set,
        "lensing_train",
        core,
        training,
        early_stopping,
        train,
        paths,
        title=f"lensing {setup.version}: training",
    )
    print(
        f"lensing_train: {setup.version}, best val_loss {fitted.best_val_loss:.4f} at epoch "
        f"{fitted.best_epoch}; MLflow run {run_id}, {registered}"
    )
