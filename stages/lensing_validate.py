"""Stage `lensing_validate`: the Great Expectations gate over every lensing split, with HTML Data Docs."""

from __future__ import annotations

import sys
from pathlib import Path

from stages._common import SPECTRA_CSV, stage_params
from stages.lensing_simulate import OUT_DIR, SPLITS

REPORT_DIR = Path("reports/lensing")
RESULT = REPORT_DIR / "validation.json"


def expectation_from_params(params, spectra):
    """Expected shapes and statistics, derived from the parameters and theory (not from the files)."""
    from cmbml.lensing_sim import LensingSimConfig, LensingSimulator
    from cmbml.lensing_validation import LensingExpectation

    config = LensingSimConfig.from_params(params)
    sim = LensingSimulator(config, spectra["cl_tt_unlensed"], spectra["cl_kk"], seed=params["seed"])
    t_var = sim.cl_tt_grid.sum() / config.grid.area_sr + sim.sigma_noise**2
    return LensingExpectation(
        npix=config.npix,
        n_samples={s: params["scale"]["lensing"][f"n_{s}"] for s in SPLITS},
        kappa_exaggeration_factor=config.kappa_exaggeration_factor,
        kappa_variance=sim.expected_kappa_variance,
        kappa_effective_modes=sim.kappa_effective_modes,
        t_rms=float(t_var**0.5),
        kappa_rms_nsigma=params["lensing_validate"]["kappa_rms_nsigma"],
    )


def main() -> None:
    from cmbml.gate import run_gate
    from cmbml.io import write_json
    from cmbml.lensing_validation import build_tables
    from cmbml.spectra import read_spectra_csv

    params = stage_params("lensing")
    # Expectations come from the parameters and theory, not from the files being checked.
    expect = expectation_from_params(params, read_spectra_csv(SPECTRA_CSV))
    tables = build_tables({s: OUT_DIR / f"{s}.h5" for s in SPLITS}, expect)
    result = run_gate(REPORT_DIR, "lensing_datasets", tables)
    write_json(RESULT, {"lensing_version": params["lensing_version"], **result.as_dict()})
    print(f"lensing_validate: {result.n_expectations} expectations, {len(result.failures)} failed; "
          f"Data Docs: {result.data_docs_index}")
    if not result.success:
        print("lensing datasets FAILED validation:\n  - " + "\n  - ".join(result.failures), file=sys.stderr)
        sys.exit(1)
