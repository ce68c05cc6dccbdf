"""Stages `cenn_validate@training` and `cenn_validate@unseen`: the Great Expectations gate over every CENN patch file of the
training sky, or the unseen sky's Validation files, with HTML Data Docs."""

from __future__ import annotations

import sys


def main(foreground_sky: str = "training") -> None:
    from cmbml.cenn.foregrounds import read_foreground_spectra
    from cmbml.cenn.setup import SPLIT_FILES, load
    from cmbml.cenn.validation import build_tables, cenn_expectation
    from cmbml.common.gate import data_docs_dir, require_readable, run_gate
    from cmbml.common.io import write_json
    from cmbml.common.spectra import read_spectra_csv

    setup = load(foreground_sky=foreground_sky)
    paths = setup.paths
    # Expectations come from the parameters, the CMB theory and the foreground spectra, not from the patches.
    expect = cenn_expectation(setup, read_spectra_csv(paths.camb_cls), read_foreground_spectra(paths.foreground_cls))
    files = {
        (SPLIT_FILES[role], comp): paths.patch_file(role, comp) for role in setup.roles for comp in setup.components
    }
    require_readable(list(files.values()))  # a missing or damaged file named in one line, before any expectation
    # The Data Docs carry run times: kept in the repository (also from a queued experiment's copy), outside
    # the stage's output, whose validation.json holds only what follows from the data.
    sky = setup.foreground_sky
    stage = "cenn_validate" if sky == "training" else f"cenn_validate_{sky}"
    docs = data_docs_dir(paths.data_docs, stage)
    result = run_gate(
        docs,
        "cenn_datasets" if sky == "training" else f"cenn_datasets_{sky}",
        build_tables(files, expect),
        run_name=f"{stage}-{setup.variant}-{setup.scale}",
    )
    write_json(
        paths.validation,
        {
            "variant": setup.variant,
            "foreground_sky": sky,
            "foreground_model": setup.foregrounds["model"],
            **result.as_dict(),
        },
    )
    print(
        f"{stage} ({setup.foregrounds['model']} foregrounds): {result.n_expectations} expectations, {len(result.failures)} failed; "
        f"run {result.run_name} at {result.run_time}; Data Docs: {result.data_docs_index}"
    )
    if not result.success:
        print("CENN datasets FAILED validation:\n  - " + "\n  - ".join(result.failures), file=sys.stderr)
        sys.exit(1)
