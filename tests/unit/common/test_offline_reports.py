"""Offline HTML reports without a browser: Data Docs pages rewritten to load only files of their own site
(copied from Debian packages, from the npm packages that set-up installs and from this package's assets),
set-up's npm step, and the Vega bundle of `dvc plots show`. The browser's view is in
tests/integration/test_offline_reports.py."""

import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from fnmatch import fnmatch
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

import pytest

from cmbml.common import offline_reports
from cmbml.common.offline_reports import (
    NPM_ASSETS,
    NPM_PACKAGES,
    NPM_PREFIX,
    PACKAGE_ASSETS,
    ReportAssetMissing,
    bundle_header,
    make_offline,
    npm_file,
    package_asset,
    publish_data_docs,
    write_vega_bundle,
)
from tests.conftest import REPO

GX_VIEW = Path(find_spec("great_expectations").submodule_search_locations[0]) / "render" / "view"
OFFLINE = "../../static/offline/"  # from validations/suite/run.html
CDN_TAG = re.compile(r"""<script\b[^>]*\bsrc=["']https?://[^>]*>\s*</script>|<link\b[^>]*\bhref=["']https?://[^>]*>""")

# The head and script imports of Great Expectations' page templates (page.j2, js_script_imports.j2).
PAGE = """<html><head>
<link rel="stylesheet" href="https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css">
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="stylesheet" type="text/css"
  href="https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css">
<link rel="stylesheet" type="text/css"
  href="https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css">
<link rel="stylesheet"
  href="https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css" />
<link rel="canonical" href="https://example.org/page">
<style>.logo { background: url('https://assets.example.org/full_logo_dark.png') }</style>
</head><body><img class="x"
  src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=20261121&dataContextId=1">
<a href="https://greatexpectations.io">docs</a>{charts}
<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>
<script src="https://cdn.jsdelivr.net/npm/vega-lite@5"></script>
<script src="https://cdn.jsdelivr.net/npm/vega-embed@6"></script>
<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js" integrity="sha384-x"
  crossorigin="anonymous"></script>
<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" integrity="sha384-y"></script>
<script src="https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js"></script>
<script
  src="https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js">
</script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js"></script>
</body></html>"""


def site_with(tmp_path, page=PAGE, charts=""):
    """A Data Docs site: the static folder of the installed Great Expectations, an index and one validation page."""
    site = tmp_path / "site"
    shutil.copytree(GX_VIEW / "static", site / "static")
    (site / "validations" / "suite").mkdir(parents=True)
    (site / "index.html").write_text(page.replace("{charts}", ""))
    (site / "validations" / "suite" / "run.html").write_text(page.replace("{charts}", charts))
    return site


def loads(html: str) -> list[str]:
    """What a page loads, in order: scripts, images and stylesheets (a plain link is followed only when
    clicked, a canonical link never), and the url() of its inline styles."""
    found = []
    for tag in re.finditer(r"<(script|img|link)\b[^>]*>|url\(\s*[\"']?([^)\"']*)", html, re.IGNORECASE):
        if tag.group(2) is not None:
            found.append(tag.group(2))
        elif tag.group(1).lower() != "link" or re.search(r"rel=[\"']?stylesheet", tag.group(0)):
            found += re.findall(r"""\b(?:src|href)=["']([^"']+)["']""", tag.group(0))
    return found


def test_pages_load_local_copies_in_order(tmp_path):
    site = site_with(tmp_path)
    make_offline(site)
    page = (site / "validations" / "suite" / "run.html").read_text()
    assert re.findall(r'(?:src|href)="([^"]+)"', page) == [
        f"{OFFLINE}bootstrap-table/bootstrap-table.min.css",
        f"{OFFLINE}bootstrap4/css/bootstrap.min.css",
        f"{OFFLINE}bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.css",
        f"{OFFLINE}bootstrap-datepicker/css/bootstrap-datepicker.min.css",  # the dark theme is left out
        "https://example.org/page",  # rel=canonical loads nothing
        "../../static/images/logo-long.png",
        "https://greatexpectations.io",  # a link, followed only when clicked
        f"{OFFLINE}font-awesome/css/font-awesome.min.css",
        f"{OFFLINE}cmbml/data_docs.css",
        f"{OFFLINE}jquery/jquery.min.js",  # jQuery, Bootstrap (with Popper), the table plugin, its extension
        f"{OFFLINE}bootstrap4/js/bootstrap.bundle.min.js",
        f"{OFFLINE}bootstrap-table/bootstrap-table.min.js",
        f"{OFFLINE}bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.js",
        f"{OFFLINE}bootstrap-datepicker/js/bootstrap-datepicker.min.js",
    ]
    assert "integrity" not in page and "vega" not in page  # no charts: no Vega
    assert 'href="./static/offline/bootstrap4/css/bootstrap.min.css"' in (site / "index.html").read_text()


def test_every_page_loads_only_files_of_its_site_for_every_cdn_file_of_the_templates(tmp_path):
    """A page with every CDN tag of the installed Great Expectations' templates: all have a local copy (no
    "left out" warning), and each page, and each stylesheet of the site, loads only existing files of the site."""
    tags = []
    for template in sorted((GX_VIEW / "templates").glob("*.j2")):
        tags += [t for t in CDN_TAG.findall(template.read_text(encoding="utf-8")) if t not in tags]
    assert len(tags) >= 10
    logo = "https://great-expectations-web-assets.s3.amazonaws.com/logo-long.png"
    site = site_with(tmp_path, page=f"<html><head>{''.join(tags)}</head><body><img src='{logo}'></body></html>")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pages = make_offline(site)
    assert len(pages) == 2

    def local(file: Path, url: str) -> bool:
        target = (file.parent / url.split("?")[0].split("#")[0]).resolve()
        return not re.match(r"[a-z]+:", url) and target.is_relative_to(site.resolve()) and target.is_file()

    for file in [*pages, *(site / "static").rglob("*.css")]:
        text = file.read_text(encoding="utf-8")
        for font in re.findall(r"@font-face\s*{[^}]*}", text):  # the browser takes the first format it reads
            assert any(local(file, url) for url in loads(font) if ".woff2" in url), font
            assert not re.search(r"url\(\s*[\"']?https?:", font), font
        for url in loads(re.sub(r"@font-face\s*{[^}]*}", "", text)):
            assert url.startswith(("data:", "#")) or local(file, url), (file, url)


def test_the_table_plugin_in_the_site_is_the_npm_package_that_set_up_installed(tmp_path):
    site = site_with(tmp_path)
    make_offline(site)
    offline = site / "static" / "offline"
    for asset, (package, path) in NPM_ASSETS.items():
        assert (offline / asset).read_bytes() == npm_file(package, path).read_bytes(), asset
    table = (offline / "bootstrap-table" / "bootstrap-table.min.js").read_text(encoding="utf-8")
    assert f"@version v{NPM_PACKAGES['bootstrap-table']}" in table[:500]  # the package's banner
    picker = (offline / "bootstrap-datepicker" / "js" / "bootstrap-datepicker.min.js").read_text(encoding="utf-8")
    assert f"Datepicker for Bootstrap v{NPM_PACKAGES['bootstrap-datepicker']}" in picker[:500]
    assert npm_file("bootstrap-table", "package.json").is_relative_to(NPM_PREFIX)
    assert sorted(p.relative_to(offline).as_posix() for p in (offline / "cmbml").iterdir()) == ["cmbml/data_docs.css"]


def test_a_missing_file_fails_in_one_line_that_names_it_and_changes_nothing(tmp_path, monkeypatch):
    site = site_with(tmp_path)
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    monkeypatch.setattr(offline_reports, "NPM_PREFIX", tmp_path / "npm")
    with pytest.raises(ReportAssetMissing) as missing:
        make_offline(site)
    message = str(missing.value)
    assert "\n" not in message and "./run" in message
    assert str(tmp_path / "npm" / "node_modules") in message and "package.json" in message
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before

    table = tmp_path / "npm" / "node_modules" / "bootstrap-table"
    table.mkdir(parents=True)
    (table / "package.json").write_text('{"name": "bootstrap-table", "version": "1.22.0"}')
    pinned = NPM_PACKAGES["bootstrap-table"]
    with pytest.raises(ReportAssetMissing, match=rf"version 1\.22\.0, not the pinned {pinned}"):
        npm_file("bootstrap-table", "dist/bootstrap-table.min.js")
    (table / "package.json").write_text(f'{{"version": "{pinned}"}}')
    with pytest.raises(ReportAssetMissing, match=r"dist/bootstrap-table\.min\.js not found: run \./run"):
        npm_file("bootstrap-table", "dist/bootstrap-table.min.js")

    monkeypatch.setitem(offline_reports.DEBIAN_ASSETS, "jquery/jquery.min.js", str(tmp_path / "jquery.min.js"))
    with pytest.raises(ReportAssetMissing, match=rf"{tmp_path / 'jquery.min.js'} not found .*run \./run"):
        offline_reports.installed_asset("jquery/jquery.min.js")


def test_set_up_installs_the_pinned_npm_packages_where_the_reports_look(tmp_path):
    """scripts/setup.sh's npm step, with a stand-in npm that records its arguments."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "npm").write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/npm-args"\n')
    (tmp_path / "bin" / "npm").chmod(0o755)
    script = (
        f'source "{REPO}/scripts/setup.sh"; echo "${{NPM_PREFIX#"$VENV"/}}"; '
        f'NPM_PREFIX="{tmp_path}/npm"; PATH="{tmp_path}/bin:$PATH"; install_npm_packages'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == NPM_PREFIX.relative_to(sys.prefix).as_posix()  # the same folder of the venv
    args = (tmp_path / "npm-args").read_text().split()
    assert args[:3] == ["install", "--prefix", f"{tmp_path}/npm"] and "--save-exact" in args
    assert sorted(a for a in args if "@" in a) == sorted(f"{p}@{v}" for p, v in NPM_PACKAGES.items())


def test_the_assets_load_as_package_files():
    assets = files("cmbml.common").joinpath("assets")
    names = sorted(p.name for p in assets.iterdir() if p.is_file())
    assert names == sorted(PACKAGE_ASSETS.values())
    for name in names:
        text = package_asset(name)
        assert text.strip() and text == assets.joinpath(name).read_text(encoding="utf-8")
    assert Path(str(assets)) == REPO / "src" / "cmbml" / "common" / "assets"  # the editable install's own folder
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["cmbml.common"]
    for name in names:  # a wheel carries them too
        assert any(fnmatch(f"assets/{name}", pattern) for pattern in patterns), name
    assert "FontAwesome" in package_asset("data_docs.css")


def test_pages_with_charts_get_vega_and_an_unknown_cdn_file_is_left_out_with_a_warning(tmp_path):
    site = site_with(tmp_path, charts="<script>vegaEmbed('#c', {})</script>")
    page = site / "validations" / "suite" / "run.html"
    new = '<script src="https://cdn.example.org/new.js"></script>'
    page.write_text(page.read_text().replace("</head>", f"{new}</head>"))
    with pytest.warns(UserWarning, match="no offline copy of https://cdn.example.org/new.js"):
        make_offline(site)
    html = page.read_text()
    assert html.count(f"{OFFLINE}vega/vega-embed.js") == 1 and "cdn.example.org" not in html
    assert "window.vegaEmbed=" in (site / "static" / "offline" / "vega" / "vega-embed.js").read_text()


def test_publishing_replaces_an_earlier_site_and_keeps_other_files(tmp_path):
    docs = tmp_path / "docs"
    (docs / "validations" / "old").mkdir(parents=True)
    (docs / "validation.json").write_text("{}")
    index = publish_data_docs(site_with(tmp_path), docs)
    assert index == docs / "index.html" and index.is_file()
    assert not (docs / "validations" / "old").exists() and (docs / "validations" / "suite" / "run.html").is_file()
    assert (docs / "validation.json").read_text() == "{}"


def test_the_vega_bundle_is_written_again_only_for_another_vl_convert(tmp_path, monkeypatch):
    monkeypatch.setattr(offline_reports, "vega_javascript", lambda: "/* bundle */\n")
    bundle = write_vega_bundle(tmp_path / "share" / "vega-embed.js")
    assert bundle.read_text() == f"{bundle_header()}\n/* bundle */\n"
    bundle.write_text(f"{bundle_header()}\n/* kept */\n")
    assert write_vega_bundle(bundle).read_text().endswith("/* kept */\n")  # current: left alone
    bundle.write_text("/* Vega from an older vl-convert-python */\n")
    assert write_vega_bundle(bundle).read_text().endswith("/* bundle */\n")


def test_set_up_writes_the_vega_bundle_with_the_module_entry():
    out = subprocess.run(
        [sys.executable, "-m", "cmbml.common.offline_reports"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"Vega for offline DVC plots: {offline_reports.VEGA_BUNDLE}"
    assert "cmbml.common.offline_reports" in (REPO / "scripts" / "setup.sh").read_text()
