"""The executors behind the simulation stages: every one yields the jobs' results in job order, Dask keeps only a
few jobs in flight, and a missing or silent scheduler is refused before any work."""

import time

import numpy as np
import pytest

from cmbml.common.executors import DaskExecutor, Executor, ExecutorSpec, ForkExecutor, open_executor


def slow_square(shared, job):
    """Later jobs finish first: an executor that yields in completion order would scramble the output."""
    time.sleep(0.02 * (shared["n"] - job))
    return job * job + shared["offset"]


SHARED = {"n": 8, "offset": np.float64(0.5)}
EXPECTED = [j * j + 0.5 for j in range(8)]


@pytest.fixture(scope="module")
def dask_client():
    from distributed import Client, LocalCluster

    # threads in this process: the protocol (scatter, submit, order) without starting worker processes
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def test_in_process_and_forked_executors_yield_results_in_job_order():
    assert list(Executor().map(slow_square, SHARED, range(8))) == EXPECTED
    assert list(ForkExecutor(2).map(slow_square, SHARED, range(8))) == EXPECTED
    assert list(ForkExecutor(1).map(slow_square, SHARED, range(8))) == EXPECTED


def test_dask_executor_yields_results_in_job_order(dask_client):
    assert list(DaskExecutor(dask_client).map(slow_square, SHARED, range(8))) == EXPECTED


def test_dask_executor_keeps_a_bounded_number_of_jobs_in_flight(dask_client):
    """With 2 workers and 2 jobs ahead per worker, at most 4 jobs are submitted before the first result is
    taken, and one more per result: memory does not grow with the number of jobs."""
    drawn = []

    def jobs():
        for j in range(8):
            drawn.append(j)
            yield j

    results = DaskExecutor(dask_client, ahead=2).map(slow_square, SHARED, jobs())
    assert next(results) == EXPECTED[0] and len(drawn) == 5
    assert next(results) == EXPECTED[1] and len(drawn) == 6
    assert list(results) == EXPECTED[2:]


def test_dask_without_a_scheduler_address_is_refused(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="needs executor.scheduler_address or DASK_SCHEDULER_ADDRESS"):
        with open_executor(ExecutorSpec("dask")):
            pass


def test_a_silent_scheduler_is_a_connection_error_naming_the_address():
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ConnectionError, match=r"'tcp://127.0.0.1:9': no Dask scheduler answered within 1s"):
            with open_executor(ExecutorSpec("dask", scheduler_address="tcp://127.0.0.1:9")):
                pass
