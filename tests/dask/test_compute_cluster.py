"""compute.cluster / compute.packages: how a run gets its Dask client, and what fails in one line."""

import time

import pytest
from omegaconf import OmegaConf

pytest.importorskip("distributed")

from mlrecipes import compute  # noqa: E402
from mlrecipes.compute import cluster, packages  # noqa: E402
from mlrecipes.errors import UserError  # noqa: E402


def dask_cfg(**extra):
    base = OmegaConf.load(compute_yaml("dask"))
    return OmegaConf.merge(base, OmegaConf.create(extra))


def compute_yaml(name):
    from mlrecipes.paths import SHARED_CONF

    return SHARED_CONF / "compute" / f"{name}.yaml"


def test_kind_from_the_group():
    assert compute.kind_of(OmegaConf.create({})) == "local"
    assert not compute.on_dask(OmegaConf.create({"compute": OmegaConf.load(compute_yaml("local"))}))
    assert compute.on_dask(OmegaConf.create({"compute": dask_cfg()}))
    with pytest.raises(UserError, match="unknown compute.kind 'spark'"):
        compute.kind_of(OmegaConf.create({"compute": {"kind": "spark"}}))


def test_an_unreachable_scheduler_fails_within_seconds_in_one_line():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(UserError) as info, cluster.client(dask_cfg(address=f"tcp://127.0.0.1:{port}",
                                                                   connect_timeout_s=2)):
        pass
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert elapsed < 8, elapsed
    assert "\n" not in message
    assert message.startswith(f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 2 s")


@pytest.mark.parametrize(("extra", "match"), [
    ({"address": "127.0.0.1:8786"}, "expected tcp://host:8786"),
    ({"address": "tcp://127.0.0.1:1", "cluster": {"_target_": "distributed.LocalCluster"}}, "set one"),
    ({"cluster": {"n_workers": 1}}, "needs a _target_"),
    ({"cluster": {"_target_": "dask_nonexistent.FooCluster"}}, "cannot start dask_nonexistent.FooCluster"),
    ({"local": {"memory_limit": "lots"}}, "memory_limit 'lots'"),
    ({"local": {"n_workers": 0}}, "n_workers must be >= 1"),
])
def test_bad_settings_are_one_line(extra, match):
    with pytest.raises(UserError, match=match) as info, cluster.client(dask_cfg(**extra)):
        pass
    assert "\n" not in str(info.value)


def test_describe_names_the_cluster():
    assert cluster.describe(dask_cfg(address="tcp://h:8786")) == "the Dask scheduler at tcp://h:8786"
    assert cluster.describe(dask_cfg()) == "a LocalCluster of 2 workers × 1 threads, 1GiB each"


def test_missing_packages_on_the_workers_are_named(dask_client):
    client, _ = dask_client
    found = packages.check_workers(client, ["json"])
    assert found["numpy"] and found["dask"]
    with pytest.raises(UserError) as info:
        packages.check_workers(client, ["json", "no_such_package_xyz"])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("the Dask workers cannot import no_such_package_xyz "
                              "(no_such_package_xyz on all 2 workers)")


def test_the_driver_ships_its_mlrecipes_to_a_remote_cluster(dask_client):
    client, _ = dask_client
    packages.ship_mlrecipes(client)  # what a run on compute.address does first
    assert all(client.run(lambda: __import__("mlrecipes.compute.splits").__name__ == "mlrecipes").values())
    assert cluster.params(dask_cfg(), client)["compute.n_workers"] == 2
