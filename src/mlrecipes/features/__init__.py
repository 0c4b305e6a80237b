"""Tick features as config: per-key, time-ordered window features with no look-ahead.

The `features` Hydra group (conf/features/, selected like `data`; `none` by default) names a key,
an order (the data group's time column unless set) and a list of features: lags, differences,
ratios and log returns against a lag, rolling mean / std / min / max / sum over the last n rows
or a time span, counts of rows in a span, time of day and day of week, and arithmetic over
columns and earlier features (expr.py's small grammar, never eval). conf/features/ticks.yaml is
the worked example.

    fs = FeatureSet.from_config(cfg.features, cfg.data.time_column)
    fs.validate(table.schema)       # one-line UserError for every mismatch
    table = fs.compute(table)       # the features appended, rows in the input's order
    fs.to_dict() / FeatureSet.from_dict(d)   # logged with the model; scoring uses the model's

Semantics (what a feature at tick t may read): rows of the same key at or before t in (order,
input position) order; a time-span window is (t - span, t], the current tick included and no tick
after it, not even one with the same timestamp (compute.py says how). Windows never cross keys.
NaN counts as missing in every window (as in pandas); a row window needs n values unless
min_periods says fewer, a span window one. Every feature is float64. Input in any row order;
output in the input's row order, so the recipe can split after the features are computed.

Scoring a slice (`compute_slice(table, start)`): the table holds the slice and history read
before it (at least `lookback()`: the span before the slice, then that many rows). A feature of a
slice row whose windows reach before the history the table holds for its key is written as
missing, not computed from a shorter window: a prediction then sees a value training would have
computed or a missing value, never a quietly different number, and `short_rows` (per feature too)
says how many rows were affected, for scoring to report.

Where it runs: `data.ingest` computes the `features` group (beside the data group in the run's
config) on the whole table before the split and hands the definition to the model
(`recipe.log_table_model`: model_config `feature_set`); `scoring.windowed` computes the model's
definition over a slice and the lookback `scoring.lookback` reads. `transform` is the optional
scikit-learn transformer (`features.transform`) fitted on the training rows and saved in the model.

Polars, not DuckDB, by measurement (bench/features.py, bench/results/features.json): the 12
features of ticks.yaml over a 5 M-row, 4-symbol tick table on 2 shared cores took Polars 4.5-5.1 s
(about 1 M rows/s, peak RSS 2.1 GB with the table) against 8.6-9.6 s and 2.8 GB for the pandas
groupby / shift / rolling code a user would write, and 286 s (3.7 GB) for the same definition as
DuckDB window SQL, all three agreeing to 2e-8 (relative). DuckDB evaluates each window frame on its own
(segment trees over a few very large partitions: one per symbol) and its RANGE frames are the
slow part; Polars' rolling kernels stream each key's sorted rows once per feature and run a
layer's independent features in parallel.
"""

from .featureset import FeatureSet, Slice
from .spec import Feature, Lookback

__all__ = ["Feature", "FeatureSet", "Lookback", "Slice"]
