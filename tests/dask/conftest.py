"""One real LocalCluster of 2 worker processes for the session's Dask tests (small memory limits:
the machine's 2 cores are shared)."""

import pytest
from omegaconf import OmegaConf


@pytest.fixture(scope="session")
def dask_client():
    """(client, compute config) of an embedded LocalCluster: 2 workers × 1 thread, 400 MiB each."""
    pytest.importorskip("distributed")
    from mlrecipes.compute import cluster
    from mlrecipes.paths import SHARED_CONF

    cfg = OmegaConf.merge(OmegaConf.load(SHARED_CONF / "compute" / "dask.yaml"),
                          {"local": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "400MiB"}})
    with cluster.client(cfg) as client:
        yield client, cfg
