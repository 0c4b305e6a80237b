"""The hand-written training a user would write instead of `mlflow run` on a table (bench/tables.py):
pyarrow read, pandas categoricals, the same time split and rows as ours, the library's own training
(`xgb.train` on QuantileDMatrix / `lgb.train` on Dataset) with the run's parameters and early stopping.

    python train_table.py FRAMEWORK TABLE PARAMS_JSON

PARAMS_JSON: {"params": {...}, "rounds": N, "early_stopping_rounds": M, "target": "direction",
"exclude": [...], "time_column": "ts", "rows_train": ..., "rows_val": ...} (the run's split). Prints one JSON line:
seconds (read + type, train), the table's in-memory size and peak RSS (ru_maxrss).
"""

import json
import resource
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

# The partition values as strings, as ours reads them: inferred, "005930" would become the integer 5930.
HIVE = pads.partitioning(pa.schema([("date", pa.string()), ("symbol", pa.string())]), flavor="hive")


def main() -> None:
    framework, path, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    t0 = time.perf_counter()
    table = pads.dataset(path, format="parquet", partitioning=HIVE).to_table()
    table = table.drop_columns([c for c in spec["exclude"] if c in table.column_names and c != spec["time_column"]])
    table = table.filter(pc.is_valid(table[spec["target"]]))  # rows without a target are not trained on
    table = table.sort_by(spec["time_column"])
    table_mb = table.nbytes / 2**20
    frame = table.to_pandas()
    classes = sorted(frame[spec["target"]].unique())
    y = frame.pop(spec["target"]).map({c: i for i, c in enumerate(classes)}).to_numpy()
    frame = frame.drop(columns=[spec["time_column"]])
    for name in frame.columns:
        if pa.types.is_string(table.schema.field(name).type):
            frame[name] = frame[name].astype("category")
        else:
            frame[name] = frame[name].astype(np.float32)
    n = len(frame)  # the run's own split sizes (time order: train, then validation, then test)
    test = n - spec["rows_train"] - spec["rows_val"]
    train_end = spec["rows_train"]
    X_train, X_val = frame.iloc[:train_end], frame.iloc[train_end:n - test]
    y_train, y_val = y[:train_end], y[train_end:n - test]
    t1 = time.perf_counter()
    params = dict(spec["params"])
    if framework == "xgboost":
        import xgboost as xgb

        dtrain = xgb.QuantileDMatrix(X_train, label=y_train, enable_categorical=True,
                                     max_bin=int(params.get("max_bin", 256)))
        dval = xgb.QuantileDMatrix(X_val, label=y_val, enable_categorical=True, ref=dtrain,
                                   max_bin=int(params.get("max_bin", 256)))
        booster = xgb.train(params, dtrain, num_boost_round=spec["rounds"], evals=[(dval, "validation")],
                            early_stopping_rounds=spec["early_stopping_rounds"], verbose_eval=False)
        best = booster.best_iteration + 1
    else:
        import lightgbm as lgb

        train = lgb.Dataset(X_train, label=y_train)
        valid = lgb.Dataset(X_val, label=y_val, reference=train)
        booster = lgb.train({**params, "verbose": -1}, train, num_boost_round=spec["rounds"], valid_sets=[valid],
                            callbacks=[lgb.early_stopping(spec["early_stopping_rounds"], verbose=False)])
        best = booster.best_iteration
    t2 = time.perf_counter()
    print(json.dumps({"rows_train": len(X_train), "rows_val": len(X_val), "rows_test": test,
                      "read_type_seconds": round(t1 - t0, 2), "train_seconds": round(t2 - t1, 2),
                      "seconds": round(t2 - t0, 2), "best_rounds": int(best), "table_mb": round(table_mb),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
