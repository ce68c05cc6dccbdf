"""HTML reports that draw with no network: Great Expectations Data Docs and the ``dvc plots show`` page.

Both would load their stylesheets and scripts from CDNs, so on a compute node without network they stay
unstyled or blank. Set-up (``scripts/setup.sh``) installs local copies and this module points the pages
at them; nothing is downloaded at run time.

* Data Docs (:func:`publish_data_docs`, :func:`make_offline`): every page loads its files from
  ``static/offline/`` of its own site, copied from Debian packages (Bootstrap 4, jQuery, Font Awesome), from
  the npm packages that set-up installs in the virtualenv (:data:`NPM_PACKAGES`: the bootstrap-table plugin
  that builds the index tables, its filter controls and their date picker, at the versions that the Data
  Docs templates of Great Expectations name), from this package's ``assets/`` and, for pages with charts,
  from Vega bundled by ``vl-convert-python``.
* ``dvc plots show``: the repository's template (``plots.html_template`` in ``.dvc/config``,
  ``conf/plots/offline.html``) loads Vega, Vega-Lite and Vega-Embed from :data:`VEGA_BUNDLE` in the
  virtualenv, which set-up writes with ``python -m cmbml.common.offline_reports``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import warnings
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

SETUP_HINT = "run ./run (set-up) in the repository"
"""What a missing file's message asks for: ``./run`` runs the idempotent ``scripts/setup.sh`` first."""


class ReportAssetMissing(FileNotFoundError):
    """A file that set-up installs for the offline reports is not there (or is not the pinned version)."""


# ---- assets ------------------------------------------------------------------------------------------

DATA_DOCS_ENTRIES = ("index.html", "static", "expectations", "validations")
"""What a Data Docs site consists of (and what :func:`publish_data_docs` replaces)."""

DEBIAN_ASSETS = {
    # site path under static/offline/ : file installed by a Debian package (scripts/setup.sh)
    "bootstrap4/css/bootstrap.min.css": "/usr/share/javascript/bootstrap4/css/bootstrap.min.css",  # libjs-bootstrap4
    "bootstrap4/js/bootstrap.bundle.min.js": "/usr/share/javascript/bootstrap4/js/bootstrap.bundle.min.js",
    "jquery/jquery.min.js": "/usr/share/javascript/jquery/jquery.min.js",  # libjs-jquery
    "font-awesome/css/font-awesome.min.css": "/usr/share/fonts-font-awesome/css/font-awesome.min.css",
    **{
        f"font-awesome/fonts/{name}": f"/usr/share/fonts-font-awesome/fonts/{name}"  # fonts-font-awesome
        for name in ("fontawesome-webfont.woff2", "fontawesome-webfont.woff", "fontawesome-webfont.ttf")
    },
}

NPM_PREFIX = Path(sys.prefix) / "share" / "cmbml" / "npm"
"""Where set-up installs :data:`NPM_PACKAGES` (``npm install --prefix``): inside the virtualenv."""

NPM_PACKAGES = {"bootstrap-table": "1.19.1", "bootstrap-datepicker": "1.9.0"}
"""The npm packages of the Data Docs, pinned to the versions that the templates of Great Expectations 1.24
load (written for their Bootstrap 4); ``scripts/setup.sh`` installs the same pins."""

_FILTER_CONTROL = "extensions/filter-control/bootstrap-table-filter-control"
NPM_ASSETS = {
    # site path under static/offline/ : (npm package, file in the package); the site keeps the dist/ layout
    f"{package}/{path}": (package, f"dist/{path}")
    for package, path in (
        ("bootstrap-table", "bootstrap-table.min.css"),
        ("bootstrap-table", "bootstrap-table.min.js"),
        ("bootstrap-table", f"{_FILTER_CONTROL}.min.css"),
        ("bootstrap-table", f"{_FILTER_CONTROL}.min.js"),
        ("bootstrap-datepicker", "css/bootstrap-datepicker.min.css"),
        ("bootstrap-datepicker", "js/bootstrap-datepicker.min.js"),
    )
}

PACKAGE_ASSETS = {
    # site path under static/offline/ : file in cmbml/common/assets/ (package data)
    "cmbml/data_docs.css": "data_docs.css",
}

VEGA_ASSET = "vega/vega-embed.js"
"""Site path of the Vega bundle, for pages that draw charts."""


def package_asset(name: str) -> str:
    """The text of ``name`` in this package's ``assets/`` folder (package data, also in an editable install)."""
    return files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def npm_file(package: str, path: str, prefix: str | Path | None = None) -> Path:
    """``path`` in the npm ``package`` that set-up installed under ``prefix`` (default :data:`NPM_PREFIX`).

    Raises :class:`ReportAssetMissing` when the file is absent or the package is not the version pinned in
    :data:`NPM_PACKAGES`.
    """
    root = Path(prefix or NPM_PREFIX) / "node_modules" / package
    manifest = root / "package.json"
    if not manifest.is_file():
        raise ReportAssetMissing(
            f"{manifest} not found ({package} {NPM_PACKAGES[package]} for the Data Docs): {SETUP_HINT}"
        )
    found = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    if found != NPM_PACKAGES[package]:
        raise ReportAssetMissing(f"{manifest} is version {found}, not the pinned {NPM_PACKAGES[package]}: {SETUP_HINT}")
    if not (root / path).is_file():
        raise ReportAssetMissing(f"{root / path} not found: {SETUP_HINT}")
    return root / path


def installed_asset(asset: str) -> Path:
    """The installed file (Debian or npm package) that the site path ``asset`` is a copy of."""
    if asset in NPM_ASSETS:
        return npm_file(*NPM_ASSETS[asset])
    path = Path(DEBIAN_ASSETS[asset])
    if not path.is_file():
        raise ReportAssetMissing(f"{path} not found (a Debian package for the Data Docs): {SETUP_HINT}")
    return path


# ---- Vega --------------------------------------------------------------------------------------------

VEGA_LITE_VERSION = "5.21"
"""Vega-Lite of the Vega bundle: Data Docs charts and DVC's plot templates are Vega-Lite 5 specs."""

VEGA_BUNDLE = Path(sys.prefix) / "share" / "cmbml" / "vega-embed.js"
"""Where set-up writes the bundle; the template loads it as ``../.venv/share/cmbml/vega-embed.js`` from
``dvc_plots/index.html``, which ``dvc plots show`` writes in the repository beside ``.venv``."""


def vega_javascript(vl_version: str = VEGA_LITE_VERSION) -> str:
    """Vega, Vega-Lite and Vega-Embed as one classic script that defines ``vega``, ``vegaLite`` and
    ``vegaEmbed``, bundled by the installed ``vl-convert-python`` from the copies it carries (nothing is
    downloaded)."""
    import vl_convert

    # In a function, the bundle's top-level names stay out of the page's global scope, where the page's own
    # scripts declare theirs.
    return f"(function () {{\n{vl_convert.javascript_bundle(vl_version=vl_version)}\n}})();\n"


def bundle_header() -> str:
    """First line of the bundle: which libraries, from which ``vl-convert-python`` (a stale one is rewritten)."""
    import vl_convert

    return (
        f"/* Vega {vl_convert.get_vega_version()}, Vega-Lite {VEGA_LITE_VERSION}, Vega-Embed "
        f"{vl_convert.get_vega_embed_version()}: bundled by vl-convert-python {version('vl-convert-python')} */"
    )


def write_vega_bundle(dest: str | Path = VEGA_BUNDLE) -> Path:
    """Write the Vega bundle (:func:`vega_javascript`) to ``dest``, unless the one there comes from the same
    ``vl-convert-python``. Returns ``dest``."""
    dest = Path(dest)
    header = bundle_header()
    if dest.is_file():
        with dest.open(encoding="utf-8") as fh:
            if fh.readline().rstrip("\n") == header:
                return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(f"{header}\n{vega_javascript()}", encoding="utf-8")
    tmp.replace(dest)  # a page never sees half a bundle
    return dest


# ---- Data Docs ---------------------------------------------------------------------------------------


def _cdn_replacement(url: str, page_html: str) -> list[str]:
    """The local assets (paths under ``static/offline/``) that replace the CDN file ``url``; none when the
    page needs nothing of it offline (the dark theme, and Popper, which is inside Bootstrap's bundle)."""
    name = url.lower()
    css = name.endswith(".css")
    if "bootstrap-table" in name:
        stem = f"bootstrap-table/{_FILTER_CONTROL}" if "filter-control" in name else "bootstrap-table/bootstrap-table"
        return [f"{stem}.min.css" if css else f"{stem}.min.js"]
    if "bootstrap-datepicker" in name:
        return [
            "bootstrap-datepicker/css/bootstrap-datepicker.min.css"
            if css
            else "bootstrap-datepicker/js/bootstrap-datepicker.min.js"
        ]
    if any(part in name for part in ("bootstrap-dark", "prefers-dark", "popper")):
        return []
    if "jquery" in name:
        return ["jquery/jquery.min.js"]
    if "bootstrap" in name:
        return ["bootstrap4/css/bootstrap.min.css" if css else "bootstrap4/js/bootstrap.bundle.min.js"]
    if "font-awesome" in name or "fontawesome" in name:
        return ["font-awesome/css/font-awesome.min.css", "cmbml/data_docs.css"]
    if "vega" in name:
        return [VEGA_ASSET] if "vegaEmbed(" in page_html else []
    warnings.warn(f"Data Docs: no offline copy of {url}; left out", stacklevel=3)
    return []


_TAG = re.compile(
    r"""<script\b[^>]*\bsrc=["'](https?://[^"']+)["'][^>]*>\s*</script>"""
    r"""|<link\b[^>]*\bhref=["'](https?://[^"']+)["'][^>]*>""",
    re.IGNORECASE,
)
_IMAGE = re.compile(
    r"""(<img\b[^>]*\bsrc=)["']https?://[^"']*?/([\w.-]+\.(?:png|svg|gif|ico))(?:\?[^"']*)?["']""", re.IGNORECASE
)
_CSS_URL = re.compile(r"""url\(\s*["']?https?://[^)"']*["']?\s*\)""", re.IGNORECASE)


def _asset_tag(href: str) -> str:
    if href.endswith(".css"):
        return f'<link rel="stylesheet" href="{href}">'
    return f'<script src="{href}"></script>'


def _offline_page(html: str, root: str) -> tuple[str, set[str]]:
    """``html`` with every CDN stylesheet and script replaced by local copies at ``root``/static/offline
    (``root``: the site root relative to the page) and remote images by the site's own; returns it and the
    assets it uses."""
    used: set[str] = set()

    def tag(match: re.Match) -> str:
        url = match.group(1) or match.group(2)
        if match.group(2) and not re.search(r"""rel=["']?stylesheet""", match.group(0), re.IGNORECASE):
            return match.group(0)  # a link that loads nothing (rel=canonical and the like)
        new = [a for a in _cdn_replacement(url, html) if a not in used]
        used.update(new)
        return "".join(_asset_tag(f"{root}/static/offline/{a}") for a in new)

    html = _TAG.sub(tag, html)
    html = _IMAGE.sub(lambda m: f'{m.group(1)}"{root}/static/images/{m.group(2)}"', html)
    return _CSS_URL.sub("none", html), used


def make_offline(site: str | Path) -> list[Path]:
    """Make the Data Docs site at ``site`` readable with no network: every page loads its stylesheets and
    scripts from ``site/static/offline`` (see the module's description). Pages open from ``file://`` or any
    static server. Returns the pages rewritten.

    Raises :class:`ReportAssetMissing` before changing anything when a file that set-up installs is missing.
    """
    site = Path(site)
    rewritten, used = {}, set()
    for page in sorted(site.rglob("*.html")):
        root = Path(os.path.relpath(site, page.parent)).as_posix()
        rewritten[page], assets = _offline_page(page.read_text(encoding="utf-8"), root)
        used |= assets
    if "font-awesome/css/font-awesome.min.css" in used:  # the fonts its rules name (woff2 first)
        used |= {a for a in DEBIAN_ASSETS if a.startswith("font-awesome/fonts/")}
    copies = {a: installed_asset(a) for a in sorted(used) if a in DEBIAN_ASSETS or a in NPM_ASSETS}
    for page, html in rewritten.items():
        page.write_text(html, encoding="utf-8")
    for css in (site / "static").rglob("*.css"):  # their dark theme's logo
        css.write_text(_CSS_URL.sub("none", css.read_text(encoding="utf-8")), encoding="utf-8")
    out = site / "static" / "offline"
    for asset in sorted(used):
        dest = out / asset
        dest.parent.mkdir(parents=True, exist_ok=True)
        if asset in copies:
            shutil.copyfile(copies[asset], dest)  # follows Debian's symbolic links
        elif asset in PACKAGE_ASSETS:
            dest.write_text(package_asset(PACKAGE_ASSETS[asset]), encoding="utf-8")
        elif asset == VEGA_ASSET:
            dest.write_text(vega_javascript(), encoding="utf-8")
    return list(rewritten)


def publish_data_docs(site: str | Path, docs_dir: str | Path) -> Path:
    """Copy the Data Docs ``site`` to ``docs_dir`` (replacing an earlier site there, leaving other files),
    make the copy readable offline and return its ``index.html``."""
    docs_dir = Path(docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    for entry in DATA_DOCS_ENTRIES:
        old = docs_dir / entry
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
    for entry in DATA_DOCS_ENTRIES:
        src = Path(site) / entry
        if src.is_dir():
            shutil.copytree(src, docs_dir / entry)
        elif src.is_file():
            shutil.copyfile(src, docs_dir / entry)
    make_offline(docs_dir)
    return docs_dir / "index.html"


if __name__ == "__main__":
    print(f"Vega for offline DVC plots: {write_vega_bundle()}")
