"""The documentation: README.md is the front page and docs/*.md the pages by topic. Every relative link and image
resolves (to a file of the repository, and a #fragment to a heading of the page it names, as GitHub makes
fragments), and every page is reachable from the front page."""

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def github_fragment(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation other than - and _ dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def fragments(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a "# comment" in a code block is no heading
    return {github_fragment(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_the_slug_of_a_heading_is_github_s():
    assert github_fragment("Enter your own method: `cmbml score`") == "enter-your-own-method-cmbml-score"
    assert github_fragment("PySM skies (`-S foregrounds=pysm`)") == "pysm-skies--s-foregroundspysm"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(
                f"{target}: no file {resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else resolved}"
            )
        elif fragment and resolved.suffix == ".md" and fragment not in fragments(resolved):
            broken.append(f"{target}: no heading #{fragment} in {resolved.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_front_page():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md")}
    assert not [p.name for p in PAGES[1:] if p.resolve() not in linked]


def test_the_front_page_is_short_and_holds_the_headline_tables():
    """The README is a front page (the two commands, the headline tables, where to read on), not the manual."""
    text = (REPO / "README.md").read_text()
    assert len(text) < 20_000
    for block in ("lensing-results-summary", "cenn-results-summary"):
        assert f"<!-- {block} -->" in text and f"<!-- /{block} -->" in text
    assert "./run repro" in text and "./run test" in text
