"""Full-sky application of a patch network (cmbml.cenn.separate, `cmbml separate`): tiling, reprojection, the
maps' conventions, the harmonic ILC and the comparison with the patch evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmbml.cenn.fullsky import gauss_beam, gaussian_alm, tqu_from_alm
from cmbml.cenn.separate import (
    SkyMapError,
    Tiling,
    compare_with_patches,
    harmonic_ilc,
    read_frequency_map,
    separate,
    unit_factor_to_uk_cmb,
    write_frequency_map,
)
from cmbml.common.flatsky import FlatGrid

NSIDE = 64
GRID = FlatGrid(16, 24.0)  # 6.4 deg patches of 24' pixels


def smooth_sky(seed: int = 1, lmax: int = 3 * NSIDE - 1, ell_c: float = 60.0) -> np.ndarray:
    """T, Q, U (3, npix) with a red spectrum cut off well below the grids' resolution."""
    ell = np.arange(lmax + 1)
    cl = np.zeros(lmax + 1)
    cl[2:] = np.exp(-((ell[2:] / ell_c) ** 2)) / ell[2:] ** 2
    return tqu_from_alm(gaussian_alm(cl, cl, 0.5 * cl, 0 * cl, lmax, np.random.default_rng(seed)), NSIDE)


@pytest.fixture(scope="module")
def tiling() -> Tiling:
    return Tiling.covering(GRID, NSIDE, 30.0)


def test_tiling_covers_the_sky_above_the_cut_with_overlapping_patches(tiling):
    """Centres half a patch side apart: every pixel above the cut is inside patches whose weights sum to at least
    1/2 (no pixel seen only by patch edges), and the pixels below the cut minus half a patch side are not covered."""
    from cmbml.cenn.fullsky import galactic_latitude_deg

    est = separate(smooth_sky()[None, None, 0], lambda x: x, tiling, ("E",))
    b = np.abs(galactic_latitude_deg(NSIDE))
    assert est.mask.sum() == (b > 30.0).sum()
    assert est.weight[b > 30.0].min() > 0.5
    assert est.weight[b < 30.0 - GRID.side_deg].max() == 0.0


@pytest.mark.parametrize("components", [("E",), ("Q", "U")])
def test_an_identity_network_gives_the_map_back(tiling, components):
    """Cut, then reprojected with the overlap weights, a smooth map comes back to 3% of its rms below |b| = 75 deg
    (bilinear interpolation there and back): the forward and inverse gnomonic projections agree, and Q/U rotated
    into each patch's frame are rotated back (a wrong rotation leaves errors of the order of the map). Closer to
    the poles, cutting Q/U interpolates between neighbouring pixels whose local frames turn quickly at this coarse
    nside (as the training patches are cut): 7%."""
    from cmbml.cenn.fullsky import galactic_latitude_deg

    sky = smooth_sky()
    maps = sky[None, None, 0] if components == ("E",) else sky[1:, None]
    est = separate(maps, lambda x: x, tiling, components)
    below = est.mask & (np.abs(galactic_latitude_deg(NSIDE)) < 75.0)
    for k in range(len(components)):
        residual, truth = est.maps[k] - maps[k, 0], maps[k, 0]
        assert np.std(residual[below]) < 0.03 * np.std(truth[below])
        assert np.std(residual[est.mask]) < 0.07 * np.std(truth[est.mask])


def test_patch_offsets_blend_without_seams():
    """A method that adds its own constant to each patch (the worst disagreement between neighbouring patches)
    leaves a smooth residual: its power above three times the patch scale (ell > 170 for 6.4 deg patches) is below
    0.3% of its total (measured 0.15%), where the same offsets on patches cut edge to edge (each pixel from its
    nearest centre) put ten times more there through the jumps at every seam (measured 11%)."""
    import healpy as hp

    nside, grid = 128, FlatGrid(32, 12.0)
    tiling = Tiling.covering(grid, nside, 0.0)  # the whole sky: no cut whose edge has power of its own
    rng = np.random.default_rng(3)
    offsets = rng.standard_normal(tiling.n_patches)
    state = {"i": 0}

    def offset_network(x):
        n = x.shape[0]
        out = np.ones_like(x) * offsets[state["i"] : state["i"] + n, None, None, None]
        state["i"] += n
        return out

    blended = separate(np.zeros((1, 1, 12 * nside**2)), offset_network, tiling, ("E",), batch=256).maps[0]
    centres = hp.ang2vec(np.radians(90.0 - tiling.centres_deg[:, 1]), np.radians(tiling.centres_deg[:, 0]))
    pixels = np.array(hp.pix2vec(nside, np.arange(12 * nside**2))).T
    nearest = np.argmax(pixels @ centres.T, axis=1)
    edge_to_edge = offsets[nearest]
    ell = np.arange(3 * nside)

    def high_ell_fraction(m):
        cl = hp.anafast(m - m.mean(), lmax=3 * nside - 1)
        return cl[ell > 170].dot(2 * ell[ell > 170] + 1) / cl.dot(2 * ell + 1)

    smooth, seams = high_ell_fraction(blended), high_ell_fraction(edge_to_edge)
    print(f"power above ell 170: blended {smooth:.2e}, edge to edge {seams:.2e}")
    assert smooth < 3e-3
    assert seams > 10 * smooth


def test_the_interior_residual_is_measured_against_the_reference(tiling):
    """With the truth as reference, an identity network's patch interiors have zero error, and a network adding a
    constant c has interior error c^2."""
    sky = smooth_sky()[None, None, 0]
    assert separate(sky, lambda x: x, tiling, ("E",), reference=sky[:, 0]).interior_residual_var < 1e-10
    est = separate(sky, lambda x: x + 2.0, tiling, ("E",), reference=sky[:, 0])
    assert est.interior_residual_var == pytest.approx(4.0)


def write_pair(tmp_path, qu_uk, name):
    planck, own = tmp_path / f"{name}_planck.fits", tmp_path / f"{name}_own.fits"
    write_frequency_map(planck, qu_uk, planck_conventions=True)
    write_frequency_map(own, qu_uk, planck_conventions=False)
    return planck, own


def test_planck_conventions_read_as_the_pipelines_own(tmp_path):
    """A map in K_CMB, NESTED, with Q_STOKES/U_STOKES columns reads as the same map in uK_CMB, RING, Q/U (to float32
    precision), and its header says what Planck's do."""
    from astropy.io import fits

    qu = smooth_sky()[1:] * 50.0
    planck, own = write_pair(tmp_path, qu, "sky")
    header = fits.getheader(planck, 1)
    assert header["ORDERING"] == "NESTED" and header["TTYPE1"] == "Q_STOKES" and header["TUNIT1"] == "K_CMB"
    a, obs_a = read_frequency_map(planck)
    b, obs_b = read_frequency_map(own)
    assert obs_a.all() and obs_b.all()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())
    np.testing.assert_allclose(b, qu, rtol=1e-6, atol=1e-6 * np.abs(qu).max())


@pytest.mark.parametrize(
    "unit,factor", [("K_CMB", 1e6), ("Kcmb", 1e6), ("mK_CMB", 1e3), ("uK_CMB", 1.0), ("µK_CMB", 1.0), ("K", 1e6)]
)
def test_thermodynamic_units_convert_to_microkelvin(unit, factor):
    """Every spelling of a CMB temperature unit Planck and healpy files use converts to uK_CMB."""
    assert unit_factor_to_uk_cmb(unit, "m.fits") == factor


@pytest.mark.parametrize("unit", ["K_RJ", "MJy/sr", "", None, "counts"])
def test_other_units_are_refused_in_one_line(unit):
    """Brightness units, a missing unit and unknown ones are refused naming the file: a map in K read as uK would
    pass every other check."""
    with pytest.raises(SkyMapError, match="m.fits") as err:
        unit_factor_to_uk_cmb(unit, "m.fits")
    assert "\n" not in str(err.value)


def test_maps_the_network_cannot_read_are_refused_naming_the_file(tmp_path):
    """No Stokes columns, equatorial coordinates, or another nside: one line naming the file and the reason."""
    import healpy as hp

    qu = smooth_sky()[1:]
    t_only = tmp_path / "t_only.fits"
    hp.write_map(str(t_only), qu[0], column_names=["I_STOKES"], column_units="K_CMB", coord="G")
    with pytest.raises(SkyMapError, match=r"t_only.fits: no Stokes Q column"):
        read_frequency_map(t_only)
    equatorial = tmp_path / "equatorial.fits"
    hp.write_map(str(equatorial), qu, column_names=["Q", "U"], column_units="uK_CMB", coord="C")
    with pytest.raises(SkyMapError, match=r"equatorial.fits: COORDSYS"):
        read_frequency_map(equatorial)
    with pytest.raises(SkyMapError, match=r"nside 64; the other maps .* nside 32"):
        read_frequency_map(write_pair(tmp_path, qu, "x")[1], nside=32)


def test_unobserved_pixels_are_zero_and_left_out(tmp_path):
    """UNSEEN pixels (Planck's missing data) read as 0 and are flagged unobserved."""
    import healpy as hp

    qu = smooth_sky()[1:]
    qu[:, :10] = hp.UNSEEN
    path = tmp_path / "holes.fits"
    hp.write_map(str(path), qu, column_names=["Q", "U"], column_units="uK_CMB", coord="G")
    maps, observed = read_frequency_map(path)
    assert not observed[:10].any() and observed[10:].all() and (maps[:, :10] == 0).all()


def test_the_harmonic_ilc_keeps_the_cmb_and_removes_a_foreground_of_fixed_sed():
    """Channels = beam_c * (CMB + a_c * foreground): the ILC returns the CMB with the target beam, the foreground
    (10 times the CMB) removed to 5% of the CMB's rms, 0.5% of its own (what remains: the chance correlation of CMB
    and foreground over the few modes of the lowest bins)."""
    lmax = 3 * NSIDE - 1
    sky, fg = smooth_sky(1)[0], 10 * smooth_sky(2)[0]
    from cmbml.common.sht import analysis, synthesis

    fwhm = [40.0, 30.0, 20.0]
    beams = np.stack([gauss_beam(f, lmax) for f in fwhm])
    alm_cmb, alm_fg = analysis(sky, lmax), analysis(fg, lmax)
    import healpy as hp

    channels = np.stack([synthesis(hp.almxfl(alm_cmb + a * alm_fg, b), NSIDE) for a, b in zip([0.5, 1.0, 3.0], beams)])
    truth = synthesis(hp.almxfl(alm_cmb, beams[1]), NSIDE)
    ilc = harmonic_ilc(channels[None], beams, beams[1], np.ones(12 * NSIDE**2), ("E",), bin_width=10)[0]
    assert np.std(ilc - truth) < 0.05 * np.std(truth)


def test_full_sky_and_patch_figures_are_compared_bin_by_bin_below_two_nside():
    """Pulls use both errors; bins above 2 nside are left out; chi^2 per bin is the mean squared pull."""

    def row(ell, response, response_err, correlation, correlation_err=0.01):
        return {
            "ell": ell,
            "network_EE_response": response,
            "network_EE_response_err": response_err,
            "network_EE_correlation": correlation,
            "network_EE_correlation_err": correlation_err,
        }

    full = [row(100.0, 0.5, 0.03, 0.7), row(200.0, 0.9, 0.01, 0.9)]
    patch = [row(100.0, 0.54, 0.04, 0.7), row(200.0, 0.1, 0.01, 0.1)]
    out = compare_with_patches(full, patch, ["EE"], ell_max=150.0)
    assert out["EE_response_max_pull"] == pytest.approx(0.04 / 0.05)
    assert out["EE_response_chi2_per_bin"] == pytest.approx(0.64)
    assert out["EE_response_n_bins_compared"] == 1
    assert compare_with_patches(full, patch, ["EE"], ell_max=300.0)["EE_response_max_pull"] > 50


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real Keras network (one convolution over the three channels of an E patch) with its model card."""
    import keras

    folder = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((GRID.npix, GRID.npix, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    model.save(folder / "model.keras")
    card = {
        "experiment": "cenn",
        "components": ["E"],
        "input": {
            "channels": ["100GHz", "143GHz", "217GHz"],
            "units": "uK_CMB",
            "npix": GRID.npix,
            "pixel_arcmin": GRID.pixel_arcmin,
            "fwhm_arcmin": [9.66, 7.22, 4.9],
        },
        "output": {"channels": ["CMB E"], "units": "uK_CMB"},
    }
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder / "model.keras"


def test_cmbml_separate_gives_the_same_estimate_from_planck_and_own_conventions(tmp_path, tiny_model):
    """Three frequency maps written as Planck writes them (K_CMB, NESTED, Q_STOKES/U_STOKES) and as the pipeline does
    (uK_CMB, RING, Q/U) give the same full-sky estimate (float32 precision), with its mask and weight columns."""
    import healpy as hp

    from stages.separate import separate_maps

    planck, own = [], []
    for k in range(3):
        a, b = write_pair(tmp_path, smooth_sky(10 + k)[1:] * 30.0, f"ch{k}")
        planck.append(a)
        own.append(b)
    out_a, out_b = tmp_path / "a.fits", tmp_path / "b.fits"
    summary = separate_maps(str(tiny_model), planck, out_a, b_min_deg=30.0)
    separate_maps(str(tiny_model), own, out_b, b_min_deg=30.0)
    a = hp.read_map(str(out_a), field=None)
    b = hp.read_map(str(out_b), field=None)
    assert summary["nside"] == NSIDE and a.shape == (3, 12 * NSIDE**2)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b[0]).max())
    assert np.abs(a[0][a[1] > 0]).max() > 0  # an estimate where the mask is set


def test_cmbml_separate_refuses_in_one_line_before_predicting(tmp_path, tiny_model):
    """An output that is an input, an existing output, a non-FITS output, the wrong number of maps or maps at another
    nside than the network's training skies are refused before the network runs; --overwrite replaces an existing
    output."""
    from stages.separate import separate_maps

    maps = [write_pair(tmp_path, smooth_sky(20 + k)[1:], f"m{k}")[1] for k in range(3)]
    with pytest.raises(SkyMapError, match="is one of the input maps"):
        separate_maps(str(tiny_model), maps, maps[0])
    with pytest.raises(SkyMapError, match="name a .fits file"):
        separate_maps(str(tiny_model), maps, tmp_path / "out.npy")
    with pytest.raises(SkyMapError, match="2 map.s. given; .* takes 3"):
        separate_maps(str(tiny_model), maps[:2], tmp_path / "out.fits")
    card_file = tiny_model.parent / "model_card.json"
    card = json.loads(card_file.read_text())
    card_file.write_text(json.dumps({**card, "input": {**card["input"], "nside": 512}}))
    try:
        with pytest.raises(SkyMapError, match="nside 64; .* trained on patches cut from nside 512 skies"):
            separate_maps(str(tiny_model), maps, tmp_path / "out.fits")
    finally:
        card_file.write_text(json.dumps(card))
    out = tmp_path / "out.fits"
    out.write_text("old")
    with pytest.raises(SkyMapError, match="exists; pass --overwrite"):
        separate_maps(str(tiny_model), maps, out)
    separate_maps(str(tiny_model), maps, out, overwrite=True)
    assert out.stat().st_size > 1000
