"""Peak memory and run time of every DVC stage at the paper scale on this machine, extrapolated to the
paper's counts (not a test: run on demand).

The paper scale (``conf/scale/paper.yaml``) simulates CENN skies at nside 2048 and cuts 10,000 + 1000 + 1000
patches of 256 x 256 pixels of 1.5 arcmin, trained for 500 epochs; the lensing versions use their
``lensing_paper`` counts. This script runs every stage at that GEOMETRY with the COUNTS reduced, measures
each stage, and extrapolates to the full counts, so that one can tell before a multi-day run whether each
stage fits in this machine's memory and in a reasonable time.

What it runs
------------
The repository this file sits in is cloned (its committed HEAD) into a temporary directory; ``data/``, which
DVC tracks, is restored there from the repository's own DVC remote. Each run writes params.yaml with
``cmbml params compose scale=paper <overrides>`` and executes the ``cmd`` of each stage in dvc.yaml in DAG
order, as a subprocess, in the clone (runs in the order spectra, main, lensing, probes: the heaviest first):

- ``spectra``: CAMB to the configured lmax (the same at every scale).
- ``lensing-<v>-<k>``: lensing_simulate, _validate, _train, _evaluate at version ``v``'s own grid, with the
  version's paper counts times ``--lensing-fraction`` (k = 1) and twice that (k = 2).
- ``probe-<variant>-<k>``: the CENN stages with the paper's patches but skies at ``--probe-nside``, where a
  spherical-harmonic transform is cheap. k = 1: cmb_maps, foregrounds and cenn_simulate with the main run's
  counts and realisations; k = 2: ``--probe-realisations`` CMB skies and twice the patches, every CENN stage.
  The pair gives cenn_simulate's growth per realisation, scaled to nside 2048 by the number of sky pixels (the
  full-sky arrays are what grows). Further variants (``--probe-variants``, e.g. QU) run cenn_simulate only.
- ``main``: cmb_maps, foregrounds, cenn_simulate, _validate, _train, _evaluate at paper geometry (nside 2048)
  with the reduced counts. The stages after cenn_simulate do not depend on nside, so the main run and probe
  level 2 are two patch counts of them: the slope gives the time and memory per patch.

Every count keeps the paper's proportions (CENN Train : Test : Validation = 10 : 1 : 1) and stays at or above
256 per training split, the stages' chunk size, so that per-chunk buffers have reached their full size and the
slopes measure what grows with the count. Time at full counts assumes every epoch runs (early stopping can only
shorten it).

How it measures
---------------
Memory: the stage's process tree is polled every ``--poll`` seconds and the proportional set sizes (PSS,
``/proc/<pid>/smaps_rollup``) of its processes are summed. PSS charges a page shared by k processes 1/k to
each, so the fork-pool workers of cenn_simulate, which share the parent's full-sky maps copy-on-write, are not
counted once per process, as a sum of RSS would (both are recorded). A sampled peak can miss a spike shorter
than the interval; the kernel's high-water mark of the largest single process (``ru_maxrss`` from ``wait4`` on
the stage: the maximum over the stage process and every worker it reaped) bounds the peak from below, and the
peak reported is the larger of the two.

Time: wall clock of each stage. The stages' progress bars (rich, shown as on a terminal through
``FORCE_COLOR``) and Keras' per-epoch lines are timestamped as they arrive, which splits a stage into a fixed
part and a part per patch, map, realisation or epoch.

Run (from the repository root, with the project's virtualenv on PATH; about 3.5 hours on 2 cores, most of it
the nside-2048 spherical-harmonic transforms of cmb_maps, foregrounds and cenn_simulate, which no count reduces)::

    python bench/paper_scale.py

``python bench/paper_scale.py --help`` lists the reduced counts; ``--report-only`` rewrites the report from
``bench/results/paper_scale.json`` without running anything. Outputs: ``bench/paper_scale.md`` and
``bench/results/paper_scale.json`` (machine, command, every measurement, the extrapolation).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3
MIB = 1024**2
CENN_STAGES = ("cmb_maps", "foregrounds", "cenn_simulate", "cenn_validate", "cenn_train", "cenn_evaluate")
LENSING_STAGES = ("lensing_simulate", "lensing_validate", "lensing_train", "lensing_evaluate")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A rich progress bar as the stages draw it: description, bar, "done/total", time remaining.
PROGRESS = re.compile(r"^(?P<desc>[^━╸╺]*?)\s*[━╸╺]+\s+(?P<done>\d+)/(?P<total>\d+)\s+(?:-:--:--|\d+:\d\d:\d\d)")
# Keras' end-of-epoch line at verbose=2: "10/10 - 35s - 3s/step - loss: ..."
EPOCH = re.compile(r"^\s*(?P<steps>\d+)/(?P=steps) - (?P<sec>\d+)s - (?P<per>[\d.]+)(?P<unit>us|ms|s)/step")


# ---------------------------------------------------------------------------------------------- measurement


def _rollup_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB from /proc/<pid>/smaps_rollup; (0, 0) once it has gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return pss, rss


class TreeMonitor(threading.Thread):
    """Polls a process tree: peak summed PSS, peak summed RSS, most processes, and a PSS timeline.

    Parameters
    ----------
    pid : int
        Root of the tree (the stage's shell or the stage itself).
    interval : float
        Seconds between samples.
    """

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.t0 = time.monotonic()
        self.peak_pss = self.peak_rss_sum = 0
        self.max_processes = 0
        self.timeline: list[tuple[float, int, int]] = []  # (s, summed PSS MiB, processes)
        self._halt = threading.Event()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        pss = rss = 0
        for p in procs:
            a, b = _rollup_kib(p.pid)
            pss, rss = pss + a, rss + b
        self.peak_pss, self.peak_rss_sum = max(self.peak_pss, pss), max(self.peak_rss_sum, rss)
        self.max_processes = max(self.max_processes, len(procs))
        self.timeline.append((round(time.monotonic() - self.t0, 2), pss // 1024, len(procs)))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


class OutputReader(threading.Thread):
    """Copies a stage's output to a log file and timestamps progress-bar counts and Keras epoch lines."""

    def __init__(self, stream, log_path: Path, t0: float):
        super().__init__(daemon=True)
        self.stream, self.log_path, self.t0 = stream, log_path, t0
        self.progress: dict[str, dict] = {}  # description -> {"total", "times": [s at which done reached 0, 1, ...]}
        self.epochs: list[dict] = []
        self.tail: list[str] = []

    def _segment(self, text: str, now: float) -> None:
        text = ANSI.sub("", text).strip()
        if not text:
            return
        m = PROGRESS.match(text)
        if m:
            bar = self.progress.setdefault(m["desc"].strip(), {"total": int(m["total"]), "times": []})
            done = int(m["done"])
            while len(bar["times"]) <= done:  # first time each count was shown
                bar["times"].append(round(now, 2))
            return
        m = EPOCH.match(text)
        if m:
            per = float(m["per"]) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m["unit"]]
            # Keras prints the epoch in whole seconds and the step time to 3 digits (excluding the first
            # step and the early-stopping pass): the epoch's own figure unless it is too coarse.
            printed, steps = int(m["sec"]), int(m["steps"])
            self.epochs.append(
                {
                    "steps": steps,
                    "printed_s": printed,
                    "step_s": per,
                    "s": float(printed) if printed >= 10 else steps * per,
                }
            )
        self.tail = (self.tail + [text])[-40:]

    def run(self) -> None:
        pending = b""
        with open(self.log_path, "ab") as log:
            for chunk in iter(lambda: self.stream.read1(65536), b""):
                log.write(chunk)
                now = time.monotonic() - self.t0
                *parts, pending = re.split(rb"[\r\n]", pending + chunk)
                for part in parts:
                    self._segment(part.decode("utf-8", "replace"), now)
        self._segment(pending.decode("utf-8", "replace"), time.monotonic() - self.t0)


def run_stage(cmd: str, cwd: Path, env: dict, log_path: Path, poll: float) -> dict:
    """Run one stage command and measure it.

    Parameters
    ----------
    cmd : str
        The stage's ``cmd`` from dvc.yaml (run by bash in ``cwd``).
    cwd : Path
        The working copy.
    env : dict
        Environment of the stage.
    log_path : Path
        Where its output goes.
    poll : float
        Seconds between memory samples.

    Returns
    -------
    dict
        ``rc``, ``wall_s``, ``cpu_s``, ``load_avg`` (1-minute, at start and end), ``peak_mib`` (the larger of the sampled tree PSS and the largest process'
        high-water mark), ``peak_pss_mib``, ``peak_rss_sum_mib``, ``max_process_rss_mib``, ``max_processes``,
        ``progress`` (per bar: total and the times each count was first shown), ``epochs`` (Keras), the PSS
        timeline and the last output lines.
    """
    t0, load0 = time.monotonic(), os.getloadavg()[0]
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    monitor, reader = TreeMonitor(proc.pid, poll), OutputReader(proc.stdout, log_path, t0)
    monitor.start()
    reader.start()
    # wait4, not wait: its rusage holds the high-water mark of the stage and of every worker it reaped.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    monitor.stop()
    reader.join()
    proc.stdout.close()
    max_rss = usage.ru_maxrss / 1024  # KiB on Linux
    return {
        "cmd": cmd,
        "rc": proc.returncode,
        "wall_s": round(wall, 2),
        # CPU seconds of the stage and its reaped workers, and the machine's load: wall time on a shared CPU
        # is approximate, CPU time less so.
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "peak_mib": round(max(monitor.peak_pss / 1024, max_rss)),
        "peak_pss_mib": round(monitor.peak_pss / 1024),
        "peak_rss_sum_mib": round(monitor.peak_rss_sum / 1024),
        "max_process_rss_mib": round(max_rss),
        "max_processes": monitor.max_processes,
        "progress": reader.progress,
        "epochs": reader.epochs,
        "pss_timeline_mib": _decimate(monitor.timeline, 300),
        "output_tail": reader.tail[-15:] if proc.returncode else reader.tail[-3:],
    }


def _decimate(timeline: list, n: int) -> list:
    """At most ``n`` points, keeping the largest PSS of each stretch (so the peak survives)."""
    if len(timeline) <= n:
        return timeline
    step = len(timeline) / n
    return [
        max(timeline[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)], key=lambda p: p[1]) for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------- the runs


def machine() -> dict:
    """CPU model, cores and memory of this machine."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "python": sys.version.split()[0],
    }


class WorkingCopy:
    """A clone of the repository with ``data/`` restored, where params.yaml is composed and stages run."""

    def __init__(self, root: Path, poll: float, log_dir: Path):
        self.root, self.poll, self.log_dir = root, poll, log_dir
        bin_dir = str(Path(sys.executable).parent)  # the virtualenv's cmbml and dvc
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": "src:.",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "GX_ANALYTICS_ENABLED": "False",
            "FORCE_COLOR": "1",
            "COLUMNS": "200",
        }  # progress bars drawn as on a terminal, then timestamped
        self.commands: dict[str, str] = {}
        self.extra: list[str] = []  # overrides added to every composition (--override)

    @classmethod
    def create(cls, source: Path, dest: Path, poll: float) -> WorkingCopy:
        subprocess.run(["git", "clone", "--quiet", str(source), str(dest)], check=True)
        copy = cls(dest, poll, dest / "bench_logs")
        copy.log_dir.mkdir()
        if subprocess.run(["git", "ls-files", "data"], cwd=dest, capture_output=True, text=True).stdout.strip():
            pass  # data/ is tracked by git: the clone has it
        elif (dest / "data.dvc").is_file():
            # data/ is a DVC output; the repository carries its own remote (dvc-storage/), so this is offline.
            subprocess.run(["dvc", "pull", "--quiet", "data.dvc"], cwd=dest, env=copy.env, check=True)
        stages = yaml.safe_load((dest / "dvc.yaml").read_text())["stages"]
        missing = set(stages) - {"spectra", *CENN_STAGES, *LENSING_STAGES}
        if missing:
            raise SystemExit(f"dvc.yaml has stages this script does not know: {sorted(missing)}")
        copy.commands = {name: stage["cmd"] for name, stage in stages.items()}
        return copy

    def compose(self, overrides: list[str], output: str = "params.yaml") -> dict:
        done = subprocess.run(
            ["cmbml", "params", "compose", "--output", output, *overrides, *self.extra],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"cmbml params compose {' '.join(overrides)} failed:\n{done.stdout}{done.stderr}")
        return yaml.safe_load((self.root / output).read_text())

    def run(self, label: str, stage: str, poll: float, attempts: int = 3) -> dict:
        """Run and measure one stage; a stage stopped by a signal from outside (SIGTERM, SIGINT: another user's
        process clean-up on a shared machine) is run again, up to ``attempts`` times, and the stops are kept."""
        log = self.log_dir / f"{label}.{stage}.log"
        stops = []
        for _ in range(attempts):
            result = run_stage(self.commands[stage], self.root, self.env, log, poll)
            stopped = result["rc"] in (-signal.SIGTERM, -signal.SIGINT) or any(
                "Terminated: SIGTERM" in line or "Terminated: SIGINT" in line for line in result["output_tail"]
            )
            if result["rc"] == 0 or not stopped:
                break
            stops.append({"rc": result["rc"], "wall_s": result["wall_s"], "output_tail": result["output_tail"][-2:]})
            print(
                f"  {label:>16} {stage:<17} stopped by a signal after {result['wall_s']:.0f} s: running it again",
                flush=True,
            )
        result["stopped_by_signal"] = stops
        state = "ok" if result["rc"] == 0 else f"FAILED rc={result['rc']}"
        print(
            f"  {label:>16} {stage:<17} {state:<14} {result['wall_s']:8.1f} s  "
            f"peak {result['peak_mib'] / 1024:6.2f} GiB (PSS {result['peak_pss_mib'] / 1024:.2f}, "
            f"sum RSS {result['peak_rss_sum_mib'] / 1024:.2f}, max process {result['max_process_rss_mib'] / 1024:.2f})",
            flush=True,
        )
        return result


def full_counts(copy: WorkingCopy, versions: list[str], variant: str) -> dict:
    """The paper scale's own counts: CENN splits, epochs and realisations, and each lensing version's."""
    out = {}
    for v in versions:
        p = copy.compose(["scale=paper", f"lensing={v}"], output="params.paper_full.yaml")
        sc = p["scale"]["lensing"]
        out[f"lensing_{v}"] = {
            "n_training": sc["n_training"],
            "n_early_stopping": sc["n_early_stopping"],
            "n_evaluation": sc["n_evaluation"],
            "epochs": sc["epochs"],
            "npix": p["npix"],
            "pixel_arcmin": p["pixel_arcmin"],
            "batch_size": p["lensing_train"]["batch_size"],
        }
    p = copy.compose(["scale=paper", f"cenn={variant}"], output="params.paper_full.yaml")
    sc = p["scale"]["cenn"]
    out["cenn"] = {
        "n_training": sc["n_training"],
        "n_early_stopping": sc["n_early_stopping"],
        "n_evaluation": sc["n_evaluation"],
        "epochs": sc["epochs"],
        "nside": sc["nside"],
        "npix": sc["npix"],
        "pixel_arcmin": sc["pixel_arcmin"],
        "n_cmb_realisations": p["cmb_maps"]["n_realisations"],
        "batch_size": p["cenn_train"]["batch_size"],
    }
    out["spectra_lmax"] = p["spectra"]["lmax"]
    (copy.root / "params.paper_full.yaml").unlink()
    return out


def lensing_counts(full: dict, fraction: float, minimum: int) -> dict:
    """A version's paper counts times ``fraction``, each at least ``minimum`` (Train at least one batch)."""
    out = {k: max(minimum, round(full[k] * fraction)) for k in ("n_training", "n_early_stopping", "n_evaluation")}
    out["n_training"] = max(out["n_training"], full["batch_size"])
    return out


def cenn_overrides(counts: dict, realisations: int, epochs: int, variant: str, nside: int | None = None) -> list[str]:
    out = [
        "scale=paper",
        f"cenn={variant}",
        f"scale.cenn.n_training={counts['n_training']}",
        f"scale.cenn.n_early_stopping={counts['n_early_stopping']}",
        f"scale.cenn.n_evaluation={counts['n_evaluation']}",
        f"scale.cenn.epochs={epochs}",
        f"cmb_maps.n_realisations={realisations}",
    ]
    return out + ([f"scale.cenn.nside={nside}"] if nside else [])


class Recorder:
    """Keeps every run's measurements and writes them after each stage, so a long run loses nothing."""

    def __init__(self, path: Path, header: dict):
        self.path, self.data = path, {**header, "runs": {}, "complete": False}

    def run(
        self,
        copy: WorkingCopy,
        label: str,
        overrides: list[str],
        stages: list[str],
        poll: float,
        info: dict | None = None,
    ) -> bool:
        """Compose params.yaml for ``overrides`` and run ``stages`` in order, stopping at the first failure."""
        params = copy.compose(overrides)
        record = self.data["runs"].setdefault(label, {"overrides": overrides, **(info or {}), "stages": {}})
        record["params_scale"] = params["scale"]
        record["n_cmb_realisations"] = params["cmb_maps"]["n_realisations"]
        for stage in stages:
            record["stages"][stage] = result = copy.run(label, stage, poll)
            self.save()
            if result["rc"] != 0:
                return False
        return True

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")


def measure(args: argparse.Namespace, header: dict) -> dict:
    """Every run of the module docstring, in order: spectra, the main run, lensing, then the small-sky probes."""
    rec = Recorder(Path(args.json), header)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cmbml-paper-scale-"))
    copy = WorkingCopy.create(REPO, workdir / "repo", args.poll)
    copy.extra = list(args.override)
    print(f"working copy: {copy.root}", flush=True)
    variant, *others = args.probe_variants.split(",")
    full = full_counts(copy, args.lensing_versions.split(","), variant)
    rec.data["full_counts"] = full
    main_nside = args.main_nside or full["cenn"]["nside"]
    main_counts = {
        "n_training": args.cenn_train,
        "n_early_stopping": args.cenn_test,
        "n_evaluation": args.cenn_validation,
    }
    try:
        if not rec.run(copy, "spectra", ["scale=paper"], ["spectra"], args.poll):
            raise SystemExit("spectra failed: nothing else can run")
        # The heavy run first: a stage that does not fit shows within the first hour.
        rec.run(
            copy,
            "main",
            cenn_overrides(main_counts, args.realisations, args.epochs, variant, main_nside),
            list(CENN_STAGES),
            args.poll,
            {"kind": "main", "variant": variant, "counts": main_counts, "epochs": args.epochs, "nside": main_nside},
        )
        for v in args.lensing_versions.split(","):
            for k in (1, 2):
                counts = lensing_counts(full[f"lensing_{v}"], args.lensing_fraction * k, args.lensing_minimum * k)
                overrides = [
                    "scale=paper",
                    f"lensing={v}",
                    *[f"scale.lensing.{n}={c}" for n, c in counts.items()],
                    f"scale.lensing.epochs={args.epochs}",
                ]
                rec.run(
                    copy,
                    f"lensing-{v}-{k}",
                    overrides,
                    list(LENSING_STAGES),
                    args.poll,
                    {"kind": "lensing", "version": v, "level": k, "counts": counts, "epochs": args.epochs},
                )
        if args.probe_nside:
            # The paper's patches on small skies. Level 1: the main run's realisations and counts, the skies only;
            # level 2: more realisations and twice the patches, every CENN stage (with the main run, the second
            # count of the stages after cenn_simulate, which do not depend on nside). Other variants:
            # cenn_simulate only, with fewer patches (its memory does not depend on them).
            small = {n: max(1, c // args.probe_divisor) for n, c in main_counts.items()}
            small["n_training"] = max(small["n_training"], full["cenn"]["batch_size"])  # a batch at least
            for k, realisations, counts, stages in (
                (1, args.realisations, main_counts, ["cmb_maps", "foregrounds", "cenn_simulate"]),
                (
                    2,
                    args.probe_realisations,
                    {n: 2 * c for n, c in main_counts.items()},
                    ["cmb_maps", *CENN_STAGES[2:]],
                ),
            ):
                for v, v_counts, v_stages in (
                    (variant, counts, stages),
                    *((o, small, ["cenn_simulate"]) for o in others),
                ):
                    rec.run(
                        copy,
                        f"probe-{v}-{k}",
                        cenn_overrides(v_counts, realisations, args.probe_epochs, v, args.probe_nside),
                        v_stages,
                        args.poll,
                        {
                            "kind": "probe",
                            "variant": v,
                            "level": k,
                            "counts": v_counts,
                            "epochs": args.probe_epochs,
                            "nside": args.probe_nside,
                        },
                    )
    finally:
        rec.save()
        if args.keep_workdir or args.workdir:
            print(f"kept {copy.root}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    rec.data["complete"] = True
    rec.data["elapsed_s"] = round(time.time() - header["started_unix"])
    return rec.data


# ---------------------------------------------------------------------------------------------- extrapolation


def _stage(data: dict, run: str, stage: str) -> dict | None:
    s = data["runs"].get(run, {}).get("stages", {}).get(stage)
    return s if s and s["rc"] == 0 else None


def _bar(s: dict) -> dict | None:
    """The stage's (first) progress bar that reached its total."""
    for bar in s.get("progress", {}).values():
        if len(bar["times"]) == bar["total"] + 1:
            return bar
    return None


def _slope(p1: dict | None, p2: dict | None, x1: float, x2: float, key: str) -> float | None:
    return None if p1 is None or p2 is None or x2 == x1 else (p2[key] - p1[key]) / (x2 - x1)


def _memory(peak: float, slope: float | None, dx: float, what: str, tolerance_mib: float) -> tuple[float, str]:
    """Peak at the full count from the reference peak and the measured growth per unit; growth within
    ``tolerance_mib`` over the measured pair counts as flat (streamed)."""
    if slope is None:
        return peak, "flat (assumed: no second point)"
    if abs(slope) * dx <= tolerance_mib or slope <= 0:
        return peak, f"flat: {slope * 1024:+.2f} KiB per {what} measured (streamed)"
    return peak + slope * dx, f"linear: {slope:.3g} MiB per {what}"


def extrapolate(data: dict, limit_gib: float, reasonable_h: float) -> list[dict]:
    """One row per stage (and per further CENN variant's cenn_simulate): the measured figures and the figures at
    the paper's counts, with the model each one follows (see the module docstring for the runs)."""
    full, runs, rows = data["full_counts"], data["runs"], []

    def add(
        stage, run, geometry, count_run, unit, per_unit, full_count, full_time, full_peak_mib, t_model, m_model, s=None
    ):
        s = s or (runs.get(run, {}).get("stages", {}).get(stage))
        rows.append(
            {
                "stage": stage,
                "run": run,
                "geometry": geometry,
                "count_run": count_run,
                "wall_s": s["wall_s"] if s else None,
                "unit": unit,
                "time_per_unit_s": per_unit,
                "peak_gib": s["peak_mib"] / 1024 if s else None,
                "full_count": full_count,
                "full_time_s": full_time,
                "full_peak_gib": None if full_peak_mib is None else full_peak_mib / 1024,
                "time_model": t_model,
                "memory_model": m_model,
                "fits_memory": None if full_peak_mib is None else full_peak_mib / 1024 <= limit_gib,
                "fits_time": None if full_time is None else full_time <= reasonable_h * 3600,
            }
        )

    def failed(stage, run, geometry):
        s = runs.get(run, {}).get("stages", {}).get(stage)
        if s:  # ran and failed (a stage never reached gets no row)
            add(
                stage,
                run,
                geometry,
                "",
                "",
                None,
                "",
                None,
                None,
                f"FAILED (rc {s['rc']}): " + " / ".join(s["output_tail"][-2:]),
                "–",
                s=s,
            )

    s = _stage(data, "spectra", "spectra")
    if s:
        add(
            "spectra",
            "spectra",
            f"CAMB lmax {full['spectra_lmax']}",
            "1 table",
            "table",
            s["wall_s"],
            "1 table",
            s["wall_s"],
            s["peak_mib"],
            "fixed (no count)",
            "fixed (no count)",
        )
    else:
        failed("spectra", "spectra", "CAMB")

    # ---- lensing: two counts at each version's own grid
    for key, fl in full.items():
        if not key.startswith("lensing_"):
            continue
        v = key.split("_", 1)[1]
        l1, l2 = f"lensing-{v}-1", f"lensing-{v}-2"
        if l2 not in runs:
            continue
        c1, c2 = runs[l1]["counts"], runs[l2]["counts"]
        geometry = f"{fl['npix']}² × {fl['pixel_arcmin']:g}′ ({v})"
        n_full = fl["n_training"] + fl["n_early_stopping"] + fl["n_evaluation"]
        for stage, x1, x2, xf, unit in (
            ("lensing_simulate", sum(c1.values()), sum(c2.values()), n_full, "map"),
            ("lensing_validate", sum(c1.values()), sum(c2.values()), n_full, "map"),
            ("lensing_evaluate", c1["n_evaluation"], c2["n_evaluation"], fl["n_evaluation"], "test map"),
        ):
            s1, s2 = _stage(data, l1, stage), _stage(data, l2, stage)
            if not s2:
                failed(stage, l2, geometry)
                continue
            bar = _bar(s2) if stage == "lensing_simulate" else None
            if bar:
                per = (bar["times"][-1] - bar["times"][0]) / bar["total"]
                t_model = "fixed + per map (the progress bar)"
            else:
                per = _slope(s1, s2, x1, x2, "wall_s")
                t_model = f"fixed + per {unit} (slope between the two counts)"
                if per is not None and per < 0:
                    per, t_model = 0.0, "fixed: the two counts took the same time within the noise of a shared CPU"
            t_full = None if per is None else s2["wall_s"] + per * (xf - x2)
            m_full, m_model = _memory(s2["peak_mib"], _slope(s1, s2, x1, x2, "peak_mib"), xf - x2, unit, 64.0)
            add(stage, l2, geometry, f"{x2} {unit}s", unit, per, f"{xf} {unit}s", t_full, m_full, t_model, m_model)
        s1, s2 = _stage(data, l1, "lensing_train"), _stage(data, l2, "lensing_train")
        if s1 and s2 and s1["epochs"] and s2["epochs"]:
            n1, n2 = c1["n_training"], c2["n_training"]
            last1, last2 = s1["epochs"][-1]["s"], s2["epochs"][-1]["s"]  # last epochs: no graph tracing
            per = max(0.0, (last2 - last1) / (n2 - n1))
            epoch_fixed = max(0.0, last2 - per * n2)  # a negative intercept is timing noise
            fixed = s2["wall_s"] - sum(e["s"] for e in s2["epochs"])
            t_full = fixed + fl["epochs"] * (epoch_fixed + per * fl["n_training"])
            m_full, m_model = _memory(
                s2["peak_mib"], _slope(s1, s2, n1, n2, "peak_mib"), fl["n_training"] - n2, "training map", 64.0
            )
            add(
                "lensing_train",
                l2,
                geometry,
                f"{n2} maps × {len(s2['epochs'])} epochs",
                "map-epoch",
                per,
                f"{fl['n_training']} maps × {fl['epochs']} epochs",
                t_full,
                m_full,
                f"fixed {fixed:.0f} s + epochs × ({epoch_fixed:.1f} s + maps × {per * 1e3:.0f} ms): per epoch from the "
                f"last epochs at the two counts ({last1:.1f} s, {last2:.1f} s), the early-stopping pass in proportion; "
                "every epoch run (early stopping can only shorten it)",
                m_model,
            )
        else:
            failed("lensing_train", l2, geometry)

    # ---- CENN: the main run at nside 2048; per realisation from the probes, per patch from main and probe level 2
    main = runs.get("main")
    if not main:
        return rows
    fc, mc, variant = full["cenn"], main["counts"], main["variant"]
    p1, p2 = f"probe-{variant}-1", f"probe-{variant}-2"
    probe_nside = runs.get(p1, {}).get("nside", main["nside"])
    pix_ratio = (main["nside"] / probe_nside) ** 2  # full-sky arrays grow with the number of sky pixels
    r_main, r_full = main["n_cmb_realisations"], fc["n_cmb_realisations"]
    r1, r2 = (runs[p]["n_cmb_realisations"] if p in runs else None for p in (p1, p2))
    n_main, n_full = sum(mc.values()), fc["n_training"] + fc["n_early_stopping"] + fc["n_evaluation"]
    sky = f"nside {main['nside']}"
    geometry = f"{sky}, {fc['npix']}² × {fc['pixel_arcmin']:g}′"

    s = _stage(data, "main", "cmb_maps")
    if s:
        bar, q = _bar(s), _stage(data, p2, "cmb_maps")
        step0 = bar["times"][1] - bar["times"][0] if bar else s["wall_s"]
        qbar = _bar(q) if q else None
        if qbar and len(qbar["times"]) > 2:
            steps = [b - a for a, b in zip(qbar["times"], qbar["times"][1:])]
            ratio = sum(steps[1:]) / len(steps[1:]) / steps[0]
            t_model = (
                f"first realisation + (R - {r_main}) × a later one = {ratio:.2f} × the first (no anafast check, "
                f"no figure), the ratio measured at nside {probe_nside}"
            )
        else:
            ratio, t_model = 1.0, "R × the first realisation (an upper bound: the first adds an anafast check)"
        per = step0 * ratio
        slope = _slope(_stage(data, p1, "cmb_maps"), q, r1 or 0, r2 or 0, "peak_mib")
        m_full, m_model = _memory(
            s["peak_mib"], None if slope is None else slope * pix_ratio, r_full - r_main, "realisation", 128.0
        )
        add(
            "cmb_maps",
            "main",
            sky,
            f"{r_main} realisation(s)",
            "realisation",
            per,
            f"{r_full} realisations",
            s["wall_s"] + per * (r_full - r_main),
            m_full,
            t_model,
            m_model + f" (nside {probe_nside}, {r1} → {r2} realisations, × {pix_ratio:.0f} sky pixels)",
        )
    else:
        failed("cmb_maps", "main", sky)
    s = _stage(data, "main", "foregrounds")
    if s:
        add(
            "foregrounds",
            "main",
            sky,
            "3 channels",
            "run",
            s["wall_s"],
            "3 channels",
            s["wall_s"],
            s["peak_mib"],
            "fixed (no count)",
            "fixed (no count)",
        )
    else:
        failed("foregrounds", "main", sky)

    s = _stage(data, "main", "cenn_simulate")
    if s:
        bar = _bar(s)
        build = bar["times"][0] if bar else s["wall_s"]
        per = (bar["times"][-1] - bar["times"][0]) / bar["total"] if bar else 0.0
        b1, b2 = _stage(data, p1, "cenn_simulate"), _stage(data, p2, "cenn_simulate")
        growth, t_model = 1.0, "sky building (before the first patch) + per patch (the progress bar, 2 workers)"
        if b1 and b2 and _bar(b1) and _bar(b2) and r2 != r1:
            a1, a2 = _bar(b1)["times"][0], _bar(b2)["times"][0]
            growth = (a1 + (a2 - a1) / (r2 - r1) * (r_full - r_main)) / a1
            t_model += (
                f"; building × {growth:.2f} for {r_full} realisations, as at nside {probe_nside} "
                f"({a1:.0f} s → {a2:.0f} s for {r1} → {r2} realisations)"
            )
        t_full = build * growth + per * n_full + (s["wall_s"] - build - per * n_main)
        if b1 and b2 and r2 != r1:
            slope = max(0.0, (b2["peak_mib"] - b1["peak_mib"]) / (r2 - r1))
            m_full = s["peak_mib"] + slope * pix_ratio * (r_full - r_main)
            m_model = (
                f"+{slope * pix_ratio / 1024:.2f} GiB per further realisation: the growth at nside {probe_nside} "
                f"({b1['peak_mib'] / 1024:.2f} → {b2['peak_mib'] / 1024:.2f} GiB for {r1} → {r2}) × "
                f"{pix_ratio:.0f} sky pixels; flat in patches (written in chunks of 32)"
            )
        else:
            m_full, m_model = None, "no probe pair"
        add(
            "cenn_simulate",
            "main",
            geometry,
            f"{n_main} patches, {r_main} realisation(s)",
            "patch",
            per,
            f"{n_full} patches, {r_full} realisations",
            t_full,
            m_full,
            t_model,
            m_model,
        )
        for v in data["probe_variants"][1:]:  # other variants: their difference to this one, scaled by sky pixels
            q1, q2 = _stage(data, f"probe-{v}-1", "cenn_simulate"), _stage(data, f"probe-{v}-2", "cenn_simulate")
            if not (q1 and q2 and b1):
                continue
            offset, q_slope = q1["peak_mib"] - b1["peak_mib"], (q2["peak_mib"] - q1["peak_mib"]) / (r2 - r1)
            m_v = s["peak_mib"] + pix_ratio * (offset + q_slope * (r_full - r_main))
            rows.append(
                {
                    "stage": f"cenn_simulate ({v}, estimated)",
                    "run": f"probe-{v}",
                    "geometry": geometry,
                    "count_run": f"nside {probe_nside}: {r1} and {r2} realisations",
                    "wall_s": None,
                    "unit": "patch",
                    "time_per_unit_s": None,
                    "peak_gib": None,
                    "full_count": f"{n_full} patches, {r_full} realisations",
                    "full_time_s": None,
                    "full_peak_gib": m_v / 1024,
                    "time_model": "not extrapolated",
                    "memory_model": (
                        f"{variant}'s {s['peak_mib'] / 1024:.2f} GiB at {sky} + {pix_ratio:.0f} sky pixels × "
                        f"({v} − {variant} at nside {probe_nside}, {r1} realisation: {offset / 1024:+.2f} GiB, "
                        f"+ {q_slope / 1024:.2f} GiB per further realisation)"
                    ),
                    "fits_memory": m_v / 1024 <= limit_gib,
                    "fits_time": None,
                }
            )
    else:
        failed("cenn_simulate", "main", geometry)

    # The stages after cenn_simulate do not depend on nside: main and probe level 2 are two counts of them.
    for stage, x1, xf, unit in (
        ("cenn_validate", n_main, n_full, "patch"),
        ("cenn_evaluate", mc["n_evaluation"], fc["n_evaluation"], "Validation patch"),
    ):
        s, q = _stage(data, "main", stage), _stage(data, p2, stage)
        if not s:
            failed(stage, "main", geometry)
            continue
        per = _slope(s, q, x1, 2 * x1, "wall_s")
        t_model = f"fixed + per {unit}: slope between the main run and probe level 2 (twice the patches)"
        if per is not None and per < 0:
            per, t_model = 0.0, "fixed: the two counts took the same time within the noise of a shared CPU"
        t_full = None if per is None else s["wall_s"] + per * (xf - x1)
        m_full, m_model = _memory(s["peak_mib"], _slope(s, q, x1, 2 * x1, "peak_mib"), xf - x1, unit, 128.0)
        extra = "; Train streamed for the baselines, in proportion" if stage == "cenn_evaluate" else ""
        add(
            stage,
            "main",
            geometry,
            f"{x1} {unit}es",
            unit,
            per,
            f"{xf} {unit}es",
            t_full,
            m_full,
            t_model + extra,
            m_model,
        )

    s, q = _stage(data, "main", "cenn_train"), _stage(data, p2, "cenn_train")
    if s and s["epochs"]:
        n1 = mc["n_training"]
        fixed = s["wall_s"] - sum(e["s"] for e in s["epochs"])
        if q and q["epochs"]:  # first epochs at the two counts (both with graph tracing, which cancels)
            per = (q["epochs"][0]["s"] - s["epochs"][0]["s"]) / n1
            epoch_fixed = max(0.0, s["epochs"][-1]["s"] - per * n1)  # a negative intercept is timing noise
            how = (
                f"per epoch {epoch_fixed:.1f} s + patches × {per:.3f} s (the first epochs at {n1} and {2 * n1} "
                f"patches: {s['epochs'][0]['s']:.0f} s, {q['epochs'][0]['s']:.0f} s; the last at {n1}: "
                f"{s['epochs'][-1]['s']:.0f} s)"
            )
        else:
            per, epoch_fixed, how = s["epochs"][-1]["s"] / n1, 0.0, "per epoch ∝ patches (upper bound)"
        t_full = fixed + fc["epochs"] * (epoch_fixed + per * fc["n_training"])
        m_full, m_model = _memory(
            s["peak_mib"], _slope(s, q, n1, 2 * n1, "peak_mib"), fc["n_training"] - n1, "training patch", 128.0
        )
        add(
            "cenn_train",
            "main",
            geometry,
            f"{n1} patches × {len(s['epochs'])} epochs",
            "patch-epoch",
            per,
            f"{fc['n_training']} patches × {fc['epochs']} epochs",
            t_full,
            m_full,
            f"fixed {fixed:.0f} s + epochs × {how}; Test (early stopping) in proportion; every epoch run "
            "(early stopping can only shorten it)",
            m_model,
        )
    else:
        failed("cenn_train", "main", geometry)
    return rows


# ---------------------------------------------------------------------------------------------- report


def _hms(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def _per(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.1f} s"


def _gib(g: float | None) -> str:
    return "–" if g is None else f"{g:.2f}"


def _verdict(r: dict) -> str:
    mem = {True: "yes", False: "**NO**", None: "–"}[r["fits_memory"]]
    tim = {True: "yes", False: "**NO**", None: "–"}[r["fits_time"]]
    return f"{mem} / {tim}"


def report(data: dict, rows: list[dict], limit_gib: float, reasonable_h: float) -> str:
    m = data["machine"]
    lines = [
        "# Paper scale on this machine",
        "",
        "Every DVC stage run at paper geometry with reduced counts, measured, and extrapolated to the paper's counts "
        "(`conf/scale/paper.yaml`, the lensing versions' `lensing_paper`). Produced by `bench/paper_scale.py` "
        "(its docstring gives the method); raw figures in `bench/results/paper_scale.json`.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB memory, Python {m['python']}; "
        "the CPU was shared with other work during the run, so times are approximate (memory is not affected).",
        f"- Command: `{data['command']}` (commit {data['commit'][:12]}, {data['date']}; "
        f"{_hms(data.get('elapsed_s'))} in all)"
        + (
            f"; this report rewritten from its JSON by `{data['report_command']}`."
            if data.get("report_command")
            else "."
        ),
        f"- Fits: peak memory at full counts ≤ {limit_gib:g} GiB (of {m['memory_gib']} GiB) / "
        f"time at full counts ≤ {reasonable_h:g} h on these {m['cores']} cores.",
        "- Memory: the peak of the stage's whole process tree (summed PSS, so pages the fork-pool workers share "
        "copy-on-write count once), or the largest single process' high-water mark if higher.",
        "",
        "| stage | geometry | count run | wall | time per unit | peak GiB | full paper count | time at full | "
        "peak GiB at full | fits memory / time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = f"{_per(r['time_per_unit_s'])} / {r['unit']}" if r["time_per_unit_s"] is not None else "–"
        lines.append(
            f"| {r['stage']} | {r['geometry']} | {r['count_run']} | {_hms(r['wall_s'])} | {per} | "
            f"{_gib(r['peak_gib'])} | {r['full_count']} | {_hms(r['full_time_s'])} | {_gib(r['full_peak_gib'])} | "
            f"{_verdict(r)} |"
        )
    lines += ["", "## How each figure scales", ""]
    for r in rows:
        lines.append(f"- **{r['stage']}** ({r['run']}): time: {r['time_model']}; memory: {r['memory_model']}.")
    lines += ["", "## Whole pipelines at the paper's counts", ""]
    for name, prefix in (
        ("CENN " + data["runs"].get("main", {}).get("variant", ""), ("spectra", "cmb_maps", "foregrounds", "cenn_")),
        *(
            (f"lensing {k.split('_', 1)[1]}", (f"({k.split('_', 1)[1]})",))
            for k in data["full_counts"]
            if k.startswith("lensing_")
        ),
    ):
        if name.startswith("lensing"):
            chain = [r for r in rows if r["stage"].startswith("lensing_") and r["geometry"].endswith(prefix[0])]
            chain = [r for r in rows if r["stage"] == "spectra"] + chain
        else:
            chain = [r for r in rows if r["stage"].startswith(prefix) and "estimated" not in r["stage"]]
        times = [r["full_time_s"] for r in chain]
        peaks = [(r["full_peak_gib"], r["stage"]) for r in chain if r["full_peak_gib"] is not None]
        if not chain:
            continue
        total = "–" if None in times else _hms(sum(times))
        top = max(peaks) if peaks else (None, "–")
        lines.append(f"- {name}: {len(chain)} stages, {total} in sequence; largest peak {_gib(top[0])} GiB ({top[1]}).")
    failing = [r for r in rows if r["fits_memory"] is False or r["fits_time"] is False]
    lines += ["", "## Does not fit", ""]
    if not failing:
        lines.append("Every stage fits.")
    for r in failing:
        why = []
        if r["fits_memory"] is False:
            why.append(f"peak {r['full_peak_gib']:.1f} GiB at full counts > {limit_gib:g} GiB")
        if r["fits_time"] is False:
            why.append(f"{_hms(r['full_time_s'])} at full counts > {reasonable_h:g} h")
        lines.append(f"- **{r['stage']}**: " + "; ".join(why) + ".")
    lines += [
        "",
        "## Every measurement",
        "",
        "Peak = max(summed PSS, largest process' high-water mark); the summed RSS shows what counting shared "
        "pages once per process would have claimed.",
        "",
        "| run | overrides | stage | rc | wall | CPU | load start → end | peak GiB | summed PSS GiB | summed RSS GiB | "
        "largest process GiB | processes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, run in data["runs"].items():
        ov = " ".join(o for o in run["overrides"] if o != "scale=paper")
        for stage, s in run["stages"].items():
            load = "–" if "load_avg" not in s else f"{s['load_avg'][0]:.1f} → {s['load_avg'][1]:.1f}"
            lines.append(
                f"| {label} | `{ov}` | {stage} | {s['rc']} | {_hms(s['wall_s'])} | {_hms(s.get('cpu_s'))} | "
                f"{load} | {s['peak_mib'] / 1024:.2f} | "
                f"{s['peak_pss_mib'] / 1024:.2f} | {s['peak_rss_sum_mib'] / 1024:.2f} | "
                f"{s['max_process_rss_mib'] / 1024:.2f} | {s['max_processes']} |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cenn-train", type=int, default=640, help="CENN Train patches of the main run (paper: 10000)")
    p.add_argument("--cenn-test", type=int, default=64, help="CENN Test (early-stopping) patches (paper: 1000)")
    p.add_argument("--cenn-validation", type=int, default=64, help="CENN Validation patches (paper: 1000)")
    p.add_argument("--realisations", type=int, default=1, help="CMB realisations of the main run (paper: 6)")
    p.add_argument(
        "--epochs",
        type=int,
        default=2,
        help="training epochs of the main and lensing runs "
        "(the last one, free of graph tracing, gives the time per epoch)",
    )
    p.add_argument("--lensing-versions", default="v6,v7", help="lensing versions, comma-separated")
    p.add_argument(
        "--lensing-fraction",
        type=float,
        default=0.025,
        help="lensing counts of level 1 as a fraction of the version's paper counts (level 2: twice)",
    )
    p.add_argument("--lensing-minimum", type=int, default=16, help="smallest lensing split of level 1")
    p.add_argument("--probe-nside", type=int, default=512, help="sky nside of the probe runs (0: no probes)")
    p.add_argument("--probe-realisations", type=int, default=6, help="CMB realisations of the second probe")
    p.add_argument("--probe-variants", default="E,QU", help="CENN variants probed; the first one is the main run's")
    p.add_argument("--probe-epochs", type=int, default=1, help="training epochs of the probe runs")
    p.add_argument(
        "--probe-divisor",
        type=int,
        default=8,
        help="the further variants' probes cut the main run's counts divided by this",
    )
    p.add_argument(
        "--main-nside",
        type=int,
        default=0,
        help="sky nside of the main run (0: the paper's; smaller only to try the script quickly)",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        help="a further override for every run, e.g. spectra.lmax=4000 to try the script quickly",
    )
    p.add_argument("--poll", type=float, default=0.5, help="seconds between memory samples")
    p.add_argument("--limit-gib", type=float, default=20.0, help="peak memory that counts as fitting")
    p.add_argument("--reasonable-hours", type=float, default=24.0, help="time at full counts that counts as fitting")
    p.add_argument("--workdir", help="directory for the working copy (kept); default: a temporary one, removed")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary working copy")
    p.add_argument("--json", default=str(REPO / "bench/results/paper_scale.json"))
    p.add_argument("--markdown", default=str(REPO / "bench/paper_scale.md"))
    p.add_argument("--report-only", action="store_true", help="rewrite the report from --json without running")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report_only:
        data = json.loads(Path(args.json).read_text())
        data["report_command"] = "python " + shlex.join(
            [os.path.relpath(__file__, REPO), *(argv if argv is not None else sys.argv[1:])]
        )
    else:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        header = {
            "machine": machine(),
            "command": "python "
            + shlex.join([os.path.relpath(__file__, REPO), *(argv if argv is not None else sys.argv[1:])]),
            "commit": commit,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "started_unix": round(time.time()),
            "probe_variants": args.probe_variants.split(","),
            "memory_method": "max(sampled summed PSS of the process tree, wait4 ru_maxrss)",
        }
        data = measure(args, header)
    rows = extrapolate(data, args.limit_gib, args.reasonable_hours)
    data["extrapolation"] = {"limit_gib": args.limit_gib, "reasonable_hours": args.reasonable_hours, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    Path(args.markdown).write_text(report(data, rows, args.limit_gib, args.reasonable_hours))
    print(Path(args.markdown).read_text())


if __name__ == "__main__":
    main()
