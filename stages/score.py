"""`cmbml score`: any method's estimates of an evaluation split, scored by exactly the code that scores the networks
and the classical baselines (`stages.lensing_evaluate.score_kappa`, `stages.cenn_evaluate.score_sky`), written to
a folder and logged as an MLflow evaluation run named after the method, which `cmbml report` shows as a row."""

from __future__ import annotations

import re
from pathlib import Path

from cmbml.common.roles import EVALUATION

SKIES = ("training", "unseen")
METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


def check_method_name(method: str) -> str:
    """A method name usable as a folder and a table row: letters, digits and ``_.+-``, at most 64 characters."""
    if not METHOD_NAME.fullmatch(method):
        raise ValueError(
            f"--method {method!r}: allowed letters, digits and _ . + - (at most 64, not starting with a sign)"
        )
    return method


def _scored_against(files: list[Path], out: Path) -> dict[str, str]:
    """The split's files and their MD5 (DVC's hash), written to ``out/scored_against.json``."""
    from cmbml.common.io import write_json
    from stages.tracking import file_md5

    against = {str(f): file_md5(f) for f in files}
    write_json(out / "scored_against.json", against)
    return against


def score_lensing(estimates: str, method: str, out: Path, dataset: str | None = None) -> tuple[dict, str]:
    """Score kappa estimates of the lensing evaluation maps (``datasets/lensing/evaluation.h5``, in its order).
    Returns the summary metrics and the MLflow run id."""
    import h5py
    import numpy as np

    from cmbml.common.gate import require_passed
    from cmbml.common.io import write_json
    from cmbml.common.scoring import EvaluationSplit, read_estimates
    from cmbml.lensing.setup import load
    from stages.lensing_evaluate import score_kappa
    from stages.tracking import log_method_scores

    setup = load()
    require_passed(setup.paths.validation)
    paths, grid = setup.paths, setup.grid
    with h5py.File(paths.evaluation, "r") as h5:
        n, rms = h5["kappa"].shape[0], float(np.sqrt(np.mean(h5["kappa"][:].astype(np.float64) ** 2)))
    split = EvaluationSplit(
        str(paths.evaluation),
        n,
        grid.npix,
        grid.pixel_arcmin,
        ("kappa",),
        "dimensionless",
        rms,
        {"kappa_exaggeration_factor": setup.sim.kappa_exaggeration_factor},
    )
    kappa = read_estimates(estimates, split, dataset)[..., 0]
    out.mkdir(parents=True, exist_ok=True)
    against = _scored_against([paths.evaluation], out)
    metrics, per_bin, details = score_kappa(setup, kappa, out, f"lensing {setup.version}, {method}", method)
    write_json(out / "metrics.json", metrics)
    write_json(out / "scores.json", details)
    write_json(out / "rho_L.json", {"rho_L": per_bin, "method": method})
    run_id = log_method_scores(
        setup.tracking,
        setup.version,
        setup.scale,
        method,
        EVALUATION,
        metrics,
        [*sorted(out.glob("*.png")), out / "metrics.json"],
        {"rho_L.json": per_bin},
        [paths.evaluation],
        paths.evaluation,
        details=details,
        extra_tags={"cmbml.split_md5": ";".join(f"{k}:{v}" for k, v in against.items())},
    )
    return metrics, run_id


def score_cenn(estimates: str, method: str, sky_name: str, out: Path, dataset: str | None = None) -> tuple[dict, str]:
    """Score CMB estimates of the CENN evaluation patches of one foreground sky (``training`` or ``unseen``; the
    Validation files of each component, in their order); the classical answers fitted on the training sky's Train
    patches, as for the network. Scores on the unseen sky carry the prefix ``unseen_``, as the stage's.
    Returns the summary metrics and the MLflow run id."""
    import h5py
    import numpy as np

    from cmbml.cenn.evaluation import UNSEEN_PREFIX, summary_metrics
    from cmbml.cenn.setup import load
    from cmbml.common.gate import require_passed
    from cmbml.common.io import write_json
    from cmbml.common.scoring import EvaluationSplit, read_estimates
    from stages.cenn_evaluate import Yardsticks, score_sky
    from stages.tracking import log_method_scores

    if sky_name not in SKIES:
        raise ValueError(f"--sky {sky_name!r}: allowed {', '.join(SKIES)}")
    setup = load()
    sky = setup if sky_name == "training" else load(foreground_sky="unseen")
    require_passed(sky.paths.validation)
    components, patch = setup.components, setup.geometry.patch
    files = [sky.paths.patch_file(EVALUATION, c) for c in components]
    squares, n = 0.0, None
    for path in files:
        with h5py.File(path, "r") as h5:
            n, squares = h5["M0"].shape[0], squares + float(np.mean(h5["M0"][:].astype(np.float64) ** 2))
    split = EvaluationSplit(
        ", ".join(map(str, files)),
        n,
        patch.npix,
        patch.pixel_arcmin,
        tuple(components),
        "uK_CMB",
        float(np.sqrt(squares / len(files))),
    )
    stack = read_estimates(estimates, split, dataset)
    out.mkdir(parents=True, exist_ok=True)
    against = _scored_against(files, out)
    prefix = "" if sky_name == "training" else UNSEEN_PREFIX
    yardsticks = Yardsticks.fit(setup)
    scores, rows = score_sky(
        sky, {c: stack[..., k : k + 1] for k, c in enumerate(components)}, yardsticks, prefix, label=method, plots=out
    )
    if not prefix:  # the Wiener filter's predicted MSE, as the stage reports it beside the training sky's scores
        scores.update(yardsticks.baselines.fit_metrics())
    scores = {prefix + k: v for k, v in scores.items()}
    summary = summary_metrics(scores)
    write_json(out / "metrics.json", summary)
    write_json(out / "scores.json", scores)
    write_json(out / f"{prefix}spectra.json", {"spectra": rows, "method": method})
    run_id = log_method_scores(
        setup.tracking,
        setup.variant,
        setup.scale,
        method,
        EVALUATION,
        summary,
        [*sorted(out.glob("*.png")), out / "metrics.json"],
        {f"{prefix}spectra.json": rows},
        files,
        files[0],
        details=scores,
        extra_tags={"cmbml.split_md5": ";".join(f"{k}:{v}" for k, v in against.items()), "cmbml.sky": sky_name},
        extra_params={"scored_sky": sky_name},
    )  # a row per sky in the tables
    return summary, run_id
