"""Expectation suites for the CENN patch datasets and for network outputs.

Each patch is reduced to statistics: the label rms, per channel the variance of the
contamination ``c_k = M[..., k] - M0`` (foregrounds, noise and the small beam difference), and the
cross-covariances of contaminations between channels. Noise is independent between channels,
so the cross-covariances measure the common foreground; their ratios follow the dust spectral
energy distribution, which fixes the order of the channels: a swapped pair breaks them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmbml.cenn.schema import SPLIT_FILES
from cmbml.cenn.simulate import CONVENTIONS
from cmbml.common.gate import GateTable, lower_bound, upper_bound
from cmbml.common.integrity import NEAR_DUPLICATE_SIMILARITY, near_duplicate_rows, pair_digest
from cmbml.common.io import array_digest, h5_attr_value, sample_rows


@dataclass(frozen=True)
class CennExpectation:
    """What the datasets of one parameter set should look like."""

    npix: int
    n_channels: int
    target: int
    n_samples: Mapping[str, int]  # per split, by file name (Train, Test, Validation)
    label_var: float  # expected variance of a label patch (uK^2)
    contamination_var: Sequence[float]  # per channel: noise + foreground variance (uK^2)
    sed_ratios: Mapping[str, float]  # expected cov(c_i, c_k) / cov(c_j, c_k) from the dust SED
    noise_var_target: float  # white-noise variance per pixel at the target channel
    attrs: Mapping[str, str] = None  # file attributes required verbatim (conventions, channels, parameter digest)
    channels_ghz: Sequence[float] = ()  # channel frequencies, in the inputs' channel order (names the columns)

    @property
    def label_target_correlation(self) -> float:
        """Expected correlation of a label with its own input's target channel: label variance over label
        plus contamination (noise and foregrounds) variance, square-rooted."""
        return float(np.sqrt(self.label_var / (self.label_var + self.contamination_var[self.target])))


def contamination_column(k: int, channels_ghz: Sequence[float]) -> str:
    """Name of channel ``k``'s contamination variance column, by its frequency: ``contamination_var_100GHz``
    (``contamination_var_<k>`` for a channel past the end of ``channels_ghz``, as in a malformed file)."""
    return f"contamination_var_{channels_ghz[k]:g}GHz" if k < len(channels_ghz) else f"contamination_var_{k}"


def theory_patch_variance(cl: np.ndarray, transfer: np.ndarray, side_deg: float) -> float:
    """Variance of a field with spectrum ``cl`` seen through ``transfer`` (beam x interpolation),
    about a patch's mean: the sum over multipoles above the patch scale ``180 / side_deg``."""
    lmax = len(transfer) - 1
    ell = np.arange(lmax + 1)
    sel = ell >= 180.0 / side_deg
    return float(np.sum((2 * ell[sel] + 1) / (4 * np.pi) * (cl[: lmax + 1] * transfer**2)[sel]))


def channel_sed_cmb(fg: Mapping, freqs_ghz: Sequence[float]) -> list[float]:
    """The SED in uK_CMB (any normalisation) that the channels' common foreground follows, per channel: the
    ratios of contamination cross-covariances between channels are its ratios, which fixes the channel order.

    For the drawn skies (``gaussian``, ``nongaussian``) it is the dust block's modified black body (``beta``,
    ``T_dust_K``, ``ref_GHz``): dust dominates the polarized foregrounds at 100-217 GHz. For ``pysm`` those keys
    do not describe the sky: it is the mean SED of the presets' dust, PySM's d0 (beta 1.54, T 20 K at 353 GHz,
    read from PySM's presets; d1's beta and T maps scatter about them), or its s0 power law for a sky without
    dust (:func:`cmbml.cenn.pysm_sky.mean_sed_rj`). A prediction from physics, not from the simulated maps, so
    that a channel mixed up anywhere upstream still breaks it.
    """
    from cmbml.cenn.foregrounds import dust_sed_rj, rj_to_cmb

    freqs = np.asarray(freqs_ghz, dtype=float)
    if fg.get("model") == "pysm":
        from cmbml.cenn.pysm_sky import mean_sed_rj

        sed_rj = mean_sed_rj(fg["pysm"]["presets"], freqs)
    else:
        dust = fg["dust"]
        sed_rj = dust_sed_rj(freqs, dust["ref_GHz"], dust["beta"], dust["T_dust_K"])
    return [float(v) for v in np.asarray(sed_rj) * rj_to_cmb(freqs)]


def cenn_expectation(
    setup, camb_cls: Mapping[str, np.ndarray], foreground_cls: Mapping[str, np.ndarray]
) -> CennExpectation:
    """Expected shapes and statistics of a :class:`~cmbml.cenn.setup.CennSetup`'s patches, from the CMB
    theory and the foreground spectra of each channel (not from the files being checked)."""
    channels, target = setup.instrument.channels, setup.instrument.target
    side_deg, lmax = setup.geometry.patch.side_deg, setup.geometry.sky_lmax
    window = setup.interpolation_window

    def component_cl(ee, bb):
        return {"E": ee, "B": bb, "Q": 0.5 * (ee + bb)}[setup.components[0]][: lmax + 1]

    cmb = component_cl(camb_cls["cl_ee_lensed"], camb_cls["cl_bb_lensed"])
    noise = [s**2 for s in setup.noise_sigma_pix]
    contamination = []
    for ch, beam, n in zip(channels, setup.beams, noise):
        fg = component_cl(foreground_cls[f"cl_EE_{ch.freq_ghz:g}GHz"], foreground_cls[f"cl_BB_{ch.freq_ghz:g}GHz"])
        # noise + foregrounds through the channel's beam + the CMB seen through (b_ch - b_target)
        contamination.append(
            n
            + theory_patch_variance(fg, beam * window, side_deg)
            + theory_patch_variance(cmb, (beam - setup.beams[target]) * window, side_deg)
        )
    s = channel_sed_cmb(setup.foregrounds, [ch.freq_ghz for ch in channels])
    return CennExpectation(
        npix=setup.geometry.npix,
        n_channels=len(channels),
        target=target,
        n_samples={SPLIT_FILES[r]: n for r, n in setup.n_samples.items()},
        label_var=theory_patch_variance(cmb, setup.label_transfer, side_deg),
        contamination_var=contamination,
        sed_ratios={"cov02_over_cov12": s[0] / s[1], "cov01_over_cov02": s[1] / s[2]},
        noise_var_target=noise[target],
        attrs={
            **CONVENTIONS,
            "channels_GHz": str(h5_attr_value(setup.instrument.freqs_ghz)),
            "target_GHz": str(h5_attr_value(channels[target].freq_ghz)),
            "params_digest": setup.dataset_digest,
        },
        channels_ghz=[float(ch.freq_ghz) for ch in channels],
    )


def sample_table(
    path: str | Path, split: str, component: str, target: int, chunk: int = 64, channels_ghz: Sequence[float] = ()
):
    """One row per patch: label variance, per-channel contamination (co)variances, the target
    channel minus label, non-finite count and digest. An unreadable file gives an empty table.

    Contamination variances are named by the channels' frequencies ``channels_ghz``
    (:func:`contamination_column`).
    """
    import pandas as pd

    def row(index, s):
        m, m0 = s["M"], s["M0"]
        c = m - m0  # (n, n, channels): foregrounds, noise, beam difference
        flat = (c - c.mean(axis=(0, 1))).reshape(-1, c.shape[-1])
        cov = flat.T @ flat / flat.shape[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.corrcoef(m[..., target].ravel(), m0[..., 0].ravel())[0, 1]
        return {
            "split": split,
            "component": component,
            "index": index,
            "pair_digest_ok": bytes(s["pair_digest"]) == pair_digest(index, m, m0),
            "label_target_corr": float(corr) if np.isfinite(corr) else 0.0,
            "label_var": float(np.var(m0)),
            **{contamination_column(k, channels_ghz): float(cov[k, k]) for k in range(cov.shape[0])},
            "cov_01": float(cov[0, 1]),
            "cov_02": float(cov[0, 2]),
            "cov_12": float(cov[1, 2]),
            "target_minus_label_var": float(np.var(m[..., target] - m0[..., 0])),
            "nonfinite_count": int((~np.isfinite(m)).sum() + (~np.isfinite(m0)).sum()),
            "digest": array_digest(np.concatenate([m, m0], axis=-1).astype(np.float32)),
        }

    return pd.DataFrame(sample_rows(path, ["M", "M0", "pair_digest"], row, chunk))


def file_facts(path: str | Path, split: str, component: str, expect: CennExpectation) -> dict:
    import h5py

    n = int(expect.n_samples[split])
    facts = {
        "file": f"{split}_{component}",
        "readable": False,
        "complete": False,
        "M_shape": "",
        "M_shape_expected": str((n, expect.npix, expect.npix, expect.n_channels)),
        "M0_shape": "",
        "M0_shape_expected": str((n, expect.npix, expect.npix, 1)),
        "dtypes": "",
        "attr_component": "",
        **{f"attr_{name}": "" for name in expect.attrs or {}},
    }
    try:
        with h5py.File(path, "r") as h5:
            facts["readable"] = True
            for name in ["component", *(expect.attrs or {})]:
                facts[f"attr_{name}"] = str(h5.attrs.get(name, ""))
            facts["complete"] = bool(h5.attrs.get("complete", False))
            facts["M_shape"] = str(tuple(int(x) for x in h5["M"].shape))
            facts["M0_shape"] = str(tuple(int(x) for x in h5["M0"].shape))
            facts["dtypes"] = ",".join(sorted({str(h5["M"].dtype), str(h5["M0"].dtype)}))
    except (OSError, KeyError, ValueError):
        pass
    return facts


def build_tables(paths: Mapping[tuple[str, str], str | Path], expect: CennExpectation) -> list[GateTable]:
    """Suites for every (split, component) file plus cross-split uniqueness."""
    import great_expectations as gx
    import pandas as pd

    E = gx.expectations
    facts = pd.DataFrame([{**file_facts(p, s, c, expect), "component": c} for (s, c), p in paths.items()])
    tables = [
        GateTable(
            "files",
            facts,
            [
                E.ExpectColumnValuesToBeInSet(column="readable", value_set=[True]),
                E.ExpectColumnValuesToBeInSet(column="complete", value_set=[True]),
                E.ExpectColumnValuesToBeInSet(column="dtypes", value_set=["float32"]),
                E.ExpectColumnPairValuesToBeEqual(column_A="M_shape", column_B="M_shape_expected"),
                E.ExpectColumnPairValuesToBeEqual(column_A="M0_shape", column_B="M0_shape_expected"),
                # units, layout, channels and target as expected; every file made by the current parameters
                *[
                    E.ExpectColumnValuesToBeInSet(column=f"attr_{name}", value_set=[value])
                    for name, value in (expect.attrs or {}).items()
                ],
                E.ExpectColumnPairValuesToBeEqual(column_A="attr_component", column_B="component"),
            ],
        )
    ]
    samples = {
        key: sample_table(p, key[0], key[1], expect.target, channels_ghz=expect.channels_ghz)
        for key, p in paths.items()
    }
    for (split, comp), frame in samples.items():
        name = f"{split}_{comp}"
        # thresholds to 4 significant digits, each rounded outwards: readable, and no verdict changes
        checks = [
            E.ExpectTableRowCountToEqual(value=int(expect.n_samples[split])),
            # each input stack still sits beside the label and index it was written with; no blank label
            E.ExpectColumnValuesToBeInSet(column="pair_digest_ok", value_set=[True]),
            E.ExpectColumnValuesToBeBetween(
                column="label_var", min_value=lower_bound(1e-3 * expect.label_var), max_value=None
            ),
            # physics without digests: the label is the CMB of its own input's target channel
            E.ExpectColumnMeanToBeBetween(
                column="label_target_corr", min_value=lower_bound(0.5 * expect.label_target_correlation), max_value=1.0
            ),
            E.ExpectColumnValuesToBeBetween(column="nonfinite_count", min_value=0, max_value=0),
            # the label's power matches the CMB spectrum (beam applied), averaged over patches
            E.ExpectColumnMeanToBeBetween(
                column="label_var",
                min_value=lower_bound(0.5 * expect.label_var),
                max_value=upper_bound(1.6 * expect.label_var),
            ),
            # the input at the target channel is not the label: noise and foregrounds remain
            E.ExpectColumnValuesToBeBetween(
                column="target_minus_label_var", min_value=lower_bound(0.5 * expect.noise_var_target), max_value=None
            ),
        ]
        for k, var in enumerate(expect.contamination_var):
            checks.append(
                E.ExpectColumnMeanToBeBetween(
                    column=contamination_column(k, expect.channels_ghz),
                    min_value=lower_bound(0.5 * var),
                    max_value=upper_bound(2.0 * var),
                )
            )
        tables.append(GateTable(f"{name}_patches", frame, checks))
        if len(frame):
            # channel order from the dust SED: ratios of summed cross-covariances
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = {
                    "cov02_over_cov12": frame["cov_02"].sum() / frame["cov_12"].sum(),
                    "cov01_over_cov02": frame["cov_01"].sum() / frame["cov_02"].sum(),
                }
            sed = pd.DataFrame(
                [
                    {
                        "ratio": k,
                        "measured": float(v),
                        "expected": expect.sed_ratios[k],
                        "relative_error": abs(float(v) / expect.sed_ratios[k] - 1.0),
                    }
                    for k, v in ratios.items()
                ]
            )
            tables.append(
                GateTable(
                    f"{name}_channel_order",
                    sed,
                    [
                        E.ExpectColumnValuesToBeBetween(column="relative_error", min_value=0.0, max_value=0.3),
                    ],
                )
            )
    everything = (
        pd.concat([f for f in samples.values() if len(f)], ignore_index=True)
        if any(len(f) for f in samples.values())
        else pd.DataFrame({"digest": [], "component": []})
    )
    for comp in sorted({c for _, c in paths}):
        subset = everything[everything["component"] == comp] if len(everything) else everything
        tables.append(
            GateTable(
                f"all_{comp}_patches",
                subset,
                [
                    E.ExpectColumnValuesToBeUnique(column="digest"),  # no patch repeated within or across splits
                ],
            )
        )
        # near-copies (a patch repeated with tiny changes, or only its input or its label repeated)
        files = {f"{s}_{c}": p for (s, c), p in paths.items() if c == comp}
        near = pd.DataFrame(near_duplicate_rows(files, ["M", "M0"]))
        tables.append(
            GateTable(
                f"near_duplicates_{comp}",
                near,
                [
                    E.ExpectTableRowCountToEqual(value=int(sum(expect.n_samples[s] for s, c in paths if c == comp))),
                    *[
                        E.ExpectColumnValuesToBeBetween(
                            column=f"{name}_nearest_similarity", min_value=None, max_value=NEAR_DUPLICATE_SIMILARITY
                        )
                        for name in ("M", "M0")
                    ],
                ],
            )
        )
    return tables


def prediction_table(predictions: np.ndarray, expected_shape: tuple[int, ...]):
    """Network outputs reduced to one row per patch (shape and finiteness) for the evaluation gate."""
    import pandas as pd

    ok_shape = tuple(predictions.shape) == tuple(expected_shape)
    n = predictions.shape[0] if predictions.ndim else 0
    return pd.DataFrame(
        {
            "index": np.arange(n),
            "shape_ok": [ok_shape] * n,
            "nonfinite_count": [int((~np.isfinite(predictions[i])).sum()) for i in range(n)],
        }
    )


def prediction_expectations(n_expected: int) -> list:
    import great_expectations as gx

    E = gx.expectations
    return [
        E.ExpectTableRowCountToEqual(value=int(n_expected)),
        E.ExpectColumnValuesToBeInSet(column="shape_ok", value_set=[True]),
        E.ExpectColumnValuesToBeBetween(column="nonfinite_count", min_value=0, max_value=0),
    ]


def gate_outputs(
    outputs: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    docs_dir: str | Path,
    run_name: str | None = None,
):
    """The evaluation gate: each component's network outputs have their labels' shape and are finite.
    Returns the :class:`~cmbml.common.gate.GateResult` (offline HTML Data Docs in ``docs_dir``, best a
    :func:`~cmbml.common.gate.data_docs_dir` since they carry run times)."""
    from cmbml.common.gate import run_gate

    tables = [
        GateTable(
            f"outputs_{c}", prediction_table(outputs[c], labels[c].shape), prediction_expectations(labels[c].shape[0])
        )
        for c in outputs
    ]
    return run_gate(docs_dir, "cenn_outputs", tables, run_name=run_name)
