"""Memory on the cluster: workers paused at their memory limit end a run in one line (never a wait
forever), and a table larger than one worker's memory limit trains on 2 workers where one process
under the launcher's memory limit of that size fails."""

import time

import pytest

pytest.importorskip("distributed")


def _statuses(client) -> dict[str, str]:
    return {addr: w["status"] for addr, w in client.scheduler_info(n_workers=-1)["workers"].items()}


def _wait_statuses(client, status: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while set(_statuses(client).values()) != {status}:
        assert time.monotonic() < deadline, _statuses(client)
        time.sleep(0.2)


def _fill(dask_worker, fraction: float) -> int:
    """Holds memory in the worker until its RSS is `fraction` of its limit (between Dask's pause, 80 %,
    and the nanny's restart, 95 %); returns the bytes held."""
    import numpy as np
    import psutil

    target = int(dask_worker.memory_manager.memory_limit * fraction)
    dask_worker.mlrecipes_ballast = np.ones(max(target - psutil.Process().memory_info().rss, 0), dtype=np.uint8)
    return dask_worker.mlrecipes_ballast.nbytes


def _release(dask_worker) -> None:
    dask_worker.__dict__.pop("mlrecipes_ballast", None)


def test_workers_paused_at_their_memory_limit_end_the_run_in_one_line(dask_client, capsys):
    from mlrecipes import lifecycle
    from mlrecipes.compute import steps
    from mlrecipes.errors import EXIT_USER_ERROR

    client, _ = dask_client
    client.wait_for_workers(2, timeout=120)
    try:
        client.run(_fill, fraction=0.87)  # what a worker holding too many rows looks like to Dask
        _wait_statuses(client, "paused")
        started = time.monotonic()
        outcome = lifecycle.guarded(
            lambda: steps.guard_workers(client, lambda: client.submit(sum, [1, 2], pure=False).result(),
                                        paused_timeout_s=2),
            what="run", run_id="r1")
        waited = time.monotonic() - started
    finally:
        client.run(_release)
    _wait_statuses(client, "running")
    assert outcome.status == "FAILED" and outcome.exit_code == EXIT_USER_ERROR  # a retry pauses them again
    assert 2 < waited < 15, waited
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: every Dask worker has been paused at its memory limit for 2 s with work waiting (")
    for addr in _statuses(client):
        assert f"{addr} at " in line and " of 1024 MiB" in line
    assert "nothing was registered; raise compute.local.memory_limit" in line and "add workers" in line
    assert line.endswith("(see docs/troubleshooting.md#dask-workers-paused-at-their-memory-limit)")
    assert client.submit(sum, [1, 2], pure=False).result(timeout=30) == 3  # unpaused, the cluster works again
