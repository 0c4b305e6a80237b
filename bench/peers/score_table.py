"""The hand-written scorer a user would write instead of `mlflow run -e predict` (bench/scoring_peer.py):
pyarrow read, pandas categoricals with the training categories, the library's native predict, a
pyarrow partitioned write. Same booster file, rows and partitioning as ours; the whole table in memory.

    python score_table.py MODEL_DIR TABLE OUT --keys ts,symbol --partition date,symbol

MODEL_DIR: the registered model's files (MLmodel + artifacts/booster.*). Prints one JSON line:
rows, seconds from the read to the written output, the booster already loaded (read, type, predict, write,
total), CPU seconds (all threads) and peak RSS (ru_maxrss).
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import yaml

# The partition values as strings, as ours reads them: inferred, "005930" would become the integer 5930.
HIVE = pads.partitioning(pa.schema([("date", pa.string()), ("symbol", pa.string())]), flavor="hive")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("table")
    parser.add_argument("out")
    parser.add_argument("--keys", default="ts,symbol")
    parser.add_argument("--partition", default="date,symbol")
    args = parser.parse_args()
    config = yaml.safe_load((args.model_dir / "MLmodel").read_text())["flavors"]["python_function"]["config"]
    features, categories = config["features"], config["categories"]
    classes, framework = config["class_names"], config["framework"]
    keys, partition = args.keys.split(","), args.partition.split(",")

    # The library imported and the booster loaded before the clock starts, as ours loads its model
    # before its scoring loop's clock (importing lightgbm alone takes 1-2 s here).
    if framework == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(args.model_dir / "artifacts" / "booster.ubj"))
    else:
        import lightgbm

        booster = lightgbm.Booster(model_file=str(args.model_dir / "artifacts" / "booster.txt"))

    t0, c0 = time.perf_counter(), time.process_time()
    table = pads.dataset(args.table, format="parquet", partitioning=HIVE).to_table(
        columns=list(dict.fromkeys([*keys, *partition, *features])))
    t1 = time.perf_counter()
    frame = table.select(features).to_pandas()
    for name, cats in categories.items():
        frame[name] = pd.Categorical(frame[name].astype("string"), categories=cats)
    for name in features:
        if name not in categories:
            frame[name] = frame[name].astype(np.float32)
    t2 = time.perf_counter()
    proba = booster.inplace_predict(frame) if framework == "xgboost" else booster.predict(frame)
    t3 = time.perf_counter()
    proba = np.asarray(proba).reshape(len(frame), -1)
    out = table.select(list(dict.fromkeys([*keys, *partition]))).append_column(
        "prediction", pa.array(np.asarray(classes, dtype=object)[proba.argmax(axis=1)], pa.string()))
    for i, name in enumerate(classes):
        out = out.append_column(f"proba_{name}", pa.array(proba[:, i]))
    pads.write_dataset(out, args.out, format="parquet", partitioning=partition, partitioning_flavor="hive",
                       existing_data_behavior="delete_matching")
    t4 = time.perf_counter()
    print(json.dumps({"rows": table.num_rows, "read_seconds": round(t1 - t0, 2), "type_seconds": round(t2 - t1, 2),
                      "predict_seconds": round(t3 - t2, 2), "write_seconds": round(t4 - t3, 2),
                      "seconds": round(t4 - t0, 2), "cpu_seconds": round(time.process_time() - c0, 2),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    sys.exit(main())
