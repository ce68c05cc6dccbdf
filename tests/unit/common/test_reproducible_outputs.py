"""Each kind of output the pipeline writes, written twice a second apart from the same content, has the same bytes:
HDF5 (no object times, attributes in creation order), Keras archives (no save time), HEALPix FITS, CSV, JSON
and PNG. DVC then sees a rerun stage's unchanged outputs as unchanged, and run caches can be shared."""

import hashlib
import time

import numpy as np
import pytest

from cmbml.common.io import h5_dataset_writer, write_json, write_keras_model


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def written_twice(tmp_path, suffix, write) -> tuple[str, str]:
    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    write(first)
    time.sleep(1.1)  # HDF5 and zip times have one-second resolution
    write(second)
    return md5(first), md5(second)


def test_hdf5_datasets_have_no_creation_times(tmp_path):
    def write(path):
        arrays = {"T_lensed": ((6, 8, 8), "f4"), "kappa": ((6, 8, 8), "f4")}
        with h5_dataset_writer(path, arrays, {"units_T": "uK", "pixel_arcmin": 5.0, "seed": 3}, chunk_samples=4) as h5:
            h5["T_lensed"][:] = np.arange(6 * 64, dtype="f4").reshape(6, 8, 8)
            h5["kappa"][:] = 1.0

    a, b = written_twice(tmp_path, ".h5", write)
    assert a == b
    import h5py

    with h5py.File(tmp_path / "a.h5") as h5:  # still an ordinary file: attributes in the order written
        assert list(h5.attrs)[:3] == ["units_T", "pixel_arcmin", "seed"] and h5.attrs["complete"]


def test_keras_archives_have_no_save_time_and_no_memory_addresses(tmp_path):
    """The same network built twice (its shared objects at new addresses) and saved a second later."""
    keras = pytest.importorskip("keras")
    from cmbml.common.networks import with_standardisation
    from cmbml.lensing.networks import lensing_cnn

    def build():
        keras.utils.set_random_seed(1)
        core = lensing_cnn(8, [4, 4], [3, 3], 3, "glorot_uniform")
        return with_standardisation(core, 0.0, 2.0, 0.0, 0.1, name="physical")

    a, b = written_twice(tmp_path, ".keras", lambda p: write_keras_model(build(), p))
    assert a == b
    model = build()
    loaded = keras.models.load_model(tmp_path / "a.keras")
    x = np.ones((1, 8, 8, 1), "f4")
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_healpix_fits_csv_json_and_png(tmp_path):
    from cmbml.common.fits import write_healpix
    from cmbml.common.plotting import plot_theory_spectra
    from cmbml.common.spectra import SPECTRA_COLUMNS, write_spectra_csv

    m = np.linspace(-1, 1, 12 * 4**2)
    assert len(set(written_twice(tmp_path, ".fits", lambda p: write_healpix(p, [m, -m], ["Q", "U"])))) == 1
    assert len(set(written_twice(tmp_path, ".json", lambda p: write_json(p, {"b": 1.5, "a": [1, 2]})))) == 1
    ell = np.arange(0.0, 50.0)
    spectra = {"ell": ell, **{k: 1 / (1 + ell) ** 2 for k in SPECTRA_COLUMNS}}
    assert len(set(written_twice(tmp_path, ".csv", lambda p: write_spectra_csv(p, spectra)))) == 1
    assert len(set(written_twice(tmp_path, ".png", lambda p: plot_theory_spectra(spectra, p)))) == 1
