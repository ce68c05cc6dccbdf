"""The learning-curve benchmark's arithmetic and its page block (the training itself runs on demand only)."""

from __future__ import annotations

import math

import pytest

from bench.lensing_learning_curve import by_third, maps_to_reach, write_page


def _points(ratios: dict[int, float]) -> list[dict]:
    return [{"n_training": n, "ratio": r} for n, r in ratios.items()]


def test_a_target_beyond_the_curve_is_extrapolated_along_a_line_in_log_n():
    # ratio = 0.3 + 0.2 log10(n / 1000) reaches 0.9 at n = 10^6 and 1.0 at 10^6.5
    line = {n: 0.3 + 0.2 * math.log10(n / 1000) for n in (1000, 10_000, 100_000)}
    n, how = maps_to_reach(_points(line), 0.9)
    assert how == "extrapolated" and n == pytest.approx(1e6, rel=1e-9)
    assert maps_to_reach(_points(line), 1.0)[0] == pytest.approx(10**6.5, rel=1e-9)


def test_a_target_between_two_measured_sets_is_interpolated_in_log_n():
    # 0.8 at 10^4 and 1.1 at 10^5: 0.9 lies a third of the way, at 10^(4 + 1/3); 1.0 at 10^(4 + 2/3)
    points = _points({1000: 0.1, 10_000: 0.8, 100_000: 1.1})
    n, how = maps_to_reach(points, 0.9)
    assert how == "interpolated" and n == pytest.approx(10 ** (4 + 1 / 3), rel=1e-9)
    assert maps_to_reach(points, 1.0)[0] == pytest.approx(10 ** (4 + 2 / 3), rel=1e-9)


def test_a_curve_already_at_the_target_gives_its_smallest_set():
    assert maps_to_reach(_points({1000: 0.95, 3000: 1.02}), 0.9) == (1000, "measured")


def test_only_the_last_three_points_set_the_line_and_a_flat_or_falling_one_gives_none():
    # the first point (far below) must not pull the line: the last three are flat at 0.5
    assert maps_to_reach(_points({100: 0.0, 1000: 0.5, 3000: 0.5, 10_000: 0.5}), 0.9)[0] is None
    assert maps_to_reach(_points({1000: 0.6, 3000: 0.5, 10_000: 0.4}), 0.9)[0] is None
    assert maps_to_reach(_points({1000: 0.5}), 0.9)[0] is None


def test_the_ratio_by_l_third_averages_the_bins_of_each_third():
    point = {"per_bin": [{"ratio": r} for r in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)]}
    assert by_third(point) == [1.5, 3.5, 5.5]
    assert by_third({"per_bin": [{"ratio": 0.5}, {"ratio": 0.7}, {"ratio": 0.9}]}) == [0.5, 0.7, 0.9]


def test_the_page_block_is_replaced_with_the_table_and_a_relative_link_to_the_figure(tmp_path):
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    page.write_text("# Results\n<!-- lensing-learning-curve -->\nold\n<!-- /lensing-learning-curve -->\nafter\n")
    write_page(page, "| a |\n|---|\n| 1 |\n", tmp_path / "bench" / "results" / "curve.png")
    text = page.read_text()
    assert "old" not in text and "| 1 |" in text and text.endswith("after\n")
    assert "](../bench/results/curve.png)" in text


def test_a_page_without_the_block_is_refused_and_left_as_it_is(tmp_path):
    page = tmp_path / "results.md"
    page.write_text("# Results\n")
    with pytest.raises(ValueError, match="lensing-learning-curve"):
        write_page(page, "| a |\n", tmp_path / "curve.png")
    assert page.read_text() == "# Results\n"
