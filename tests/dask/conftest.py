"""One real LocalCluster of 2 worker processes for the session's Dask tests.

1 GiB per worker, the default of conf/compute/dask.yaml: a worker that has imported xgboost,
lightgbm, pandas, pyarrow and mlflow holds ~300 MiB before any row, and Dask pauses a worker past
80 % of its limit (it starts no task): under 400 MiB both workers paused and a gather waited forever."""

import pytest
from omegaconf import OmegaConf


@pytest.fixture(scope="session")
def dask_client():
    """(client, compute config) of an embedded LocalCluster: 2 workers × 1 thread, 1 GiB each."""
    pytest.importorskip("distributed")
    from mlrecipes.compute import cluster
    from mlrecipes.paths import SHARED_CONF

    cfg = OmegaConf.merge(OmegaConf.load(SHARED_CONF / "compute" / "dask.yaml"),
                          {"local": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB"}})
    with cluster.client(cfg) as client:
        yield client, cfg
