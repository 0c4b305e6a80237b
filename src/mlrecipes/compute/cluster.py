"""The Dask client of a run, from the `compute` group (conf/compute/dask.yaml).

Three ways to a cluster, one per key: `address` connects to a running scheduler, `cluster` builds
any cluster class of the ecosystem (`_target_` + kwargs, through hydra.utils.instantiate), and
neither starts an embedded `distributed.LocalCluster` from `local` (workers, threads, memory limit).
Whatever goes wrong on the way is one line (a UserError): an address that does not answer fails
after `connect_timeout_s`, a cluster that never gets a worker after `wait_workers_s`.

An embedded LocalCluster spawns its worker processes: the code that opens it must run under
`if __name__ == "__main__":` (train.py run by `mlflow run` is `__main__`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from mlrecipes.errors import UserError, one_line, require, see

DEFAULT_CONNECT_TIMEOUT_S = 10
DEFAULT_WAIT_WORKERS_S = 60
DASHBOARD = "127.0.0.1:8787"  # loopback only: the dashboard has no login


def _setting(cfg, key: str, default=None):
    value = cfg.get(key) if cfg is not None else None
    return default if value in (None, "") else value


def describe(cfg) -> str:
    """Which cluster the config names, in words (a param and the start of every error line)."""
    if _setting(cfg, "address"):
        return f"the Dask scheduler at {cfg.address}"
    if _setting(cfg, "cluster"):
        return f"the Dask cluster {cfg.cluster.get('_target_', '?')}"
    local = _setting(cfg, "local", {})
    return (f"a LocalCluster of {_setting(local, 'n_workers', 2)} workers × "
            f"{_setting(local, 'threads_per_worker', 1)} threads, {_setting(local, 'memory_limit', 'auto')} each")


def params(cfg, client) -> dict[str, object]:
    """What the run logs about where it computed."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    # Names beside the config's own compute.* params (log_config logs those as set).
    return {
        "compute.runs_on": describe(cfg),
        "compute.n_workers": len(workers),
        "compute.n_threads": sum(int(w.get("nthreads", 0)) for w in workers.values()),
        "compute.worker_memory_mb": min((int(w.get("memory_limit") or 0) >> 20 for w in workers.values()), default=0),
    }


@contextmanager
def client(cfg) -> Iterator[object]:
    """A connected `distributed.Client` for the run; the cluster it started (if any) closed after it.

    The client is the default one while the block runs, so `dask.compute`, `xgboost.dask` and
    `lightgbm.dask` use it without being handed it."""
    try:
        import distributed
    except ImportError:
        raise UserError("compute=dask needs the dask[distributed] package in this environment "
                        "(the project's requirements.lock has it)") from None
    address, spec = _setting(cfg, "address"), _setting(cfg, "cluster")
    require(not (address and spec), "compute.address and compute.cluster are two ways to a cluster: set one")
    cluster = None
    try:
        if address:
            c = _connect(distributed, str(address), float(_setting(cfg, "connect_timeout_s",
                                                                   DEFAULT_CONNECT_TIMEOUT_S)))
        else:
            cluster = _instantiate(spec, cfg) if spec else _local(distributed, _setting(cfg, "local", {}))
            c = distributed.Client(cluster, set_as_default=True)
            _wait_for_workers(c, cfg)
    except BaseException:
        if cluster is not None:
            with suppress(Exception):
                cluster.close()
        raise
    try:
        with c.as_current():
            yield c
    finally:
        with suppress(Exception):
            c.close(timeout=10)
        if cluster is not None:
            with suppress(Exception):
                cluster.close(timeout=10)


def _connect(distributed, address: str, timeout_s: float):
    require("://" in address, f"compute.address {address!r}: expected tcp://host:8786 (or tls://host:8786)")
    try:
        return distributed.Client(address, timeout=f"{timeout_s}s", set_as_default=True)
    except (OSError, TimeoutError) as exc:  # refused, no route, no answer: dask retries until the timeout
        why = one_line(str(exc)) or type(exc).__name__
        raise UserError(f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s: {why}"
                        + see("the-dask-scheduler-is-unreachable")) from None
    except ValueError as exc:  # a malformed address
        raise UserError(f"compute.address {address!r}: {one_line(str(exc))}") from None


def _local(distributed, local):
    n_workers = int(_setting(local, "n_workers", 2))
    require(n_workers >= 1, f"compute.local.n_workers must be >= 1, got {n_workers}")
    threads = int(_setting(local, "threads_per_worker", 1))
    require(threads >= 1, f"compute.local.threads_per_worker must be >= 1, got {threads}")
    memory = _setting(local, "memory_limit", "auto")
    try:
        # Validates "1GiB" / "600MiB" / bytes here, not as a traceback from a worker process.
        from dask.utils import parse_bytes

        if str(memory) != "auto":
            parse_bytes(memory)
    except (ValueError, TypeError):
        raise UserError(f"compute.local.memory_limit {memory!r}: expected a size such as 1GiB or 600MiB") from None
    return distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=threads, memory_limit=memory, processes=True,
        host="127.0.0.1", dashboard_address=DASHBOARD if _setting(local, "dashboard", False) else None,
        silence_logs=logging.ERROR,
    )


def _instantiate(spec, cfg):
    """A cluster class named by `_target_` (dask_kubernetes, dask_jobqueue, coiled), with its kwargs."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    target = spec.get("_target_") if hasattr(spec, "get") else None
    require(bool(target), "compute.cluster needs a _target_: the cluster class, e.g. dask_jobqueue.SLURMCluster")
    try:
        cluster = instantiate(spec)
    except InstantiationException as exc:  # a module that is not installed, a bad keyword
        raise UserError(f"compute.cluster: cannot start {target}: {one_line(str(exc))}") from None
    scale = _setting(cfg, "scale")
    if scale:
        cluster.scale(int(scale))
    return cluster


def _wait_for_workers(c, cfg) -> None:
    timeout = float(_setting(cfg, "wait_workers_s", DEFAULT_WAIT_WORKERS_S))
    try:
        c.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError):
        raise UserError(f"{describe(cfg)} has no worker after {timeout:g} s (compute.wait_workers_s)") from None
