"""Simulation on Dask: `lensing_simulate` and `cenn_simulate` rerun by DVC with `executor.kind = dask` on a
`dask.distributed` LocalCluster of two worker processes (loopback) write files byte-identical to the local run's,
both workers take part, and DVC sees nothing changed (the executor is no parameter of any stage)."""

import json

import pytest
import yaml

from tests.integration.conftest import digests, sh

pytestmark = pytest.mark.slow

SMOKE = ["scale=smoke", "cenn=B"]  # what the CENN pipeline test ran: its stages come from the run cache


def test_simulations_on_a_dask_cluster_are_byte_identical_to_the_local_run(repo_copy):
    from distributed import Client, LocalCluster

    root, env = repo_copy
    stages = ["lensing_simulate", "cenn_simulate@training"]
    sh(["cmbml", "params", "compose", *SMOKE], root, env)
    sh(["dvc", "repro", *stages], root, env)
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["executor"]["kind"] == "local"
    outputs = [params["paths"]["lensing"]["datasets"], params["paths"]["cenn"]["patches"]]
    local = digests(root, outputs)
    assert (
        sum(k.endswith(".h5") for k in local) == 3 + 3
    )  # the three roles of each experiment (CENN: Train, Test, Validation of B)
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        # the README's recipe: the executor in the parameters, then the stages forced to run again
        sh(
            [
                "cmbml",
                "params",
                "compose",
                *SMOKE,
                "executor.kind=dask",
                f"executor.scheduler_address={cluster.scheduler_address}",
            ],
            root,
            env,
        )
        status = json.loads(sh(["dvc", "status", "--json", *stages], root, env).stdout)
        assert status == {}, f"switching executor made stages stale: {status}"
        for stage in stages:
            sh(["dvc", "repro", "--force", "--single-item", stage], root, env)
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(n > 0 for n in executed.values()), executed  # both workers simulated

    assert digests(root, outputs) == local
    after = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for stage in stages:
        assert after[stage]["outs"] == lock[stage]["outs"], stage
    sh(["cmbml", "params", "compose", *SMOKE], root, env)
    assert json.loads(sh(["dvc", "status", "--json", *stages], root, env).stdout) == {}


def test_an_unreachable_scheduler_stops_the_stage_before_any_work(repo_copy):
    """No scheduler at the address: the stage fails with a message naming the parameter and the address,
    and the outputs of the last run are untouched."""
    import subprocess

    root, env = repo_copy
    sh(["cmbml", "params", "compose", *SMOKE], root, env)
    sh(["dvc", "repro", "lensing_simulate"], root, env)
    datasets = yaml.safe_load((root / "params.yaml").read_text())["paths"]["lensing"]["datasets"]
    before = digests(root, [datasets])
    sh(
        ["cmbml", "params", "compose", *SMOKE, "executor.kind=dask", "executor.scheduler_address=tcp://127.0.0.1:9"],
        root,
        env,
    )
    try:
        out = subprocess.run(
            ["cmbml", "lensing", "simulate"],
            cwd=root,
            env={**env, "PYTHONPATH": "src:.", "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        sh(["cmbml", "params", "compose", *SMOKE], root, env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "executor.scheduler_address = 'tcp://127.0.0.1:9': no Dask scheduler answered within 3s" in out.stderr
    assert digests(root, [datasets]) == before
