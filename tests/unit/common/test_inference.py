"""Reading maps for `cmbml predict` and checking them against a model card: layouts of FITS, NumPy and HDF5,
pixel size from the file or the command line, refusals that say what the model expects, outputs with units."""

import h5py
import numpy as np
import pytest
from astropy.io import fits

from cmbml.common.inference import MapError, check_against_card, read_maps, write_prediction

CARD = {
    "parameter_set": "v2",
    "input": {"channels": ["T"], "units": "uK_CMB", "npix": 8, "pixel_arcmin": 5.0, "quantity": "T"},
    "output": {
        "channels": ["kappa"],
        "units": "dimensionless",
        "npix": 8,
        "pixel_arcmin": 5.0,
        "quantity": "kappa x 30",
        "kappa_exaggeration_factor": 30.0,
    },
}
CENN_CARD = {
    "input": {"channels": ["100GHz", "143GHz", "217GHz"], "units": "uK_CMB", "npix": 8, "pixel_arcmin": 2.0},
    "output": {
        "channels": ["CMB"],
        "units": "uK_CMB",
        "npix": 8,
        "pixel_arcmin": 2.0,
        "quantity": "CMB",
        "target_GHz": 143.0,
    },
}
RNG = np.random.default_rng(1)


def fits_file(path, data, pixel_arcmin=5.0, **header):
    fits.PrimaryHDU(data, fits.Header({"CDELT1": -pixel_arcmin / 60, "CDELT2": pixel_arcmin / 60, **header})).writeto(
        path
    )
    return path


def test_layouts_of_each_format_become_sample_y_x_channel(tmp_path):
    one, stack = RNG.normal(size=(8, 8)), RNG.normal(size=(3, 8, 8))
    m = read_maps(fits_file(tmp_path / "one.fits", one, BUNIT="uK_CMB"), 1)
    assert m.maps.shape == (1, 8, 8, 1) and m.single and m.pixel_arcmin == pytest.approx(5.0) and m.units == "uK_CMB"
    assert np.allclose(m.maps[0, ..., 0], one)
    assert read_maps(fits_file(tmp_path / "stack.fits", stack), 1).maps.shape == (3, 8, 8, 1)
    # FITS channel stacks are [channel, y, x]; NumPy and HDF5 are channels-last like the pipeline's datasets
    cube = RNG.normal(size=(3, 8, 8))
    m = read_maps(fits_file(tmp_path / "cube.fits", cube, 2.0), 3)
    assert m.single and np.allclose(m.maps[0, ..., 1], cube[1])
    np.save(tmp_path / "stack.npy", RNG.normal(size=(5, 8, 8, 3)))
    m = read_maps(tmp_path / "stack.npy", 3)
    assert m.maps.shape == (5, 8, 8, 3) and not m.single and m.pixel_arcmin is None
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        h5["T_lensed"], h5["kappa"] = stack, stack
        h5.attrs["pixel_arcmin"] = 5.0
    m = read_maps(tmp_path / "d.h5", 1)  # the pipeline's input dataset is found by name
    assert np.allclose(m.maps[..., 0], stack) and m.pixel_arcmin == 5.0


@pytest.mark.parametrize(
    "make, n_channels, pixel, says",
    [
        (
            lambda p: fits_file(p / "a.fits", np.zeros((10, 10))),
            1,
            None,
            "10 x 10 pixels; the model expects 8 x 8 pixels",
        ),
        (lambda p: fits_file(p / "a.fits", np.zeros((8, 8)), 2.5), 1, None, "pixels of 2.5 arcmin; the model expects"),
        (
            lambda p: fits_file(p / "a.fits", np.zeros((8, 8)), BUNIT="K_CMB"),
            1,
            None,
            "maps in K_CMB; the model expects",
        ),
        (lambda p: (np.save(p / "a.npy", np.zeros((8, 8))), p / "a.npy")[1], 1, None, "pass --pixel-arcmin"),
        (lambda p: (np.save(p / "a.npy", np.zeros((8, 8))), p / "a.npy")[1], 1, 4.0, "pixels of 4 arcmin"),
        (
            lambda p: (np.save(p / "a.npy", np.zeros((2, 8, 8, 2))), p / "a.npy")[1],
            1,
            5.0,
            "does not hold 1-channel maps",
        ),
        (lambda p: (np.save(p / "a.npy", np.full((8, 8), np.nan)), p / "a.npy")[1], 1, 5.0, "NaN or infinite"),
        (lambda p: p / "missing.fits", 1, None, "no such file"),
        (lambda p: (p / "a.txt").write_text("1") and p / "a.txt", 1, None, "unknown map format"),
    ],
)
def test_refusals_name_what_the_model_expects(tmp_path, make, n_channels, pixel, says):
    with pytest.raises(MapError, match=says.replace("(", r"\(")):
        check_against_card(read_maps(make(tmp_path), n_channels), CARD, "input", pixel)


def test_a_two_channel_map_is_refused_by_a_three_channel_network(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((8, 8, 2)))
    with pytest.raises(MapError, match="allowed .y, x, channel."):
        read_maps(tmp_path / "a.npy", len(CENN_CARD["input"]["channels"]))


def test_outputs_carry_units_geometry_and_the_model(tmp_path):
    prediction = RNG.normal(size=(2, 8, 8, 1)).astype("f4")
    write_prediction(tmp_path / "k.fits", prediction[:1], CARD, "models:/cmbml-lensing-v2@default", single=True)
    with fits.open(tmp_path / "k.fits") as hdul:
        data, header = hdul[0].data, hdul[0].header
    assert data.shape == (8, 8) and np.array_equal(data, prediction[0, ..., 0])
    assert (
        header["BUNIT"] == "dimensionless" and header["KAPPAEXG"] == 30.0 and header["CDELT2"] * 60 == pytest.approx(5)
    )
    assert header["MODEL"] == "models:/cmbml-lensing-v2@default"
    write_prediction(tmp_path / "c.h5", prediction, CENN_CARD, "models/cenn/model.keras", single=False)
    with h5py.File(tmp_path / "c.h5") as h5:
        assert h5["prediction"].shape == (2, 8, 8) and h5.attrs["units"] == "uK_CMB" and h5.attrs["target_GHz"] == 143
    # what was written reads back as maps of the model's output geometry
    assert read_maps(tmp_path / "k.fits", 1).pixel_arcmin == pytest.approx(5.0)
    with pytest.raises(MapError, match="NumPy files carry no units"):
        write_prediction(tmp_path / "k.npy", prediction, CARD, "m", single=False)


def test_units_stored_as_bytes_read_as_text(tmp_path):
    """h5py returns a string attribute written by other codes as bytes: b'uK_CMB' is uK_CMB."""
    with h5py.File(tmp_path / "b.h5", "w") as h5:
        h5["maps"] = RNG.normal(size=(2, 8, 8))
        h5.attrs["units"] = np.bytes_(b"uK_CMB")
        h5.attrs["pixel_arcmin"] = 5.0
    stack = read_maps(tmp_path / "b.h5", 1)
    assert stack.units == "uK_CMB"
    check_against_card(stack, CARD)


@pytest.mark.parametrize("rotation_deg", [0.0, 30.0])
def test_a_cd_matrix_gives_the_pixel_size(tmp_path, rotation_deg):
    """A FITS header with a CD matrix (rotated or not) states the pixel size as CDELT does."""
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    d = 5.0 / 60
    cards = {"CD1_1": -d * c, "CD1_2": d * s, "CD2_1": d * s, "CD2_2": d * c, "BUNIT": "uK_CMB"}
    fits.PrimaryHDU(np.zeros((8, 8)), fits.Header(cards)).writeto(tmp_path / "cd.fits")
    assert read_maps(tmp_path / "cd.fits", 1).pixel_arcmin == pytest.approx(5.0)


def test_a_fits_map_without_pixel_size_is_told_what_it_lacks(tmp_path):
    fits.PrimaryHDU(np.zeros((8, 8)), fits.Header({"BUNIT": "uK_CMB"})).writeto(tmp_path / "bare.fits")
    with pytest.raises(MapError, match=r"no CDELT1/2 or CD matrix\); pass --pixel-arcmin"):
        check_against_card(read_maps(tmp_path / "bare.fits", 1), CARD)


def test_outputs_lie_where_the_inputs_did(tmp_path):
    """The input's WCS cards (FITS) and patch centres (HDF5) are written to the output."""
    wcs = {"CTYPE1": "GLON-TAN", "CTYPE2": "GLAT-TAN", "CRVAL1": 12.5, "CRVAL2": 41.0, "CRPIX1": 4.5, "CRPIX2": 4.5}
    stack = read_maps(fits_file(tmp_path / "in.fits", np.zeros((8, 8)), BUNIT="uK_CMB", **wcs), 1)
    write_prediction(tmp_path / "out.fits", np.zeros((1, 8, 8, 1)), CARD, "m.keras", True, stack.coordinates)
    header = fits.getheader(tmp_path / "out.fits")
    assert {k: header[k] for k in wcs} == wcs and header["CDELT2"] == pytest.approx(5.0 / 60)
    with h5py.File(tmp_path / "in.h5", "w") as h5:
        h5["M"] = np.zeros((3, 8, 8, 3))
        h5["centre_lon_deg"], h5["centre_lat_deg"] = [1.0, 2.0, 3.0], [40.0, 50.0, 60.0]
        h5.attrs["units"], h5.attrs["pixel_arcmin"] = "uK_CMB", 2.0
    stack = read_maps(tmp_path / "in.h5", 3)
    write_prediction(tmp_path / "out.h5", np.zeros((3, 8, 8, 1)), CENN_CARD, "m.keras", False, stack.coordinates)
    with h5py.File(tmp_path / "out.h5") as h5:
        assert list(h5["centre_lat_deg"][:]) == [40.0, 50.0, 60.0]


def test_outputs_that_would_lose_data_are_refused_first(tmp_path):
    """The input as output, an existing output (unless overwrite) and a NumPy output (no units) are refused before
    anything is read."""
    from cmbml.common.inference import check_output

    src = fits_file(tmp_path / "in.fits", np.zeros((8, 8)), BUNIT="uK_CMB")
    with pytest.raises(MapError, match="is the input file"):
        check_output(src, src)
    (tmp_path / "old.h5").write_text("x")
    with pytest.raises(MapError, match="exists; pass --overwrite"):
        check_output(tmp_path / "old.h5", src)
    assert check_output(tmp_path / "old.h5", src, overwrite=True) == tmp_path / "old.h5"
    with pytest.raises(MapError, match="NumPy files carry no units"):
        check_output(tmp_path / "o.npy", src)


def test_fits_and_hdf5_maps_must_state_their_units(tmp_path):
    """A map in K_CMB without BUNIT passed every check and gave a meaningless answer: FITS and HDF5 maps must say
    their units; NumPy arrays cannot, and are taken as the model's."""
    from cmbml.common.inference import require_units

    bare = read_maps(fits_file(tmp_path / "k.fits", np.full((8, 8), 1e-4)), 1)
    with pytest.raises(MapError, match="k.fits: the maps state no units; write them in a BUNIT header card"):
        require_units(bare, "k.fits")
    np.save(tmp_path / "a.npy", np.zeros((8, 8)))
    require_units(read_maps(tmp_path / "a.npy", 1), "a.npy")


def test_the_pipelines_own_units_attributes_are_read(tmp_path):
    """The lensing datasets state the units of T_lensed as units_T: their maps need no other attribute."""
    with h5py.File(tmp_path / "evaluation.h5", "w") as h5:
        h5["T_lensed"], h5["kappa"] = RNG.normal(size=(2, 8, 8)), RNG.normal(size=(2, 8, 8))
        h5.attrs["units_T"], h5.attrs["pixel_arcmin"] = "uK (CMB thermodynamic)", 5.0
    stack = read_maps(tmp_path / "evaluation.h5", 1)
    assert stack.units == "uK (CMB thermodynamic)"
    check_against_card(stack, CARD)


class Doubling:
    """A network stand-in with Keras's `predict` signature: returns twice its input, and records its batches."""

    def __init__(self):
        self.sizes = []

    def predict(self, maps, batch_size=64, verbose=0):
        self.sizes.append(len(maps))
        return 2.0 * maps


def test_a_stack_larger_than_a_chunk_is_streamed_from_file_to_file(tmp_path):
    """`cmbml predict` on a stack of 4000 maps (40 MB) read, predicted and written 256 maps at a time: the peak of
    memory allocated stays a fraction of the stack (before, the whole stack and the whole prediction were held),
    and the output equals the prediction made in one piece, patch centres carried."""
    import tracemalloc

    from cmbml.common.inference import open_maps, predict_file

    maps = RNG.normal(size=(4000, 50, 50)).astype(np.float32)
    with h5py.File(tmp_path / "big.h5", "w") as h5:
        h5["T_lensed"] = maps
        h5["centre_lon_deg"], h5["centre_lat_deg"] = np.arange(4000.0), np.zeros(4000)
        h5.attrs["pixel_arcmin"], h5.attrs["units_T"] = 5.0, "uK_CMB"
    card = {**CARD, "input": {**CARD["input"], "npix": 50}, "output": {**CARD["output"], "npix": 50}}
    model = Doubling()
    tracemalloc.start()
    with open_maps(tmp_path / "big.h5", 1) as source:
        check_against_card(source, card)
        predict_file(model, source, tmp_path / "k.h5", card, "m", chunk=256)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < maps.nbytes / 2, f"peak {peak / 1e6:.1f} MB for a {maps.nbytes / 1e6:.0f} MB stack"
    assert max(model.sizes) == 256 and sum(model.sizes) == 4000
    with h5py.File(tmp_path / "k.h5") as h5:
        assert np.array_equal(h5["prediction"][...], 2 * maps) and h5.attrs["units"] == "dimensionless"
        assert np.array_equal(h5["centre_lon_deg"][...], np.arange(4000.0))


@pytest.mark.parametrize("name", ["qu.fits", "qu.h5", "one.fits"])
def test_streamed_outputs_equal_outputs_written_in_one_piece(tmp_path, name):
    """The FITS data filled slice by slice through a memory map (channel the slowest axis, padded to 2880 bytes) is
    byte for byte the file astropy writes from the whole array; the same for HDF5 and for a single map."""
    from cmbml.common.inference import prediction_writer

    card = {**CENN_CARD, "output": {**CENN_CARD["output"], "channels": ["CMB Q", "CMB U"]}}
    single = name.startswith("one")
    prediction = RNG.normal(size=(1 if single else 37, 8, 8, 2)).astype(np.float32)
    with prediction_writer(tmp_path / f"s-{name}", prediction.shape, card, "m", single) as write:
        for start in range(0, len(prediction), 10):
            write(start, prediction[start : start + 10])
    one_piece = tmp_path / f"o-{name}"
    if name.endswith(".fits"):  # astropy's own writer, from the whole array, as the reference
        from astropy.io import fits

        with fits.open(tmp_path / f"s-{name}") as hdul:
            header = hdul[0].header.copy()
            streamed = hdul[0].data.copy()
        data = np.moveaxis(prediction[0] if single else prediction, -1, 0)
        fits.PrimaryHDU(data, header).writeto(one_piece)
        assert np.array_equal(streamed, data)
        assert (tmp_path / f"s-{name}").read_bytes() == one_piece.read_bytes()
    else:
        write_prediction(one_piece, prediction, card, "m", single)
        with h5py.File(tmp_path / f"s-{name}") as a, h5py.File(one_piece) as b:
            assert np.array_equal(a["prediction"][...], b["prediction"][...]) and dict(a.attrs) == dict(b.attrs)
    assert read_maps(tmp_path / f"s-{name}", 2).maps.shape == prediction.shape


def test_a_bad_map_deep_in_a_stack_is_named_and_no_output_is_left(tmp_path):
    """A NaN in map 2500 of 3000, met in the tenth chunk: refused naming the map, and the partly written output
    is removed (outputs appear whole or not at all)."""
    from cmbml.common.inference import open_maps, predict_file

    maps = RNG.normal(size=(3000, 8, 8)).astype(np.float32)
    maps[2500, 3, 3] = np.nan
    np.save(tmp_path / "m.npy", maps)
    with open_maps(tmp_path / "m.npy", 1) as source, pytest.raises(MapError, match="map 2500 of 3000"):
        predict_file(Doubling(), source, tmp_path / "k.fits", CARD, "m", chunk=256)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy"]
