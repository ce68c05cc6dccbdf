"""A Great Expectations gate over tables that summarise array datasets.

Arrays are validated by reducing each sample to a row of statistics (and each file to a
row of facts); each table gets an expectation suite, and one checkpoint per table runs it in
a file-backed context kept in a temporary folder. Only two things are kept: the result
(:class:`GateResult`, written by the stages as JSON, the same bytes for the same data) and
the HTML Data Docs, made readable offline (:func:`make_offline`) and copied where the caller
asks, usually :func:`data_docs_dir`, outside every DVC output since they carry run times.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from cmbml.common.params import repository_root

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass
class GateTable:
    """One table to validate: a name, a DataFrame and its expectations."""

    name: str
    frame: Any  # pandas.DataFrame
    expectations: list = field(default_factory=list)


@dataclass
class GateResult:
    """Outcome of a checkpoint run.

    ``as_dict`` holds what follows from the data only; the run name, run time and the Data Docs
    location (``data_docs_index``, a ``file://`` URL) are for the log.
    """

    success: bool
    failures: list[str]
    n_expectations: int
    data_docs_index: str | None
    details: list[dict[str, Any]]
    run_name: str = ""
    run_time: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "n_expectations": self.n_expectations,
            "n_failed": len(self.failures),
            "failures": self.failures,
            "results": self.details,
        }


# ---- thresholds ---------------------------------------------------------------------------------------

def _round_significant(x, digits: int, rounding: str):
    if x is None or isinstance(x, bool) or not math.isfinite(x) or x == 0:
        return x
    exact = Decimal(float(x))  # the float's exact value: the rounding direction holds
    return float(exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding=rounding))


def lower_bound(x: float | None, digits: int = 4) -> float | None:
    """``x`` to ``digits`` significant digits, rounded down: a lower bound that reads well in the Data
    Docs and rejects nothing the exact one accepts (``None`` and non-finite values pass through)."""
    return _round_significant(x, digits, ROUND_FLOOR)


def upper_bound(x: float | None, digits: int = 4) -> float | None:
    """``x`` to ``digits`` significant digits, rounded up (see :func:`lower_bound`)."""
    return _round_significant(x, digits, ROUND_CEILING)


# ---- running ------------------------------------------------------------------------------------------

def _describe(result) -> dict[str, Any]:
    cfg = result.expectation_config
    res = result.result or {}
    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}
    return {
        "expectation": cfg.type,
        "kwargs": _jsonable(kwargs),
        "success": bool(result.success),
        "observed_value": _jsonable(res.get("observed_value")),
        "unexpected_count": _jsonable(res.get("unexpected_count")),
        "partial_unexpected_list": _jsonable((res.get("partial_unexpected_list") or [])[:5]),
        "exception": (result.exception_info or {}).get("exception_message") if result.exception_info else None,
    }


def _jsonable(value):
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return "nan"
    return value


def data_docs_dir(base: str | Path, stage: str) -> Path:
    """Where ``stage`` keeps its Data Docs: ``<repository>/<base>/<stage>/<experiment>``.

    ``<repository>`` is the user's repository also from inside a queued or ``--temp`` DVC experiment,
    whose copy is deleted afterwards (as for the MLflow store); ``<experiment>`` is the DVC experiment's
    name (``DVC_EXP_NAME``), or ``workspace`` for ``dvc repro`` and direct runs.
    """
    experiment = re.sub(r"[^\w.-]", "_", os.environ.get("DVC_EXP_NAME") or "workspace")
    return repository_root() / base / stage / experiment


def run_gate(docs_dir: str | Path, checkpoint_name: str, tables: list[GateTable],
             run_name: str | None = None) -> GateResult:
    """Validate every table with its suite; write offline-readable HTML Data Docs to ``docs_dir``.

    Each table's suite is named ``<checkpoint_name>.<table>``; every validation carries ``run_name``
    (default ``checkpoint_name``) and one run time. The Data Docs of an earlier run in ``docs_dir`` are
    replaced; other files there are left alone. Returns a :class:`GateResult`; failures read
    ``table: expectation(column) failed; observed ...``.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    run_name = run_name or checkpoint_name
    run_time = datetime.now(timezone.utc)
    failures: list[str] = []
    details: list[dict[str, Any]] = []
    success = True
    n_expectations = 0
    with tempfile.TemporaryDirectory(prefix="cmbml-gx-") as project:
        context = gx.get_context(mode="file", project_root_dir=project)
        try:  # quieter logs: no per-metric progress bars
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            context.variables.save()
        except Exception:  # noqa: BLE001 - cosmetic only
            pass
        source = context.data_sources.add_or_update_pandas(checkpoint_name)
        definitions = []
        for table in tables:
            asset = source.add_dataframe_asset(table.name)
            batch = asset.add_batch_definition_whole_dataframe(f"{table.name}_all")
            suite = context.suites.add_or_update(gx.ExpectationSuite(name=f"{checkpoint_name}.{table.name}"))
            for expectation in table.expectations:
                suite.add_expectation(expectation)
            definitions.append(
                context.validation_definitions.add_or_update(
                    gx.ValidationDefinition(name=f"{checkpoint_name}.{table.name}", data=batch, suite=suite)
                )
            )
        # Each validation definition needs its own dataframe: run them one by one, docs at the end.
        for table, definition in zip(tables, definitions):
            checkpoint = context.checkpoints.add_or_update(
                gx.Checkpoint(
                    name=f"{checkpoint_name}.{table.name}",
                    validation_definitions=[definition],
                    actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                    result_format="SUMMARY",
                )
            )
            outcome = checkpoint.run(batch_parameters={"dataframe": table.frame},
                                     run_id=RunIdentifier(run_name=run_name, run_time=run_time))
            success = success and bool(outcome.success)
            for run in outcome.run_results.values():
                for result in run.results:
                    n_expectations += 1
                    info = {"table": table.name, **_describe(result)}
                    details.append(info)
                    if not result.success:
                        col = info["kwargs"].get("column") or info["kwargs"].get("column_A") or ""
                        failures.append(
                            f"{table.name}: {info['expectation']}({col}) failed; observed {info['observed_value']!r}, "
                            f"unexpected {info['unexpected_count']!r} {info['partial_unexpected_list'] or ''}".rstrip()
                        )
        site = Path(project) / "gx" / "uncommitted" / "data_docs" / "local_site"
        index = publish_data_docs(site, docs_dir) if (site / "index.html").is_file() else None
    return GateResult(success, failures, n_expectations, index.resolve().as_uri() if index else None, details,
                      run_name=run_name, run_time=run_time.isoformat(timespec="seconds"))


# ---- offline Data Docs --------------------------------------------------------------------------------

DATA_DOCS_ENTRIES = ("index.html", "static", "expectations", "validations")
"""What a Data Docs site consists of (and what :func:`publish_data_docs` replaces)."""

DEBIAN_ASSETS = {
    # site path under static/offline/ : file installed by a Debian package (scripts/setup.sh)
    "bootstrap4/css/bootstrap.min.css": "/usr/share/javascript/bootstrap4/css/bootstrap.min.css",  # libjs-bootstrap4
    "bootstrap4/js/bootstrap.bundle.min.js": "/usr/share/javascript/bootstrap4/js/bootstrap.bundle.min.js",
    "jquery/jquery.min.js": "/usr/share/javascript/jquery/jquery.min.js",  # libjs-jquery
    "font-awesome/css/font-awesome.min.css": "/usr/share/fonts-font-awesome/css/font-awesome.min.css",
    **{f"font-awesome/fonts/{name}": f"/usr/share/fonts-font-awesome/fonts/{name}"  # fonts-font-awesome
       for name in ("fontawesome-webfont.woff2", "fontawesome-webfont.woff", "fontawesome-webfont.ttf")},
}

OFFLINE_CSS = """\
/* cmbml: Data Docs read offline. Their icons use Font Awesome 6 class names; Debian ships Font Awesome 4,
   whose glyphs have the same names (fa-check-circle, fa-times, ...) under the class "fa". */
.fas, .far, .fab, .fa-solid, .fa-regular {
  display: inline-block; font: normal normal normal 14px/1 FontAwesome; font-size: inherit;
  text-rendering: auto; -webkit-font-smoothing: antialiased; -moz-osx-font-smoothing: grayscale;
}
.ge-offline-search { max-width: 16rem; display: inline-block; }
"""

OFFLINE_TABLE_JS = """\
/* cmbml: a small stand-in for the bootstrap-table jQuery plugin, which neither Debian nor PyPI ships, so
   that the Data Docs index lists its validations offline: it renders the columns and rows it is given,
   sorts by a clicked header, filters by a search box and fires "click-row.bs.table" as the plugin does. */
(function ($) {
  "use strict";
  function named(value) { return typeof value === "string" ? window[value] : value; }
  function text(html) { return $("<div>").html(html == null ? "" : String(html)).text(); }
  function key(row, column) { return row[column.sortName || column.field]; }
  function render($table, state) {
    var o = state.options, columns = o.columns || [], query = state.query.trim().toLowerCase();
    var rows = (o.data || []).filter(function (row) {
      return !query || columns.some(function (c) { return text(row[c.field]).toLowerCase().indexOf(query) >= 0; });
    });
    if (state.sortColumn) {
      var sign = state.sortOrder === "desc" ? -1 : 1, c = state.sortColumn;
      rows.sort(function (a, b) { var x = key(a, c), y = key(b, c); return x < y ? -sign : x > y ? sign : 0; });
    }
    var $head = $("<tr>");
    columns.forEach(function (column) {
      var $th = $("<th>").text(column.title || column.field).css("text-align", column.align || "");
      if (column.sortable && column.sortable !== "false") {
        $th.css("cursor", "pointer").on("click", function () {
          state.sortOrder = state.sortColumn === column && state.sortOrder === "asc" ? "desc" : "asc";
          state.sortColumn = column;
          render($table, state);
        });
      }
      $head.append($th);
    });
    var $body = $("<tbody>"), attributes = named(o.rowAttributes), style = named(o.rowStyle);
    rows.forEach(function (row, i) {
      var $tr = $("<tr>").attr("data-index", i);
      if (attributes) { $.each(attributes(row, i) || {}, function (k, v) { $tr.attr(k, v); }); }
      var look = style ? style(row, i) || {} : {};
      if (look.css) { $tr.css(look.css); }
      if (look.classes) { $tr.addClass(look.classes); }
      columns.forEach(function (column) {
        var cell = row[column.field] == null ? "" : row[column.field];
        $tr.append($("<td>").css("text-align", column.align || "").html(cell));
      });
      $tr.on("click", function () { $table.trigger("click-row.bs.table", [row, $tr]); });
      $body.append($tr);
    });
    $table.empty().append($("<thead>").append($head), $body);
  }
  $.fn.bootstrapTable = function (options) {
    if (typeof options === "string") {  // methods: only the search box has state to reset
      return this.each(function () {
        var state = $(this).data("cmbml.table");
        if (state && options === "resetSearch") {
          state.query = "";
          $(state.search).val("");
          render($(this), state);
        }
      });
    }
    return this.each(function () {
      var $table = $(this).addClass("table table-hover");
      var first = (options.columns || []).filter(function (c) { return c.field === options.sortName; })[0];
      var state = {options: options, query: "", sortOrder: options.sortOrder || "asc", sortColumn: first};
      $table.data("cmbml.table", state);
      if (options.search && options.search !== "false" && options.toolbar) {
        state.search = $("<input type='search' placeholder='Search'>")
          .addClass("form-control form-control-sm ml-1 ge-offline-search")
          .on("input", function () { state.query = this.value; render($table, state); });
        $(options.toolbar).append(state.search);
      }
      render($table, state);
    });
  };
})(jQuery);
"""


def _cdn_replacement(url: str, page_html: str) -> list[str]:
    """The local assets (paths under ``static/offline/``) that replace the CDN file ``url``; none when the
    page needs nothing of it offline (dark theme, date picker and filter controls of the table plugin)."""
    name = url.lower()
    if "bootstrap-table" in name:
        return [] if ("filter-control" in name or name.endswith(".css")) else ["cmbml/table.js"]
    if any(part in name for part in ("bootstrap-datepicker", "bootstrap-dark", "prefers-dark", "popper")):
        return []  # popper: inside bootstrap.bundle
    if "jquery" in name:
        return ["jquery/jquery.min.js"]
    if "bootstrap" in name:
        return ["bootstrap4/css/bootstrap.min.css" if name.endswith(".css") else "bootstrap4/js/bootstrap.bundle.min.js"]
    if "font-awesome" in name or "fontawesome" in name:
        return ["font-awesome/css/font-awesome.min.css", "cmbml/data_docs.css"]
    if "vega" in name:
        return ["vega/vega-embed.js"] if "vegaEmbed(" in page_html else []
    warnings.warn(f"Data Docs: no offline copy of {url}; left out", stacklevel=3)
    return []


_TAG = re.compile(r"""<script\b[^>]*\bsrc=["'](https?://[^"']+)["'][^>]*>\s*</script>"""
                  r"""|<link\b[^>]*\bhref=["'](https?://[^"']+)["'][^>]*>""", re.IGNORECASE)
_IMAGE = re.compile(r"""(<img\b[^>]*\bsrc=)["']https?://[^"']*?/([\w.-]+\.(?:png|svg|gif|ico))(?:\?[^"']*)?["']""",
                    re.IGNORECASE)
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


VEGA_LITE_VERSION = "5.21"
"""Vega-Lite of the Vega bundle: Data Docs charts and DVC's plot templates are Vega-Lite 5 specs."""


def vega_javascript(vl_version: str = VEGA_LITE_VERSION) -> str:
    """Vega, Vega-Lite and Vega-Embed as one classic script that defines ``vega``, ``vegaLite`` and
    ``vegaEmbed``, bundled by the installed ``vl-convert-python`` from the copies it carries (nothing is
    downloaded)."""
    import vl_convert

    # In a function, the bundle's top-level names stay out of the page's global scope, where the page's own
    # scripts declare theirs.
    return f"(function () {{\n{vl_convert.javascript_bundle(vl_version=vl_version)}\n}})();\n"


def make_offline(site: str | Path) -> list[Path]:
    """Make the Data Docs site at ``site`` readable with no network: every page loads its stylesheets and
    scripts from ``site/static/offline``, copied from files that Debian packages installed (Bootstrap 4,
    jQuery, Font Awesome), plus a stand-in for the table plugin and, for pages with charts, Vega from
    ``vl-convert-python``. Pages open from ``file://`` or any static server. Returns the pages rewritten."""
    site = Path(site)
    pages, used = [], set()
    for page in sorted(site.rglob("*.html")):
        root = Path(os.path.relpath(site, page.parent)).as_posix()
        html, assets = _offline_page(page.read_text(encoding="utf-8"), root)
        page.write_text(html, encoding="utf-8")
        pages.append(page)
        used |= assets
    for css in (site / "static").rglob("*.css"):  # their dark theme's logo
        css.write_text(_CSS_URL.sub("none", css.read_text(encoding="utf-8")), encoding="utf-8")
    out = site / "static" / "offline"
    own = {"cmbml/table.js": OFFLINE_TABLE_JS, "cmbml/data_docs.css": OFFLINE_CSS}
    missing = []
    if "font-awesome/css/font-awesome.min.css" in used:  # the fonts its rules name (woff2 first)
        used |= {a for a in DEBIAN_ASSETS if a.startswith("font-awesome/fonts/")}
    for asset in sorted(used):
        dest = out / asset
        dest.parent.mkdir(parents=True, exist_ok=True)
        if asset in own:
            dest.write_text(own[asset], encoding="utf-8")
        elif asset == "vega/vega-embed.js":
            dest.write_text(vega_javascript(), encoding="utf-8")
        elif Path(DEBIAN_ASSETS[asset]).is_file():
            shutil.copyfile(DEBIAN_ASSETS[asset], dest)  # follows Debian's symbolic links
        else:
            missing.append(DEBIAN_ASSETS[asset])
    if missing:
        warnings.warn(f"Data Docs: {', '.join(missing)} not installed (scripts/setup.sh installs them); "
                      "pages will lack their styles or scripts", stacklevel=2)
    return pages


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


class GateNotPassed(RuntimeError):
    """A later stage was asked to read data that its validation gate did not pass."""


def require_passed(result_file: str | Path) -> None:
    """Raise :class:`GateNotPassed` unless ``result_file`` (a gate's JSON result) records success."""
    import json

    path = Path(result_file)
    result = json.loads(path.read_text()) if path.exists() else {}
    if not result.get("success"):
        raise GateNotPassed(f"{path} does not record a passed validation: run the validation stage first")
