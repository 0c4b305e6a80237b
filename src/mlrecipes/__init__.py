"""mlrecipes: the recipe steps every project runs (ingest, split, evaluate, log, register + gate).

No framework imports here: each project's environment brings its own framework.
"""

import os

# Settings that libraries read once, when they load: set here, before anything imports pyarrow
# (mlflow does) or an OpenMP library (XGBoost, LightGBM, torch). Every process that trains or scores
# enters here first: python -m mlrecipes.scoring / .sweep, and the projects' train.py files import
# mlrecipes before mlflow and their framework.
#
# Arrow's allocator (mimalloc) returns freed pages at once instead of keeping them for reuse: ingest
# of a 5 M-row table held ~1 GB less (RSS after ingest 2.0 GB -> 1.0 GB).
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
# An OpenMP thread spins this many turns at a barrier, then sleeps. libgomp's default (300,000) makes
# each barrier on a busy worker wait for a descheduled partner while the spinner burns the core
# (2 XGBoost rounds on 300 rows: 6-15 s); never spinning (OMP_WAIT_POLICY=PASSIVE, used before)
# costs a quiet machine at each of a round's many barriers: LightGBM on full MNIST 0.47 s a round
# against 0.16 s at 1,000 turns (as fast as passive under a load of 8 on 2 cores: 0.9 s), 2 torch CNN
# epochs 15.5-20.3 s against 12.5-15.0 s (44-45 s an epoch under that load with either).
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
