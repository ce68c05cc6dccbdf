"""Licence and citation: what a paper that uses the project cites, and under which terms it may be reused.

Facts checked: CITATION.cff is valid CFF 1.2 in its required keys, its version and licence are the package's and
the LICENSE file's, it cites both original works (the two CENN papers by DOI, the cnn_lensing repository), and the
README points at both files.
"""

import tomllib

import yaml

from tests.conftest import REPO


def test_the_citation_file_names_the_project_its_licence_and_both_original_works():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["message"] and cff["title"] and cff["authors"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert cff["version"] == version
    assert cff["license"] == "BSD-3-Clause" and (REPO / "LICENSE").read_text().startswith("BSD 3-Clause License")
    dois = {ref.get("doi") for ref in cff["references"]}
    assert {"10.1051/0004-6361/202243450", "10.1088/1475-7516/2025/10/063"} <= dois  # CENN 2022 (A&A), 2025 (JCAP)
    assert any(ref.get("repository-code", "").endswith("/cnn_lensing") for ref in cff["references"])
    for ref in cff["references"]:
        assert ref["title"] and ref["authors"] and ref["type"] in ("article", "software")


def test_the_readme_points_at_the_licence_and_the_citation():
    readme = (REPO / "README.md").read_text()
    assert "(LICENSE)" in readme and "(CITATION.cff)" in readme
