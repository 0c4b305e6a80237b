"""Rows on every worker: a part of the split that sits on some workers only is shuffled across all.

A time split puts the validation and test rows in the latest files, which a few workers read:
xgboost.dask then fails on a worker that holds training rows but no validation rows ("A worker
cannot have empty input when a dataframe with categorical features is used"), and a worker
without training rows does no training work. So before a matrix is built, a part whose non-empty
partitions do not cover every worker is shuffled (P2P: output partitions are assigned to the
workers evenly) on a seeded random key into 2 partitions per worker. A part that already covers
them is left where it is: the shuffle costs a copy of the part in flight.
"""

from __future__ import annotations

import numpy as np

KEY = "__mlrecipes_spread"


def holders(client, frame) -> set[str]:
    """The workers holding a non-empty partition of the persisted `frame`."""
    from distributed import futures_of

    lengths = frame.map_partitions(len).compute().tolist()
    futures = futures_of(frame)
    where = client.who_has(futures)
    by_key = {f.key: f for f in futures}
    holding: set[str] = set()
    for key, length in zip(frame.__dask_keys__(), lengths, strict=True):
        if length and key in by_key:
            holding.update(where.get(key, ()))
    return holding


def _keyed(frame, seed: int, partition_info=None):
    number = (partition_info or {}).get("number", 0)
    return frame.assign(**{KEY: np.random.default_rng([int(seed), int(number)]).integers(0, 2**31, len(frame))})


def across_workers(client, frame, seed: int):
    """`frame` (persisted) with rows on every worker; shuffled only when it is not already."""
    workers = set(client.scheduler_info(n_workers=-1)["workers"])
    if len(workers) < 2 or holders(client, frame) >= workers:
        return frame
    if int(frame.shape[0].compute()) < len(workers):
        return frame  # fewer rows than workers: nothing to spread
    meta = frame._meta.assign(**{KEY: np.zeros(0, dtype=np.int64)})
    keyed = frame.map_partitions(_keyed, int(seed), meta=meta)
    shuffled = keyed.shuffle(on=KEY, npartitions=2 * len(workers)).drop(columns=[KEY])
    return client.persist(shuffled)
