"""The HTML reports draw with no network: a gate's Data Docs and the `dvc plots show` page, opened from
file:// in headless Chromium whose every network request fails (a dead proxy, no name resolution).

The DOM is read after the pages' scripts ran; Chromium's net log shows which requests a page tried. About
a minute: a small gate run, a few browser starts and one `dvc plots show`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)"),
]

NO_NETWORK = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND"]
RUN_NAME = "offline_reports-v0-smoke"
# Put first in a probed page: the errors of every script after it, for the probe to report.
ERROR_HOOK = (
    "<script>window.pageErrors = []; addEventListener('error', function (e) { pageErrors.push(e.message) })</script>"
)


def browse(page: Path, scratch: Path, inject: str = "") -> tuple[str, list[str]]:
    """The DOM of ``page`` after its scripts ran, and the http(s) URLs the page asked for.

    ``inject``: a script run at the end of the page (from a copy beside it, so relative links stay the same),
    which finds the errors of the page's scripts in ``pageErrors``.
    """
    if inject:
        copy = page.with_name(f"probe-{page.name}")
        html = page.read_text(encoding="utf-8").replace("<head>", f"<head>{ERROR_HOOK}", 1)
        copy.write_text(html.replace("</body>", f"<script>{inject}</script></body>"), encoding="utf-8")
        page = copy
    netlog = scratch / f"{page.stem}.netlog.json"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        *NO_NETWORK,
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={scratch / 'profile'}",
        "--virtual-time-budget=10000",
        f"--log-net-log={netlog}",
        "--dump-dom",
        page.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0 and "</html>" in out.stdout, out.stderr[-3000:]
    return out.stdout, page_requests(netlog)


def page_requests(netlog: Path) -> list[str]:
    """URLs of the requests that file:// pages started (the browser's own update checks are not theirs)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return sorted(
        {
            e["params"]["url"]
            for e in log["events"]
            if e["type"] == start
            and "site=file://" in e["params"].get("site_for_cookies", "")
            and e["params"]["url"].startswith(("http:", "https:"))
        }
    )


def test_the_browser_is_offline_and_its_log_sees_page_requests(tmp_path):
    """The control: a page that needs a CDN gets nothing, and the request it tried is in the log."""
    page = tmp_path / "cdn.html"
    page.write_text(
        '<html><head><script src="https://cdn.jsdelivr.net/npm/vega@5"></script></head>'
        "<body><p id=out></p><script>out.textContent = 'vega is ' + typeof vega</script></body></html>"
    )
    dom, requests = browse(page, tmp_path)
    assert "vega is undefined" in dom
    assert requests == ["https://cdn.jsdelivr.net/npm/vega@5"]


@pytest.fixture(scope="module")
def data_docs(tmp_path_factory) -> tuple:
    """A two-table gate, one expectation failing, with its Data Docs in a fresh folder."""
    import great_expectations as gx
    import pandas as pd

    from cmbml.common.gate import GateTable, lower_bound, run_gate, upper_bound

    E = gx.expectations
    samples = pd.DataFrame({"kappa_var": [0.041, 0.043, 0.045], "nonfinite_count": [0, 0, 0]})
    files = pd.DataFrame({"readable": [True, False]})
    tables = [
        GateTable(
            "samples",
            samples,
            [
                E.ExpectTableRowCountToEqual(value=3),
                E.ExpectColumnMeanToBeBetween(
                    column="kappa_var",
                    min_value=lower_bound(0.0411269864707915),
                    max_value=upper_bound(0.0451262506584605),
                ),
            ],
        ),
        GateTable("files", files, [E.ExpectColumnValuesToBeInSet(column="readable", value_set=[True])]),
    ]
    docs = tmp_path_factory.mktemp("data_docs") / "docs"
    return run_gate(docs, "offline_reports", tables, run_name=RUN_NAME), docs


def test_data_docs_name_no_remote_file(data_docs):
    result, docs = data_docs
    assert result.data_docs_index == (docs / "index.html").resolve().as_uri()
    remote = re.compile(r"""<(?:script|img)\b[^>]*\bsrc=["']https?:|<link\b[^>]*\bhref=["']https?:|url\(["']?https?:""")
    for page in [*docs.rglob("*.html"), *docs.rglob("*.css")]:
        assert not remote.search(page.read_text(encoding="utf-8")), page


def test_data_docs_index_lists_the_run_offline(data_docs, tmp_path):
    """The index's table is built by its scripts (the HTML holds the rows only as data): one row a table."""
    _, docs = data_docs
    raw = (docs / "index.html").read_text(encoding="utf-8")
    dom, requests = browse(docs / "index.html", tmp_path)
    assert requests == []
    assert not re.search(r"<tr\b[^>]*data-href=", raw)  # the HTML holds the rows as data only
    rows = re.findall(r'<tr\b[^>]*\bdata-href="([^"]+)"[^>]*>(.*?)</tr>', dom, re.DOTALL)
    validations = [(href, cells) for href, cells in rows if href.startswith("validations/")]
    suites = [href for href, _ in rows if href.startswith("expectations/")]
    assert len(validations) == 2 and len(suites) == 2, dom[-3000:]
    assert all(RUN_NAME in cells and "__none__" not in cells for _, cells in validations)
    assert {href.split("/")[2] for href, _ in validations} == {"samples", "files"}  # validations/<suite>/<table>/
    assert sum("text-danger" in cells for _, cells in validations) == 1  # files failed


def probe_result(dom: str) -> dict:
    """What a probe wrote into the page (a ``<pre id="probe">`` holding JSON)."""
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-3000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_data_docs_index_tables_are_drawn_by_the_table_plugin(data_docs, tmp_path):
    """The bootstrap-table plugin (the npm package, with the filter controls and their date picker) runs with
    no script error; its search box and the page's "Clear Filters" button work on the validations table."""
    from cmbml.common.offline_reports import NPM_PACKAGES

    _, docs = data_docs
    probe = """
      var out = document.createElement("pre"), found = {errors: pageErrors};
      var runs = $("table[id$='-body-table']").filter(function () {
        return $(this).find("tr[data-href^='validations/']").length > 0;
      });
      function shown() { return runs.find("tr[data-href^='validations/']").length; }
      found.plugin = $.fn.bootstrapTable.VERSION + " " + $.fn.bootstrapTable.theme;
      found.search_boxes = $(".bootstrap-table .search input").length;
      found.filter_controls = runs.closest(".bootstrap-table").find(".filter-control").length;
      found.date_pickers = $(".date-filter-control").filter(function () { return $(this).data("datepicker"); }).length;
      found.sortable_headers = runs.find("th .sortable").length;
      runs.bootstrapTable("resetSearch", "files");  // what typing in the search box does
      found.shown_after_search = shown();
      try { clearTableFilters(runs.attr("id")); } catch (e) { found.errors.push(String(e)); }
      found.shown_after_clearing = shown();
      out.id = "probe";
      out.textContent = JSON.stringify(found);
      document.body.appendChild(out);"""
    dom, requests = browse(docs / "index.html", tmp_path, inject=probe)
    assert requests == []
    found = probe_result(dom)
    assert found["errors"] == []
    assert found["plugin"] == f"{NPM_PACKAGES['bootstrap-table']} bootstrap4"  # the pinned one, for Bootstrap 4
    assert found["search_boxes"] == 2 and found["date_pickers"] == 1
    assert found["filter_controls"] >= 5 and found["sortable_headers"] >= 5
    assert found["shown_after_search"] == 1 and found["shown_after_clearing"] == 2


def test_a_validation_page_is_styled_offline(data_docs, tmp_path):
    """The page behind an index row shows its expectations, rounded, with Bootstrap's styles and Font Awesome's
    icons from the local copies."""
    _, docs = data_docs
    samples = next(docs.glob(f"validations/offline_reports/samples/{RUN_NAME}/*/*.html"))
    probe = """
      document.fonts.ready.then(function () {
        var ok = document.querySelector(".fa-check-circle.text-success"), out = document.createElement("pre");
        out.id = "probe";
        out.textContent = JSON.stringify({
          errors: pageErrors,
          success_colour: getComputedStyle(ok).color,
          icon_font: getComputedStyle(ok).fontFamily,
          icon_glyph: getComputedStyle(ok, "::before").content,
          icon_font_loaded: document.fonts.check("14px FontAwesome"),
          badge_colour: getComputedStyle(document.querySelector(".badge-secondary")).backgroundColor,
        });
        document.body.appendChild(out);
      });"""
    dom, requests = browse(samples, tmp_path, inject=probe)
    assert requests == []
    text = re.sub(r"<[^>]+>", " ", dom)
    assert re.search(r"mean must be greater than or equal to\s+0\.04112\s+and less than or equal to\s+0\.04513", text)
    assert "0.0411269864707915" not in dom
    found = probe_result(dom)
    assert found["errors"] == []
    assert found["success_colour"] == "rgb(40, 167, 69)"  # Bootstrap 4's .text-success
    assert found["badge_colour"] == "rgb(108, 117, 125)"  # Bootstrap 4's .badge-secondary
    assert "FontAwesome" in found["icon_font"] and found["icon_font_loaded"]
    assert found["icon_glyph"] not in ("", "none", "normal")


def test_dvc_plots_draw_offline_with_the_repository_template(tmp_path):
    """`dvc plots show` in a small DVC project set up like the repository: the template of .dvc/config, the
    page written beside .venv. Vega draws the plot as SVG, and nothing is asked of the network."""
    from cmbml.common.offline_reports import write_vega_bundle

    write_vega_bundle()  # what scripts/setup.sh runs; a no-op when the bundle is current
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"

    def dvc(*args: str, cwd: Path) -> str:
        out = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout.strip()

    template = (REPO / ".dvc" / dvc("config", "plots.html_template", cwd=REPO)).resolve()
    assert template.is_file() and template.is_relative_to(REPO)
    project = tmp_path / "project"
    project.mkdir()
    (project / ".venv").symlink_to(Path(sys.prefix))  # the repository's layout: .venv beside dvc_plots/
    dvc("init", "--no-scm", "-q", cwd=project)
    dvc("config", "plots.html_template", str(template), cwd=project)
    rows = [{"epoch": i, "loss": 1.0 / (1 + i)} for i in range(5)]
    (project / "history.json").write_text(json.dumps(rows))
    (project / "dvc.yaml").write_text("plots:\n  - history.json:\n      x: epoch\n      y: loss\n")
    dvc("plots", "show", cwd=project)
    page = project / "dvc_plots" / "index.html"
    assert "cdn." not in page.read_text(encoding="utf-8")
    dom, requests = browse(page, tmp_path)
    assert requests == []
    assert re.search(r'<svg\b[^>]*class="marks"', dom), dom[-3000:]
    assert 'class="mark-line' in dom  # the loss curve itself
    assert "Vega not found" not in re.sub(r"<script\b.*?</script>", "", dom, flags=re.DOTALL)
