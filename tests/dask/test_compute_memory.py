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


# ---------------------------------------------------------------- a table larger than one worker's memory

LIMIT = "1GiB"  # per worker; the launcher's memory_limit_mb of the same size for one process
ROWS = 5_000_000  # × 20 float64 features: 1085 MiB as stored (measured below)
FEATURES = 20
# xgboost.dask holds each worker's training and validation rows in memory at once (its quantile
# matrix is built from them); the test rows are scored partition by partition. Half the rows are
# test rows so the training half fits 2 workers of this size with margin below Dask's pause (80 %).
OVERRIDES = ["data.test_fraction=0.5", "model.num_boost_round=10"]


@pytest.fixture(scope="module")
def big_table(tmp_path_factory):
    """(MLRECIPES_DATA_DIR holding ticks_parquet, the table's in-memory size in bytes as stored)."""
    import pyarrow.dataset as pads
    import ticks as generator

    out = tmp_path_factory.mktemp("big")
    path = generator.write_parquet(generator.make(ROWS, FEATURES), out)
    # What the lake's rows take in memory: the Arrow table read back as stored (float64 features).
    return out, pads.dataset(path, format="parquet", partitioning="hive").to_table().nbytes


@pytest.fixture(scope="module")
def memory_cluster():
    """Its own LocalCluster, started once: 2 fresh workers × 1 thread, LIMIT each (their peak memory
    is the run's alone)."""
    from omegaconf import OmegaConf

    from mlrecipes.compute import cluster
    from mlrecipes.paths import SHARED_CONF

    cfg = OmegaConf.merge(OmegaConf.load(SHARED_CONF / "compute" / "dask.yaml"),
                          {"local": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": LIMIT}})
    with cluster.client(cfg) as client:
        yield client, cfg


def _peak_rss_mib() -> float:
    """The worker process's peak RSS (VmHWM: since its exec, unlike ru_maxrss, which a spawned
    process inherits from the one that forked it)."""
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return kib / 1024


def test_a_table_larger_than_one_workers_memory_limit_trains_and_registers_on_two_workers(
        big_table, memory_cluster, tracking_uri, monkeypatch):
    pytest.importorskip("xgboost")
    import mlflow
    from distributed import get_task_stream
    from helpers import borrowed
    from test_compute_training import composed, project_module

    from mlrecipes.compute import steps

    data_dir, nbytes = big_table
    client, dask_cfg = memory_cluster
    workers = client.scheduler_info(n_workers=-1)["workers"]
    limit = {int(w["memory_limit"]) for w in workers.values()}.pop()
    assert len(workers) == 2 and nbytes > limit, (nbytes, limit)  # the claim, checked
    module = project_module("xgboost")
    monkeypatch.setattr(steps.cluster, "client", lambda cfg: borrowed(client))
    streams = []

    def fit_dask(*args):
        with get_task_stream(client) as stream:
            trained = module.fit_dask(*args)
        streams.append(stream)
        return trained

    with mlflow.start_run():
        outcome = steps.steps(composed("xgboost", data_dir / "ticks_parquet", dask_cfg, *OVERRIDES), fit_dask)
    assert outcome.registered is not None and outcome.metrics["test_accuracy"] > 0.4
    trained_on = {t["worker"] for t in streams[0].data if str(t["key"]).startswith("fn-")}  # xgboost's per worker
    assert trained_on == set(workers), trained_on  # both workers trained
    peaks = client.run(_peak_rss_mib)
    figures = (f"table {nbytes / 2**20:.0f} MiB in memory; worker limit {limit / 2**20:.0f} MiB; "
               f"peak RSS per worker {', '.join(f'{p:.0f}' for p in peaks.values())} MiB")
    print(figures)
    assert all(p < limit / 2**20 for p in peaks.values()), figures


@pytest.mark.smoke
def test_the_same_table_in_one_process_under_that_memory_limit_fails_with_the_memory_line(big_table, tracking_uri):
    """Through the launcher as a user runs it (`mlrecipes run xgboost --memory-limit-mb`: `mlflow run`
    of the project in its environment, supervised by launch.supervise.TreeMemory)."""
    import os
    import re
    import subprocess
    import sys

    import mlflow
    from helpers import REPO, all_runs

    data_dir, nbytes = big_table
    limit_mb = 1024  # LIMIT, in the launcher's MB (MiB, like Dask's)
    assert nbytes > limit_mb * 2**20
    proc = subprocess.run(
        [sys.executable, "-m", "mlrecipes", "run", "xgboost", "-P", "data=ticks", "-P",
         f"overrides=features=none {' '.join(OVERRIDES)}", "--memory-limit-mb", str(limit_mb)],
        capture_output=True, text=True, cwd=REPO, timeout=900,
        env={**os.environ, "MLRECIPES_DATA_DIR": str(data_dir), "MLFLOW_TRACKING_URI": tracking_uri})
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    match = re.fullmatch(rf"error: memory limit {limit_mb} MB exceeded \(peak (\d+) MB\) "
                         r"\(see docs/troubleshooting.md#a-task-was-killed-for-memory\)", last)
    assert match and int(match.group(1)) > limit_mb, proc.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri)
    assert [r.info.status for r in all_runs(client)] == ["FAILED"]
    assert client.search_registered_models() == []
