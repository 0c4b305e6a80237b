"""The features benchmark: conf/features/ticks.yaml over a generated tick table, three ways.

    .venv/bin/python bench/features.py [--rows 5000000]

`polars`: mlrecipes.features (Polars lazy expressions, what the recipe runs); `duckdb`: the same
definition as DuckDB window SQL (ROWS frames, RANGE frames over the same tie-breaking clock);
`pandas`: the groupby / shift / rolling code a user would otherwise write for ticks.yaml. Each
starts from the same pyarrow Table (read from Parquet in bench/work/) and ends with the table and
its features in the input's row order, in a process of its own: seconds (compute only; the read is
reported apart), rows/s and the process's peak RSS. The three results are compared column by
column. Each engine runs --repeats times (DuckDB, minutes a run, --duckdb-repeats), interleaved, and
the results file holds the median of each and every run with the load average around it: the
machine's cores are shared, so the figures move with whoever else is running. Writes
bench/results/features.json; figures are written, never asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work"
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
ENGINES = ("polars", "duckdb", "pandas")


def definition():
    import yaml

    from mlrecipes.features import FeatureSet

    return FeatureSet.from_config(yaml.safe_load((REPO / "conf" / "features" / "ticks.yaml").read_text()), "ts")


def table_path(rows: int) -> Path:
    """The fixture's tick table (its price: a log-normal walk per symbol), written once per size."""
    path = WORK / f"features_fixture_{rows}.parquet"
    if path.exists():
        return path
    import ticks

    started = time.perf_counter()
    table = ticks.make(rows=rows, features=2)
    WORK.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=1 << 20)
    print(f"generated {rows} rows in {time.perf_counter() - started:.0f} s", flush=True)
    return path


# --------------------------------------------------------------------------- the three engines
def with_polars(table: pa.Table) -> pa.Table:
    return definition().compute(table)


def with_duckdb(table: pa.Table) -> pa.Table:
    import duckdb

    from mlrecipes.features.compute import stages
    from mlrecipes.features.expr import to_sql

    fs = definition()
    key, order = fs.key, fs.order
    con = duckdb.connect()
    con.register("ticks", table.append_column("__row", pa.array(np.arange(table.num_rows))))
    # the clock of compute.py: a tick's own instant among ticks of one timestamp
    ties = con.execute(f'SELECT max(c) FROM (SELECT count(*) c FROM ticks GROUP BY "{key}", "{order}")').fetchone()[0]
    ties = 1 << (ties - 1).bit_length()
    first = con.execute(f'SELECT epoch_us(min("{order}")) FROM ticks').fetchone()[0]
    parts = [f'base AS (SELECT *, (epoch_us("{order}") - {first}) * {2 * ties} + row_number() OVER '
             f'(PARTITION BY "{key}", "{order}" ORDER BY __row) - 1 AS __clock FROM ticks)']
    over = f'PARTITION BY "{key}" ORDER BY __clock'
    agg = {"mean": "avg", "std": "stddev_samp", "min": "min", "max": "max", "sum": "sum"}
    previous = "base"
    for depth, layer in enumerate(stages(fs.features)):
        columns = []
        for f in layer:
            x = f'CAST(nullif("{f.column}", \'NaN\'::DOUBLE) AS DOUBLE)' if f.column else None
            if f.op == "expr":
                sql = to_sql(f.tree)
            elif f.op == "time_of_day":
                sql = f'(epoch_us("{f.column}") % 86400000000) / 1e6'
            elif f.op == "day_of_week":
                sql = f'isodow("{f.column}") - 1'
            elif f.op in ("lag", "diff", "ratio", "log_return"):
                before = f"lag({x}, {f.n}) OVER ({over})"
                sql = {"lag": before, "diff": f"{x} - {before}", "ratio": f"{x} / {before}",
                       "log_return": f"ln({x} / {before})"}[f.op]
            else:
                if f.span is not None:
                    width = 2 * ties * (f.span.total_seconds() * 1_000_000) - ties
                    frame = f"RANGE BETWEEN {int(width) - 1} PRECEDING AND CURRENT ROW"
                else:
                    frame = f"ROWS BETWEEN {f.n - 1} PRECEDING AND CURRENT ROW"
                window = f"OVER ({over} {frame})"
                if f.op == "count":
                    sql = f"count(*) {window}"
                else:
                    sql = f"CASE WHEN count({x}) {window} >= {f.needed} THEN {agg[f.op]}({x}) {window} END"
            columns.append(f'CAST({sql} AS DOUBLE) AS "{f.name}"')
        parts.append(f"l{depth} AS (SELECT *, {', '.join(columns)} FROM {previous})")
        previous = f"l{depth}"
    query = f"WITH {', '.join(parts)} SELECT * EXCLUDE (__row, __clock) FROM {previous} ORDER BY __row"
    return con.execute(query).to_arrow_table()


def with_pandas(table: pa.Table):
    """What a pandas user writes for ticks.yaml."""
    df = table.to_pandas()
    df = df.sort_values(["symbol", "ts"], kind="stable")
    g = df.groupby("symbol", sort=False)
    for n in (1, 5, 20):
        df[f"ret_{n}"] = np.log(df["price"] / g["price"].shift(n))
    timed = df.set_index("ts").groupby("symbol", sort=False)
    df["vol_1m"] = timed["ret_1"].rolling("1min").std().to_numpy()
    df["ticks_1m"] = timed["price"].rolling("1min").count().to_numpy()
    df["high_5m"] = timed["price"].rolling("5min").max().to_numpy()
    df["low_5m"] = timed["price"].rolling("5min").min().to_numpy()
    df["range_pos_5m"] = (df["price"] - df["low_5m"]) / (df["high_5m"] - df["low_5m"])
    df["mean_ret_20"] = df.groupby("symbol", sort=False)["ret_1"].rolling(20).mean().to_numpy()
    df["ret_1_z"] = df["ret_1"] / df["vol_1m"]
    df["time_of_day"] = (df["ts"] - df["ts"].dt.normalize()).dt.total_seconds()
    df["day_of_week"] = df["ts"].dt.day_of_week.astype(float)
    return df.sort_index()


def worker(engine: str, rows: int) -> None:
    started = time.perf_counter()
    table = pq.read_table(table_path(rows))
    read = time.perf_counter() - started
    rss_read = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    __import__({"polars": "mlrecipes.features.compute"}.get(engine, engine))  # imports are not the work
    definition()
    started = time.perf_counter()
    out = {"polars": with_polars, "duckdb": with_duckdb, "pandas": with_pandas}[engine](table)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    names = definition().names
    columns = {n: (out[n].to_numpy() if engine == "pandas" else out.column(n).to_numpy(zero_copy_only=False))
               for n in names}
    pq.write_table(pa.table({n: pa.array(np.asarray(v, dtype=float)) for n, v in columns.items()}),
                   WORK / f"features_{engine}.parquet")
    print(json.dumps({"engine": engine, "rows": table.num_rows, "read_seconds": round(read, 2),
                      "seconds": round(seconds, 2), "rows_per_second": round(table.num_rows / seconds),
                      "peak_rss_mb": round(peak), "rss_after_read_mb": round(rss_read)}))


def agreement(names: list[str]) -> dict:
    """Per engine, the largest relative difference from Polars over every feature, and whether the
    missing values are the same."""
    ours = pq.read_table(WORK / "features_polars.parquet")
    out = {}
    for engine in ENGINES[1:]:
        path = WORK / f"features_{engine}.parquet"
        if not path.exists():
            continue
        other = pq.read_table(path)
        worst, same_missing = 0.0, True
        for n in names:
            a = ours.column(n).to_numpy(zero_copy_only=False).astype(float)
            b = other.column(n).to_numpy(zero_copy_only=False).astype(float)
            finite = np.isfinite(a) & np.isfinite(b)
            same_missing &= bool(np.array_equal(np.isnan(a), np.isnan(b)))
            scale = np.maximum(np.abs(a[finite]), 1e-12)
            worst = max(worst, float(np.max(np.abs(a[finite] - b[finite]) / scale, initial=0.0)))
        out[engine] = {"max_relative_difference": worst, "same_missing_values": same_missing}
    return out


def run_worker(engine: str, rows: int) -> dict:
    """One measurement in a process of its own, with the machine's load around it (the cores are shared)."""
    import os

    load = os.getloadavg()[0]
    done = subprocess.run([sys.executable, __file__, "--rows", str(rows), "--engine", engine],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return {"engine": engine, "error": done.stderr.strip().splitlines()[-1:]}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {**row, "load_average_before": round(load, 2), "load_average_after": round(os.getloadavg()[0], 2)}


def summary(runs: list[dict]) -> list[dict]:
    """Per engine, the median of its runs (seconds, rows/s, peak RSS) and how many there were."""
    out = []
    for engine in ENGINES:
        ok = [r for r in runs if r["engine"] == engine and "error" not in r]
        if not ok:
            out.extend(r for r in runs if r["engine"] == engine)
            continue
        median = {k: float(np.median([r[k] for r in ok])) for k in ("read_seconds", "seconds", "peak_rss_mb")}
        rows = ok[0]["rows"]
        out.append({"engine": engine, "runs": len(ok), "rows": rows, "read_seconds": round(median["read_seconds"], 2),
                    "seconds": round(median["seconds"], 2), "rows_per_second": round(rows / median["seconds"]),
                    "peak_rss_mb": round(median["peak_rss_mb"]), "seconds_each": [r["seconds"] for r in ok]})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of polars and pandas, interleaved")
    parser.add_argument("--duckdb-repeats", type=int, default=1, help="DuckDB takes minutes a run: in the first "
                        "round(s) only; 0 leaves it out")
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)  # a worker process
    args = parser.parse_args()
    if args.engine:
        worker(args.engine, args.rows)
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    from run import machine

    table_path(args.rows)
    fs = definition()
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "rows": args.rows,
               "features": fs.names, "lookback": str(fs.lookback()),
               "method": f"{args.repeats} interleaved rounds of polars and pandas (DuckDB in the first "
                         f"{args.duckdb_repeats}), each run a process of its own; engines: the median of the runs, "
                         "runs: every run with the load average around it"}
    runs = []
    for round_ in range(max(args.repeats, args.duckdb_repeats)):
        for engine in ENGINES:
            if round_ >= (args.duckdb_repeats if engine == "duckdb" else args.repeats):
                continue
            print(f"bench {engine} (round {round_ + 1}) ...", flush=True)
            runs.append({**run_worker(engine, args.rows), "round": round_ + 1})
            print(json.dumps(runs[-1]), flush=True)
    results["engines"] = summary(runs)
    results["runs"] = runs
    results["agreement_with_polars"] = agreement(fs.names)
    out = REPO / "bench" / "results" / "features.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
