"""mlrecipes: the recipe steps every project runs (ingest, split, evaluate, log, register + gate).

No framework imports here: each project's environment brings its own framework.
"""
