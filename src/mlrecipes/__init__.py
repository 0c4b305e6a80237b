"""mlrecipes: the recipe steps every project runs (ingest, split, evaluate, log, register + gate).

No framework imports here: each project's environment brings its own framework.
"""

import os

# Before anything imports pyarrow (mlflow does): Arrow's allocator (mimalloc) returns freed pages
# at once instead of keeping them; ingest of a 5 M-row table held ~1 GB less (python -m
# mlrecipes.scoring / .sweep enter here first; the GBDT train.py files set it themselves).
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
