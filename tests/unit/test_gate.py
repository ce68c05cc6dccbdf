"""The gate's pieces that need no Great Expectations run: rounded thresholds, where Data Docs go, and
how a Data Docs site is made to load nothing from the network."""

import math
import os
import random
import re

import pytest

from cmbml.common.gate import DEBIAN_ASSETS, data_docs_dir, lower_bound, make_offline, publish_data_docs, upper_bound


def test_bounds_are_rounded_outwards_to_four_significant_digits():
    assert lower_bound(0.0411269864707915) == 0.04112 and upper_bound(0.0451262506584605) == 0.04513
    assert lower_bound(-2.49203) == -2.493 and upper_bound(-2.49203) == -2.492
    assert lower_bound(12345.0) == 12340.0 and upper_bound(12345.0) == 12350.0
    for x in (None, 0.0, 0, math.inf, -math.inf):
        assert lower_bound(x) == x and upper_bound(x) == x
    rng = random.Random(1)
    for _ in range(2000):  # never tighter than the exact bound, and within one unit of the 4th digit
        x = rng.uniform(-1, 1) * 10 ** rng.uniform(-12, 12)
        low, high = lower_bound(x), upper_bound(x)
        assert low <= x <= high
        assert high - low <= 1.000001 * 10.0 ** (math.floor(math.log10(abs(x))) - 3)
        assert float(f"{low:.3e}") == low and float(f"{high:.3e}") == high


def test_data_docs_go_to_the_repository_keyed_by_stage_and_experiment(monkeypatch, tmp_path):
    queued = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc"
    queued.mkdir(parents=True)
    monkeypatch.chdir(queued)
    monkeypatch.setenv("DVC_EXP_NAME", "fated-bloc")
    assert data_docs_dir("reports/data_docs", "lensing_validate") == (
        tmp_path / "repo" / "reports" / "data_docs" / "lensing_validate" / "fated-bloc").resolve()
    monkeypatch.delenv("DVC_EXP_NAME")
    assert data_docs_dir("reports/data_docs", "cenn_validate").name == "workspace"


PAGE = """<html><head>
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="stylesheet" href="https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css">
<link rel="canonical" href="https://example.org/page">
<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>
<script src="https://cdn.jsdelivr.net/npm/vega-lite@5"></script>
<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js" integrity="sha384-x"
  crossorigin="anonymous"></script>
<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js"></script>
<script src="https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js"></script>
<style>.logo { background: url('https://assets.example.org/full_logo_dark.png') }</style>
</head><body><img class="x"
  src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=20261121&dataContextId=1">
<a href="https://greatexpectations.io">docs</a>{charts}</body></html>"""


def site_with(tmp_path, charts=""):
    site = tmp_path / "site"
    (site / "validations" / "suite").mkdir(parents=True)
    (site / "static" / "images").mkdir(parents=True)
    (site / "index.html").write_text(PAGE.replace("{charts}", ""))
    (site / "validations" / "suite" / "run.html").write_text(PAGE.replace("{charts}", charts))
    return site


@pytest.mark.skipif(not all(os.path.isfile(p) for p in DEBIAN_ASSETS.values()),
                    reason="libjs-bootstrap4, libjs-jquery or fonts-font-awesome not installed (scripts/setup.sh)")
def test_pages_load_local_copies_in_order_and_nothing_remote(tmp_path):
    site = site_with(tmp_path)
    make_offline(site)
    page = (site / "validations" / "suite" / "run.html").read_text()
    loads = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert loads == [
        "../../static/offline/bootstrap4/css/bootstrap.min.css",
        "https://example.org/page",  # rel=canonical loads nothing
        "../../static/offline/font-awesome/css/font-awesome.min.css",
        "../../static/offline/cmbml/data_docs.css",
        "../../static/offline/jquery/jquery.min.js",  # jQuery before Bootstrap before the table
        "../../static/offline/bootstrap4/js/bootstrap.bundle.min.js",
        "../../static/offline/cmbml/table.js",
        "../../static/images/logo-long.png",
        "https://greatexpectations.io",  # a link, followed only when clicked
    ]
    assert "url(" not in page.split("<style>")[1].split("</style>")[0].replace("none", "")
    assert "integrity" not in page and "vega" not in page  # no charts: no Vega
    offline = site / "static" / "offline"
    for asset in ("bootstrap4/css/bootstrap.min.css", "jquery/jquery.min.js", "cmbml/table.js",
                  "font-awesome/fonts/fontawesome-webfont.woff2"):
        assert (offline / asset).stat().st_size > 0, asset
    assert 'href="./static/offline/bootstrap4/css/bootstrap.min.css"' in (site / "index.html").read_text()


def test_pages_with_charts_get_vega_and_an_unknown_cdn_file_is_left_out_with_a_warning(tmp_path):
    site = site_with(tmp_path, charts="<script>vegaEmbed('#c', {})</script>")
    page = site / "validations" / "suite" / "run.html"
    page.write_text(page.read_text().replace("</head>", '<script src="https://cdn.example.org/new.js"></script></head>'))
    with pytest.warns(UserWarning, match="no offline copy of https://cdn.example.org/new.js"):
        make_offline(site)
    html = page.read_text()
    assert html.count("../../static/offline/vega/vega-embed.js") == 1 and "cdn.example.org" not in html
    assert "window.vegaEmbed=" in (site / "static" / "offline" / "vega" / "vega-embed.js").read_text()


def test_publishing_replaces_an_earlier_site_and_keeps_other_files(tmp_path):
    docs = tmp_path / "docs"
    (docs / "validations" / "old").mkdir(parents=True)
    (docs / "validation.json").write_text("{}")
    index = publish_data_docs(site_with(tmp_path), docs)
    assert index == docs / "index.html" and index.is_file()
    assert not (docs / "validations" / "old").exists() and (docs / "validations" / "suite" / "run.html").is_file()
    assert (docs / "validation.json").read_text() == "{}"
