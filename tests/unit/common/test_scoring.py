"""Reading a method's estimates for `cmbml score`.

Facts checked: estimates in FITS, NumPy and HDF5 (as `cmbml predict` writes them) read back as the same array; a
file whose sample count, pixels, pixel size, channels, units, kappa exaggeration or amplitude differ from the
split's is refused in one line naming the file and what differs.
"""

import h5py
import numpy as np
import pytest
from astropy.io import fits

from cmbml.common.inference import MapError, write_prediction
from cmbml.common.scoring import EvaluationSplit, read_estimates

N, NPIX, PIXEL = 6, 16, 5.0


def split(channels=("Q", "U"), units="uK_CMB", stated=None) -> EvaluationSplit:
    return EvaluationSplit("Validation_Q.h5, Validation_U.h5", N, NPIX, PIXEL, channels, units, 50.0, stated or {})


def estimates(channels=2, scale=50.0) -> np.ndarray:
    return (np.random.default_rng(0).normal(size=(N, NPIX, NPIX, channels)) * scale).astype(np.float32)


def card(channels=("CMB Q", "CMB U"), units="uK_CMB", **extra) -> dict:
    return {
        "output": {"quantity": "CMB", "units": units, "pixel_arcmin": PIXEL, "channels": list(channels), **extra},
        "parameter_set": "QU",
    }


def test_every_format_reads_back_the_same_estimates(tmp_path):
    maps = estimates()
    for name in ("e.fits", "e.h5"):
        write_prediction(tmp_path / name, maps, card(), "my-method", single=False)
    np.save(tmp_path / "e.npy", maps)
    for name in ("e.fits", "e.h5", "e.npy"):
        np.testing.assert_allclose(read_estimates(tmp_path / name, split()), maps, err_msg=name)


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda m: m[:-1], "5 estimate(s); expected 6 estimates of Q, U on 16 x 16 pixels of 5 arcmin in uK_CMB"),
        (lambda m: m[:, :8, :8], "maps of 8 x 8 pixels; expected"),
        (lambda m: m[..., :1], "does not hold 2-channel maps"),
        (lambda m: m * 1e-6, "the truth's is 50 uK_CMB: other units or another quantity"),
    ],
)
def test_what_does_not_match_the_split_is_refused_in_one_line(tmp_path, change, says):
    np.save(tmp_path / "e.npy", change(estimates()))
    with pytest.raises(MapError) as err:
        read_estimates(tmp_path / "e.npy", split())
    assert says in str(err.value) and "\n" not in str(err.value) and "e.npy" in str(err.value)


def test_units_pixel_size_channels_and_exaggeration_stated_by_the_file_must_be_the_splits(tmp_path):
    maps = estimates(1)
    write_prediction(tmp_path / "k.h5", maps * 1e-6, card(("kappa",), "K_CMB"), "m", single=False)
    with pytest.raises(MapError, match="estimates in K_CMB; expected"):
        read_estimates(tmp_path / "k.h5", split(("E",)))
    fits.PrimaryHDU(maps[..., 0], fits.Header({"CDELT1": -1 / 60, "CDELT2": 1 / 60})).writeto(tmp_path / "p.fits")
    with pytest.raises(MapError, match="pixels of 1 arcmin; expected"):
        read_estimates(tmp_path / "p.fits", split(("E",)))
    write_prediction(tmp_path / "qu.h5", estimates(), card(("CMB U", "CMB Q")), "m", single=False)
    with pytest.raises(MapError, match="channels CMB U, CMB Q; expected"):
        read_estimates(tmp_path / "qu.h5", split())
    write_prediction(
        tmp_path / "x10.h5", maps, card(("kappa",), "dimensionless", kappa_exaggeration_factor=10.0), "m", single=False
    )
    kappa = split(("kappa",), "dimensionless", {"kappa_exaggeration_factor": 30.0})
    with pytest.raises(MapError, match="kappa_exaggeration_factor = 10; the split's is 30"):
        read_estimates(tmp_path / "x10.h5", kappa)


def test_an_hdf5_file_with_several_datasets_reads_prediction_or_the_named_one(tmp_path):
    maps = estimates(1)
    with h5py.File(tmp_path / "two.h5", "w") as h5:
        h5["prediction"], h5["other"] = maps[..., 0], maps[..., 0] * 2
    np.testing.assert_allclose(read_estimates(tmp_path / "two.h5", split(("E",))), maps)
    np.testing.assert_allclose(read_estimates(tmp_path / "two.h5", split(("E",)), dataset="other"), 2 * maps)
