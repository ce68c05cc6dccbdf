"""Training input: HDF5 batches addressed by (epoch, step), the tf.data pipeline, and mixed precision."""

import h5py
import numpy as np
import pytest

from cmbml.common.training import H5Batches, tf_dataset


@pytest.fixture
def files(tmp_path):
    """Two files of 10 and 7 samples: x = (sample index) + small pixel pattern, y = -x."""
    paths = []
    start = 0
    for n in (10, 7):
        path = tmp_path / f"part{start}.h5"
        x = (start + np.arange(n))[:, None, None] + 0.01 * np.arange(16).reshape(1, 4, 4)
        with h5py.File(path, "w") as h5:
            h5["x"], h5["y"] = x.astype(np.float32), -x.astype(np.float32)
        paths.append(path)
        start += n
    return paths


def sample_ids(x):
    return np.round(x[:, 0, 0, 0]).astype(int).tolist()


def test_every_epoch_covers_every_sample_once_in_its_own_shuffled_order(files):
    """Batches never straddle files; shuffling permutes batches per epoch, from (seed, epoch) alone."""
    batches = H5Batches(files, "x", "y", batch_size=4, shuffle=True, seed=5)
    assert len(batches) == 3 + 2 and batches.n_samples == 17
    orders = []
    for epoch in range(3):
        ids = [sample_ids(batches.batch(epoch, step)[0]) for step in range(len(batches))]
        assert sorted(sum(ids, [])) == list(range(17))
        orders.append(ids)
    assert orders[0] != orders[1] != orders[2]
    again = H5Batches(files, "x", "y", batch_size=4, shuffle=True, seed=5)
    assert [sample_ids(again.batch(1, s)[0]) for s in reversed(range(5))][::-1] == orders[1]  # any read order


def test_standardisation_channel_axis_and_paired_augmentation(files):
    """(v - mean) / std with the training statistics; a channel axis is added; x and y get the same symmetry."""
    batches = H5Batches(files, "x", "y", batch_size=17, x_stats=(1.0, 2.0), y_stats=(-1.0, 2.0), augment=True, seed=1)
    x, y = batches.batch(0, 0)
    assert x.shape == (10, 4, 4, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x * 2.0 + 1.0, -(y * 2.0 - 1.0), atol=1e-5)  # same transform on both
    raw = H5Batches(files, "x", "y", batch_size=17).batch(0, 0)[0]
    assert not np.array_equal(x * 2.0 + 1.0, raw)  # some pairs rotated or flipped
    np.testing.assert_allclose(np.sort((x * 2.0 + 1.0).ravel()), np.sort(raw.ravel()), atol=1e-5)
    np.testing.assert_array_equal(x, batches.batch(0, 0)[0])  # augmentation drawn from (seed, epoch, step)


def test_tf_data_pipeline_reads_in_parallel_and_gives_the_same_batches_in_order(files):
    """Parallel reads and prefetching change neither the batches nor their order, over several epochs."""
    batches = H5Batches(files, "x", "y", batch_size=4, x_stats=(3.0, 2.0), augment=True, shuffle=True, seed=2)
    got = [(x.numpy(), y.numpy()) for x, y in tf_dataset(batches, epochs=3, parallel_reads=4, prefetch=2)]
    expected = [batches.batch(e, s) for e in range(3) for s in range(len(batches))]
    assert len(got) == len(expected) == 15
    for (x, y), (x0, y0) in zip(got, expected):
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_in_half_precision_with_float32_weights_and_output(precision):
    """Hidden layers compute in 16 bits with float32 variables; the output layer computes in float32; the
    global policy is restored, so the standardisation wrapper stays in float32."""
    import keras

    from cmbml.cenn.networks import cenn_network
    from cmbml.common.networks import dtype_policy, with_standardisation
    from cmbml.lensing.networks import lensing_cnn

    with dtype_policy(precision):
        nets = [lensing_cnn(16, [4], [3], 3), cenn_network(3)]
    assert keras.config.dtype_policy().name == "float32"
    half = precision.split("_")[1]
    for net in nets:
        hidden = [layer for layer in net.layers if layer.weights][0]
        assert hidden.compute_dtype == half and hidden.variable_dtype == "float32"
        assert net.layers[-1].compute_dtype == "float32"
        x = np.zeros((1, 16, 16, net.input_shape[-1]), np.float32)
        assert keras.ops.convert_to_numpy(net(x)).dtype == np.float32
    wrapped = with_standardisation(nets[0], 0.0, 1.0, 0.0, 1.0)
    assert wrapped.layers[1].compute_dtype == "float32"


def test_keras_feed_for_other_backends_gives_the_same_batches_epoch_after_epoch(files):
    """The threaded PyDataset (JAX/PyTorch backends) reads batch (epoch, step) exactly as tf.data does."""
    from cmbml.common.training import keras_feed

    batches = H5Batches(files, "x", "y", batch_size=4, augment=True, shuffle=True, seed=3)
    feed = keras_feed(batches, workers=3)
    for epoch in range(2):
        for step in range(len(feed)):
            np.testing.assert_array_equal(feed[step][0], batches.batch(epoch, step)[0])
        feed.on_epoch_end()


def test_strategies_by_name():
    """`single` is TensorFlow's default strategy (one replica); an unknown name is refused."""
    import tensorflow as tf

    from cmbml.common.training import distribution_strategy

    single = distribution_strategy("single")
    assert single is tf.distribute.get_strategy() and single.num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="allowed single, mirrored"):
        distribution_strategy("multi_worker_mirrored")


def test_array_batches_standardise_as_h5_batches_do(files):
    """In-memory batches: the same standardisation and channel axis as the HDF5 ones, in order."""
    import h5py

    from cmbml.common.training import ArrayBatches

    with h5py.File(files[0], "r") as h5:
        x, y = h5["x"][:], h5["y"][:]
    stats = {"x_stats": (1.0, 2.0), "y_stats": (-1.0, 4.0)}
    memory, disk = ArrayBatches(x, y, 4, **stats), H5Batches(files[0], "x", "y", 4, **stats)
    assert len(memory) == len(disk) == 3 and memory.x_shape == disk.x_shape == (4, 4, 1)
    for step in range(3):
        for a, b in zip(memory.batch(0, step), disk.batch(0, step)):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="one target per input"):
        ArrayBatches(x, y[:-1], 4)


def diverging_fit(tmp_path, patience, **kwargs):
    """y = -x fitted by w x with SGD at a learning rate so large that every step overshoots further: val_loss
    rises after the first epoch, so the best epoch is the first."""
    import keras

    from cmbml.common.fit import fit
    from cmbml.common.training import ArrayBatches

    x = np.random.default_rng(0).standard_normal((8, 4, 4)).astype(np.float32)
    stats = (float(x.mean()), float(x.std()))
    training = ArrayBatches(x, -x, 8, stats, (-stats[0], stats[1]))
    early_stopping = ArrayBatches(x, -x, 8, stats, (-stats[0], stats[1]))
    core = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="zeros")], name="w"
    )
    core.compile(optimizer=keras.optimizers.SGD(learning_rate=2.0), loss="mse")
    weights, losses = {}, {}

    def on_epoch_end(epoch, logs):
        weights[epoch], losses[epoch] = float(core.get_weights()[0].ravel()[0]), logs

    fitted = fit(
        core,
        training,
        early_stopping,
        epochs=20,
        patience=patience,
        on_epoch_end=on_epoch_end,
        scratch=tmp_path,
        **kwargs,
    )
    return fitted, core, weights, losses, x


def test_fit_stops_after_patience_epochs_without_progress_and_keeps_the_best_epoch(tmp_path):
    from cmbml.common.fit import BEST_WEIGHTS

    fitted, core, weights, losses, x = diverging_fit(tmp_path, patience=2, verbose=0)
    assert fitted.epochs_run == 3 and sorted(losses) == [1, 2, 3]  # epoch 1, then 2 epochs without progress
    assert fitted.best_epoch == 1 and fitted.best_val_loss == pytest.approx(losses[1]["val_loss"])
    assert losses[1]["val_loss"] < losses[2]["val_loss"] < losses[3]["val_loss"]
    assert weights[3] != weights[1]
    assert float(core.get_weights()[0].ravel()[0]) == weights[1]  # the best epoch's weights, restored
    assert [r["epoch"] for r in fitted.epochs()] == [1, 2, 3]
    assert fitted.epochs()[0]["val_loss"] == pytest.approx(losses[1]["val_loss"])
    assert not (tmp_path / BEST_WEIGHTS).exists()  # the checkpoint is scratch
    # the returned model works in physical units: standardise, the core, unstandardise
    mean, std = float(x.mean()), float(x.std())
    expected = (weights[1] * (x - mean) / std) * std - mean
    np.testing.assert_allclose(fitted.model.predict(x[..., None], verbose=0)[..., 0], expected, rtol=1e-5, atol=1e-5)
    assert fitted.model.name == "w_physical"


def test_fit_needs_standardised_training_batches(tmp_path):
    import keras

    from cmbml.common.fit import fit
    from cmbml.common.training import ArrayBatches

    x = np.zeros((4, 4, 4), np.float32)
    core = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 1)])
    core.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="standardisation statistics"):
        fit(core, ArrayBatches(x, x, 2), ArrayBatches(x, x, 2), epochs=1, patience=1)


MASK = np.arange(16, dtype=np.float32).reshape(4, 4) + 1.0
"""A pixel weight with no symmetry of the square: multiplying by it does not commute with rotations or flips."""


def masked_and_shifted(x):
    """Two derived channels from (N, 4, 4) or (N, 4, 4, 1) maps: the maps times MASK, and the maps plus 1."""
    x = np.asarray(x, dtype=np.float64)
    x = x[..., 0] if x.ndim == 4 else x
    return np.stack([x * MASK, x + 1.0], axis=-1)


def test_x_transform_makes_the_derived_channels_after_the_augmentation_then_standardises_them(files):
    """With x_transform, x is (batch, n, n, x_channels): transform(augment(raw x)) standardised per channel with
    x_stats, the augmentation drawn from (seed, epoch, step) as without a transform; y is as without it.
    Transforming before the augmentation would give other inputs (MASK is not rotation-covariant)."""
    from cmbml.common.training import augment_batch

    x_stats = ([10.0, 9.0], [50.0, 5.0])
    y_stats = (-8.0, 5.0)
    batches = H5Batches(
        files,
        "x",
        "y",
        batch_size=4,
        x_stats=x_stats,
        y_stats=y_stats,
        augment=True,
        shuffle=True,
        seed=4,
        x_transform=masked_and_shifted,
        x_channels=2,
    )
    plain = H5Batches(files, "x", "y", batch_size=4, y_stats=y_stats, augment=True, shuffle=True, seed=4)
    raw = H5Batches(files, "x", "y", batch_size=4, shuffle=True, seed=4)
    assert batches.x_shape == (4, 4, 2) and batches.y_shape == plain.y_shape == (4, 4, 1)
    mean, std = (np.asarray(s) for s in x_stats)
    some_moved = False
    for epoch, step in [(0, 0), (0, 3), (1, 1), (2, 4)]:
        x, y = batches.batch(epoch, step)
        raw_x, raw_y = raw.batch(epoch, step)
        assert x.shape == (len(raw_x), 4, 4, 2) and x.dtype == np.float32
        aug_x, aug_y = augment_batch(raw_x, raw_y, np.random.default_rng([4, epoch, step]))
        expected = (masked_and_shifted(aug_x) - mean) / std
        np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(y, plain.batch(epoch, step)[1])  # the same symmetry on y
        transform_first = augment_batch(masked_and_shifted(raw_x), raw_y, np.random.default_rng([4, epoch, step]))[0]
        some_moved |= not np.allclose(x, (transform_first - mean) / std, atol=1e-4)
    assert some_moved  # the order matters for this transform, so the check above tells the two apart


def test_x_transform_and_x_channels_go_together(files):
    with pytest.raises(ValueError, match="x_transform and x_channels go together"):
        H5Batches(files, "x", "y", batch_size=4, x_transform=masked_and_shifted)
    with pytest.raises(ValueError, match="x_transform and x_channels go together"):
        H5Batches(files, "x", "y", batch_size=4, x_channels=2)


@pytest.mark.parametrize("max_samples, chunk", [(6, 4), (8, 3), (None, 256)])
def test_streamed_statistics_of_a_transform_over_the_first_samples_of_each_file(files, max_samples, chunk):
    """streamed_mean_std(per_channel, transform, max_samples) equals numpy's per-channel mean and std of
    transform(first max_samples samples of each file) (all of a file shorter than that), whatever the chunk."""
    from cmbml.common.training import streamed_mean_std

    blocks = []
    for path in files:
        with h5py.File(path, "r") as h5:
            blocks.append(masked_and_shifted(h5["x"][:max_samples]))
    derived = np.concatenate(blocks)
    assert len(derived) == (17 if max_samples is None else max_samples + min(max_samples, 7))
    mean, std = streamed_mean_std(
        files, "x", per_channel=True, chunk=chunk, transform=masked_and_shifted, max_samples=max_samples
    )
    assert len(mean) == len(std) == 2
    np.testing.assert_allclose(mean, derived.mean(axis=(0, 1, 2)), rtol=1e-10)
    np.testing.assert_allclose(std, derived.std(axis=(0, 1, 2)), rtol=1e-9)


@pytest.mark.parametrize("op", range(8))
def test_turned_q_and_u_are_the_turned_e_map_when_they_change_sign_as_spin_2_fields(op):
    """Q and U made from an E map alone, turned by a quarter turn or mirrored with the spin-2 signs (Q + iU turns by
    twice the angle; a mirror reverses the polarization angle), are the Q and U of the turned E map, with no B; turned
    as if they were scalars, they are not (a quarter turn gives -E, a mirror puts E into B)."""
    from cmbml.cenn.baselines import harmonic_modes, maps_from_modes
    from cmbml.common.flatsky import FlatGrid
    from cmbml.common.training import dihedral, stokes_signs

    grid = FlatGrid(32, 12.0)
    rng = np.random.default_rng(op)
    e = np.fft.fft2(rng.standard_normal((1, 32, 32)), axes=(1, 2))
    e[:, 16, :] = e[:, :, 16] = 0  # the Nyquist row and column have no -l partner: no pure E there
    e[:, 0, 0] = 0  # nor has the mean a direction: no E or B
    qu = maps_from_modes({"E": e, "B": np.zeros_like(e)}, grid)
    k, flip = op % 4, bool(op // 4)
    turned_e = dihedral([np.fft.ifft2(e, axes=(1, 2)).real[0][..., None]], k, flip)[0][None, ..., 0]
    turned = np.stack([dihedral([qu[c][0][..., None]], k, flip)[0][..., 0] for c in "QU"], axis=-1)
    for signs, right in ((stokes_signs(["Q", "U"], k, flip), True), (np.ones(2), op in (0, 2))):
        q, u = (turned * signs)[None, ..., 0], (turned * signs)[None, ..., 1]
        modes = harmonic_modes({"Q": q, "U": u}, grid)
        matches = np.allclose(modes["E"], np.fft.fft2(turned_e, axes=(1, 2)), atol=1e-9)
        assert matches == right, (signs, op)
        if right:
            assert np.abs(modes["B"]).max() < 1e-9


def test_q_and_u_are_turned_in_physical_units_then_standardised(tmp_path):
    """With Stokes channels the augmentation acts before standardisation, so a sign change of Q does not move it by
    twice its mean."""
    path = tmp_path / "qu.h5"
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as h5:
        h5["M"] = (5.0 + rng.standard_normal((8, 8, 8, 2))).astype(np.float32)
        h5["M0"] = (5.0 + rng.standard_normal((8, 8, 8, 2))).astype(np.float32)
    stats = ([5.0, 5.0], [1.0, 1.0])
    batches = H5Batches(path, "M", "M0", 8, stats, stats, augment=True, seed=1, stokes=(["Q", "U"], ["Q", "U"]))
    x, _ = batches.batch(0, 0)
    with h5py.File(path, "r") as h5:
        raw = h5["M"][:]
    # every standardised value is (+-raw - 5) / 1 for some pixel: the signed maps, then the mean subtracted
    assert np.allclose(np.sort(np.abs(x + 5.0).ravel()), np.sort(np.abs(raw).ravel()), atol=1e-4)


def test_a_nan_loss_stops_the_fit_with_an_error(tmp_path):
    """A loss that becomes NaN (here a non-finite target) stops training at once and raises, naming the epoch:
    nothing trains on with NaN weights and nothing is registered (before, all epochs ran and the NaN model was
    kept)."""
    import keras

    from cmbml.common.fit import TrainingDiverged, fit
    from cmbml.common.training import ArrayBatches

    x = np.random.default_rng(0).standard_normal((8, 4, 4)).astype(np.float32)
    y = x.copy()
    y[3, 0, 0] = np.nan
    core = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 1)])
    core.compile(optimizer="sgd", loss="mse")
    seen = []
    with pytest.raises(TrainingDiverged, match="NaN or infinite at epoch 1"):
        fit(core, ArrayBatches(x, y, 8, (0.0, 1.0), (0.0, 1.0)), ArrayBatches(x, x, 8, (0.0, 1.0), (0.0, 1.0)),
            epochs=5, patience=5, on_epoch_end=lambda e, logs: seen.append(e), scratch=tmp_path, verbose=0)  # fmt: skip
    assert seen == [1]


class Interrupted(Exception):
    """Stands in for the wall-time limit that kills a training."""


def test_a_killed_fit_resumes_after_its_last_finished_epoch(tmp_path):
    """A fit interrupted after epoch 3 of 6 and started again with the same resume folder runs epochs 4-6 only,
    from the weights and optimizer state it had: its losses equal those of an uninterrupted fit, its history
    covers all six epochs and its best epoch is the same; the folder is gone once the fit ends (before, a killed
    training started again from epoch 0)."""
    import keras

    from cmbml.common.fit import fit
    from cmbml.common.training import ArrayBatches

    x = np.random.default_rng(0).standard_normal((16, 4, 4)).astype(np.float32)
    y = 0.5 * x + 0.1 * np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)

    def run(resume_dir, stop_after=None):
        keras.utils.set_random_seed(0)
        core = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 3, padding="same")])
        core.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        epochs = []

        def on_epoch_end(epoch, logs):
            epochs.append((epoch, logs["loss"]))
            if epoch == stop_after:
                raise Interrupted

        batches = ArrayBatches(x, y, 8, (0.0, 1.0), (0.0, 1.0)), ArrayBatches(x, y, 8, (0.0, 1.0), (0.0, 1.0))
        fitted = fit(core, *batches, epochs=6, patience=10, on_epoch_end=on_epoch_end, resume_dir=resume_dir, verbose=0)
        return fitted, epochs

    whole, whole_epochs = run(tmp_path / "a")
    with pytest.raises(Interrupted):
        run(tmp_path / "b", stop_after=3)
    assert (tmp_path / "b").is_dir()
    resumed, resumed_epochs = run(tmp_path / "b")
    assert [e for e, _ in resumed_epochs] == [4, 5, 6]
    np.testing.assert_allclose([v for _, v in resumed_epochs], [v for _, v in whole_epochs[3:]], rtol=1e-5)
    assert resumed.epochs_run == 6 and resumed.best_epoch == whole.best_epoch
    np.testing.assert_allclose(resumed.history["val_loss"], whole.history["val_loss"], rtol=1e-5)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
