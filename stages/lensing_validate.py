"""Stage `lensing_validate`: the Great Expectations gate over every lensing split, with HTML Data Docs."""

from __future__ import annotations

import sys


def main() -> None:
    import pandas as pd

    from cmbml.common.gate import data_docs_dir, require_readable, run_gate
    from cmbml.common.io import write_json
    from cmbml.common.spectra import read_spectra_csv
    from cmbml.lensing.setup import SPLITS, load
    from cmbml.lensing.simulate import LensingSimulator
    from cmbml.lensing.validation import LensingExpectation, build_tables, qe_alignment_rows

    setup = load()
    # Expectations come from the parameters and theory, not from the files being checked.
    camb = read_spectra_csv(setup.paths.camb_cls)
    simulator = LensingSimulator(setup.sim, camb["cl_tt_unlensed"], camb["cl_kk"], seed=setup.seed)
    expect = LensingExpectation.from_simulator(
        simulator, setup.n_samples, setup.kappa_rms_nsigma, params_digest=setup.dataset_digest
    )
    files = {s: setup.paths.split(s) for s in SPLITS}
    require_readable(list(files.values()))  # a missing or damaged file named in one line, before any expectation
    # Pairs checked by physics too: the quadratic estimator on each split's maps must find its kappa.
    alignment = pd.DataFrame(
        qe_alignment_rows(
            files, setup.grid, camb["cl_tt_lensed"], simulator.cl_kk_grid, setup.sim.noise_uK_arcmin, setup.sim.T_lmax
        )
    )
    tables = build_tables(files, expect, alignment)
    # The Data Docs carry run times: kept in the repository (also from a queued experiment's copy), outside
    # the stage's output, whose validation.json holds only what follows from the data.
    docs = data_docs_dir(setup.paths.data_docs, "lensing_validate")
    result = run_gate(docs, "lensing_datasets", tables, run_name=f"lensing_validate-{setup.version}-{setup.scale}")
    write_json(setup.paths.validation, {"lensing_version": setup.version, **result.as_dict()})
    print(
        f"lensing_validate: {result.n_expectations} expectations, {len(result.failures)} failed; "
        f"run {result.run_name} at {result.run_time}; Data Docs: {result.data_docs_index}"
    )
    if not result.success:
        print("lensing datasets FAILED validation:\n  - " + "\n  - ".join(result.failures), file=sys.stderr)
        sys.exit(1)
