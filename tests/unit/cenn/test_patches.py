"""Gnomonic patches: positions, polarization frame and the held-out sky region."""

import healpy as hp
import numpy as np
import pytest

from cmbml.cenn.patches import PatchSampler, random_centres
from cmbml.common.flatsky import FlatGrid


def point_source_map(nside, lon_deg, lat_deg, fwhm_arcmin=30.0):
    vec = hp.ang2vec(lon_deg, lat_deg, lonlat=True)
    dist = np.arccos(np.clip(np.array(hp.pix2vec(nside, np.arange(hp.nside2npix(nside)))).T @ vec, -1, 1))
    sigma = np.radians(fwhm_arcmin / 60) / np.sqrt(8 * np.log(2))
    return np.exp(-0.5 * (dist / sigma) ** 2)


@pytest.mark.parametrize("lat0", [0.0, 45.0, -60.0])
def test_a_point_source_lands_on_the_right_pixel(lat0):
    """A source 10 pixels east and 6 pixels north of the centre lands at [c + 6, c + 10]
    (+x = increasing Galactic longitude, +y = north; 5 arcmin pixels, centre pixel c = 32):
    the centroid of the interpolated beam is within 0.3 pixel of it."""
    geometry = FlatGrid(65, 5.0)
    lon0 = 120.0
    dlat, dx = 6 * 5.0 / 60, 10 * 5.0 / 60
    lat_src = lat0 + dlat
    lon_src = lon0 + np.degrees(np.arctan(np.tan(np.radians(dx)) / np.cos(np.radians(lat_src))))
    patch = PatchSampler.build(512, geometry, lon0, lat0).scalar(point_source_map(512, lon_src, lat_src))
    weight = np.where(patch > 0.5 * patch.max(), patch, 0.0)
    iy, ix = np.mgrid[0:65, 0:65]
    centroid = (np.sum(weight * iy) / weight.sum(), np.sum(weight * ix) / weight.sum())
    assert centroid == pytest.approx((32 + 6, 32 + 10), abs=0.3)


def test_pure_e_sky_gives_no_b_on_qu_patches(camb_cls):
    """Q/U patches are rotated into the flat-sky frame: a sky with B = 0 shows BB/EE < 1% at
    ell 180 to 2 nside with purified NaMaster fields (without the rotation about 1% leaks)."""
    from cmbml.cenn.fullsky import gaussian_alm, tqu_from_alm
    from cmbml.cenn.namaster_flat import FlatSpectra

    nside, lmax = 256, 767
    zero = np.zeros(3001)
    alm = gaussian_alm(
        camb_cls["cl_tt_lensed"],
        camb_cls["cl_ee_lensed"],
        zero,
        camb_cls["cl_te_lensed"],
        lmax,
        np.random.default_rng(0),
    )
    _, q, u = tqu_from_alm(alm, nside)
    geometry = FlatGrid(64, 6.0)
    estimator = FlatSpectra(geometry, np.arange(60.0, 760.0, 60.0), spin=2, apodization_deg=1.0)
    ee, bb = [], []
    for lon, lat in [(30, 60), (100, -50), (200, 70), (300, 45), (150, -65), (250, -40)]:
        cl = estimator.spectra(PatchSampler.build(nside, geometry, lon, lat).polarization(q, u))
        ee.append(cl["EE"])
        bb.append(cl["BB"])
    sel = (estimator.ell > 180) & (estimator.ell < 2 * nside)
    assert np.all(np.mean(bb, 0)[sel] / np.mean(ee, 0)[sel] < 0.01)


def test_centres_respect_the_latitude_cut_and_the_held_out_band():
    rng = np.random.default_rng(0)
    bands = [(0.0, 60.0), (180.0, 240.0)]
    train = random_centres(500, rng, 30.0, bands, inside=None, buffer_deg=4.6)
    held = random_centres(200, rng, 30.0, bands, inside=0, buffer_deg=4.6)
    early = random_centres(200, rng, 30.0, bands, inside=1, buffer_deg=4.6)
    assert np.all((early[:, 0] > 180) & (early[:, 0] < 240))
    assert not np.any(((train[:, 0] > 0) & (train[:, 0] < 60)) | ((train[:, 0] > 180) & (train[:, 0] < 240)))
    assert np.all(np.abs(train[:, 1]) > 30) and np.all(np.abs(held[:, 1]) > 30)
    assert np.all((held[:, 0] > 0) & (held[:, 0] < 60))
    # no training centre within two buffers of a held-out one: patches cannot overlap
    v_train = hp.ang2vec(train[:, 0], train[:, 1], lonlat=True)
    v_held = hp.ang2vec(held[:, 0], held[:, 1], lonlat=True)
    min_sep = np.degrees(np.arccos(np.clip(v_train @ v_held.T, -1, 1))).min()
    assert min_sep > 2 * 4.6 - 0.5


def test_centre_search_gives_up_with_a_message_instead_of_looping():
    """A band narrower than a patch leaves no sky: the search stops after its draw budget and says why."""
    from cmbml.cenn.patches import NoRoomForPatches, allowed_sky_fraction

    rng = np.random.default_rng(3)
    bands = [(0.0, 3.0), (180.0, 240.0)]
    assert allowed_sky_fraction(30.0, bands, 0, 4.53) == 0.0
    with pytest.raises(NoRoomForPatches, match="widen the band"):
        random_centres(10, rng, 30.0, bands, inside=0, buffer_deg=4.53, max_draws=200_000)
    # the held-out band of the default parameters has room (a sixth of the sky at |b| > 30 deg, less the edges)
    assert 0.03 < allowed_sky_fraction(30.0, [(0.0, 60.0), (180.0, 240.0)], 0, 4.53) < 0.09
