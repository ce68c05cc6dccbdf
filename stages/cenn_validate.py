"""Stage `cenn_validate`: the Great Expectations gate over every CENN patch file, with HTML Data Docs."""

from __future__ import annotations

import sys
from pathlib import Path

from stages._common import SPECTRA_CSV, stage_params
from stages.cenn_simulate import SPLITS, dataset_path, target_index
from stages.foregrounds import read_foreground_spectra

REPORT_DIR = Path("reports/cenn")
RESULT = REPORT_DIR / "validation.json"


def theory_patch_variance(cl, transfer, side_deg: float) -> float:
    """Variance of a field with spectrum ``cl`` seen through ``transfer`` (beam x interpolation),
    about a patch's mean: the sum over multipoles above the patch scale."""
    import numpy as np

    lmax = len(transfer) - 1
    ell = np.arange(lmax + 1)
    sel = ell >= 180.0 / side_deg
    return float(np.sum((2 * ell[sel] + 1) / (4 * np.pi) * (cl[: lmax + 1] * transfer**2)[sel]))


def expectation_from_params(params, spectra, foreground_cls):
    """Expected shapes and statistics from the parameters, the CMB theory and the foreground spectra."""
    from cmbml.cenn_sim import read_instrument
    from cmbml.cenn_validation import CennExpectation
    from cmbml.foregrounds import dust_sed_rj, rj_to_cmb
    from cmbml.sky import gauss_beam, interpolation_window

    scale, variant, dust = params["scale"]["cenn"], params["cenn"], params["foregrounds"]["dust"]
    channels = read_instrument(params["instrument"]["table"])
    target = target_index(channels, params["instrument"]["target_GHz"])
    side_deg = scale["npix"] * scale["pixel_arcmin"] / 60.0
    lmax = 3 * scale["nside"] - 1
    window = interpolation_window(scale["nside"], lmax)
    beams = [gauss_beam(ch.fwhm_arcmin, lmax) for ch in channels]

    def component_cl(ee, bb):
        return {"E": ee, "B": bb, "Q": 0.5 * (ee + bb)}[variant["components"][0]][: lmax + 1]

    cmb = component_cl(spectra["cl_ee_lensed"], spectra["cl_bb_lensed"])
    noise = [(ch.noise_uk_arcmin / scale["pixel_arcmin"]) ** 2 if params["foregrounds"]["noise"] else 0.0
             for ch in channels]
    contamination = []
    for ch, beam, n in zip(channels, beams, noise):
        fg = component_cl(foreground_cls[f"cl_EE_{ch.freq_ghz:g}GHz"], foreground_cls[f"cl_BB_{ch.freq_ghz:g}GHz"])
        # noise + foregrounds through the channel's beam + the CMB seen through (b_ch - b_target)
        contamination.append(n + theory_patch_variance(fg, beam * window, side_deg)
                             + theory_patch_variance(cmb, (beam - beams[target]) * window, side_deg))
    s = [float(dust_sed_rj(ch.freq_ghz, dust["ref_GHz"], dust["beta"], dust["T_dust_K"]) * rj_to_cmb(ch.freq_ghz))
         for ch in channels]
    return CennExpectation(
        npix=scale["npix"], n_channels=len(channels), target=target,
        n_samples={split: scale[f"n_{split.lower()}"] for split in SPLITS},
        label_var=theory_patch_variance(cmb, beams[target] * window, side_deg),
        contamination_var=contamination,
        sed_ratios={"cov02_over_cov12": s[0] / s[1], "cov01_over_cov02": s[1] / s[2]},
        noise_var_target=noise[target],
    )


def main() -> None:
    from cmbml.cenn_validation import build_tables
    from cmbml.gate import run_gate
    from cmbml.io import write_json
    from cmbml.spectra import read_spectra_csv

    params = stage_params("cenn")
    expect = expectation_from_params(params, read_spectra_csv(SPECTRA_CSV), read_foreground_spectra())
    paths = {(split, comp): dataset_path(split, comp) for split in SPLITS for comp in params["cenn"]["components"]}
    result = run_gate(REPORT_DIR, "cenn_datasets", build_tables(paths, expect))
    write_json(RESULT, {"variant": params["cenn"]["variant"], **result.as_dict()})
    print(f"cenn_validate: {result.n_expectations} expectations, {len(result.failures)} failed; "
          f"Data Docs: {result.data_docs_index}")
    if not result.success:
        print("CENN datasets FAILED validation:\n  - " + "\n  - ".join(result.failures), file=sys.stderr)
        sys.exit(1)
