"""Stage `lensing_validate`: the Great Expectations gate over every lensing split, with HTML Data Docs."""

from __future__ import annotations

import sys


def main() -> None:
    from cmbml.gate import run_gate
    from cmbml.io import write_json
    from cmbml.lensing_config import SPLITS, load
    from cmbml.lensing_sim import LensingSimulator
    from cmbml.lensing_validation import LensingExpectation, build_tables
    from cmbml.spectra import read_spectra_csv

    setup = load()
    # Expectations come from the parameters and theory, not from the files being checked.
    camb = read_spectra_csv(setup.paths.camb_cls)
    simulator = LensingSimulator(setup.sim, camb["cl_tt_unlensed"], camb["cl_kk"], seed=setup.seed)
    expect = LensingExpectation.from_simulator(simulator, setup.n_samples, setup.kappa_rms_nsigma)
    tables = build_tables({s: setup.paths.split(s) for s in SPLITS}, expect)
    result = run_gate(setup.paths.report, "lensing_datasets", tables)
    write_json(setup.paths.validation, {"lensing_version": setup.version, **result.as_dict()})
    print(f"lensing_validate: {result.n_expectations} expectations, {len(result.failures)} failed; "
          f"Data Docs: {result.data_docs_index}")
    if not result.success:
        print("lensing datasets FAILED validation:\n  - " + "\n  - ".join(result.failures), file=sys.stderr)
        sys.exit(1)
