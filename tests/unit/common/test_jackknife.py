"""Delete-a-group jackknife errors and the sky blocks they leave out."""

from __future__ import annotations

import numpy as np
import pytest

from cmbml.common.jackknife import group_jackknife, sky_blocks


def test_the_jackknife_error_of_a_mean_over_independent_groups_is_the_standard_error():
    """For independent samples the delete-a-group error of the mean equals scatter / sqrt(n) (exactly, for one
    sample per group)."""
    x = np.random.default_rng(0).standard_normal(400)
    value, err = group_jackknife(lambda keep: x[keep].mean(), np.arange(x.size))
    assert value == pytest.approx(x.mean())
    assert err == pytest.approx(x.std(ddof=1) / np.sqrt(x.size), rel=1e-10)


def test_the_jackknife_sees_what_groups_share():
    """Samples sharing a group offset (patches cut from one CMB sky) make the mean's error that of the groups, far
    above scatter / sqrt(n), which counts every sample as independent."""
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(6), 50)
    x = rng.standard_normal(6)[groups] + 0.1 * rng.standard_normal(groups.size)
    _, err = group_jackknife(lambda keep: x[keep].mean(), groups)
    naive = x.std() / np.sqrt(x.size)
    assert err > 5 * naive


def test_a_jackknife_needs_two_groups():
    with pytest.raises(ValueError, match="two"):
        group_jackknife(lambda keep: 0.0, np.zeros(5))


def test_sky_blocks_are_contiguous_and_about_equal_in_count():
    """Ten blocks: five longitude slices per hemisphere, each a contiguous arc, also across lon = 0."""
    rng = np.random.default_rng(2)
    lon = np.mod(rng.uniform(-30, 30, 1000), 360.0)  # a band that crosses 0 deg
    lat = rng.choice([-1, 1], 1000) * rng.uniform(30, 80, 1000)
    labels = sky_blocks(lon, lat, 10)
    counts = np.bincount(labels)
    assert counts.size == 10 and counts.min() > 0.7 * counts.mean()
    for b in range(10):
        arc = np.mod(lon[labels == b] + 30.0, 360.0)  # unwrapped: a block spans a short arc
        assert arc.max() - arc.min() < 20.0
        assert len(np.unique(np.sign(lat[labels == b]))) == 1
