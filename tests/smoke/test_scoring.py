"""Score with the champion: the real `mlflow run -e predict` after a real training run on the fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import helpers
import mlflow
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
from helpers import FIXTURE_DATA, MLFLOW, REPO, ProjectRun, all_runs

pytestmark = pytest.mark.smoke

DAY3 = "2026-01-03T00:00:00+00:00/2026-01-04T00:00:00+00:00"
DAY4 = "2026-01-04T00:00:00+00:00/2026-01-05T00:00:00+00:00"
META = ["model_name", "model_version", "model_run_id", "scoring_run_id", "scored_at"]


def mlflow_run(uri: str, project: str, *params: str, experiment: str = "scoring", **kw) -> ProjectRun:
    return helpers.mlflow_run(uri, project, *params, experiment=experiment, timeout=900, **kw)


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A LightGBM champion trained on the fixture tick table (data=ticks), in a store of this module."""
    import ticks as generator

    root = tmp_path_factory.mktemp("scoring")
    generator.write_parquet(generator.make(), root)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {"MLRECIPES_DATA_DIR": str(root)}
    trained = mlflow_run(uri, "lightgbm", "data=ticks", "num_boost_round=5", "overrides=gate.threshold=0.3",
                         experiment="tables", env=env, cwd=root)
    assert trained.returncode == 0, trained.stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    yield {"uri": uri, "root": root, "env": env, "run_id": trained.run.info.run_id}
    mlflow.set_tracking_uri(None)


def score(champion, *params, env=None) -> ProjectRun:
    return mlflow_run(champion["uri"], "lightgbm", "data=ticks", *params, entry="predict",
                      experiment="ticks-lightgbm-scoring", env={**champion["env"], **(env or {})}, cwd=champion["root"])


def read(path) -> pa.Table:
    return pads.dataset(str(path), format="parquet", partitioning="hive").to_table()


def day_rows(champion, day: str) -> int:
    table = read(champion["root"] / "ticks_parquet")
    return table.filter(pc.equal(table["date"], day)).num_rows


def snapshot(path) -> dict:
    """Every file under path with its bytes: 'unchanged' means exactly that."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_score_a_day_then_rescore_it_without_duplicates(champion):
    out = champion["root"] / "predictions" / "parquet"
    first = score(champion, f"output={out}", "keys=[ts,symbol]", f"window={DAY3}", "window_column=date")
    assert first.returncode == 0, first.stderr[-3000:]
    table = read(out)
    assert table.num_rows == day_rows(champion, "2026-01-03") > 0
    assert set(table.column_names) == {"ts", "symbol", "date", "prediction", "proba_down", "proba_flat", "proba_up",
                                       *META}
    assert set(pc.unique(table["date"]).to_pylist()) == {"2026-01-03"}
    assert set(pc.unique(table["prediction"]).to_pylist()) <= {"down", "flat", "up"}
    assert (out / "date=2026-01-03" / "symbol=005930").is_dir()  # partitioned like the input
    run = first.run
    assert run.info.status == "FINISHED"
    assert mlflow.get_experiment(run.info.experiment_id).name == "ticks-lightgbm-scoring"
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert p["model.name"] == "ticks-lightgbm" and p["model.version"] == "1"
    assert p["model.run_id"] == t["mlrecipes.model.run_id"] == champion["run_id"]
    assert p["output.uri"] == str(out) and p["output.format"] == "parquet"
    assert p["slice"] == "date >= '2026-01-03' and date < '2026-01-04'"
    assert m["rows_in"] == m["rows_out"] == table.num_rows
    assert m["scoring_seconds"] > 0 and m["rows_per_second"] > 0
    assert sum(m[f"predicted.{c}.rows"] for c in ("down", "flat", "up") if f"predicted.{c}.rows" in m) == table.num_rows
    assert 0 <= m["live_accuracy"] <= 1 and m["live_rows"] > 0  # the input still carries `direction`
    # data.report_by (the ticks group: symbol): the same per symbol, the rows and hits adding up.
    by = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/evaluation/by_symbol.json")
    by = [dict(zip(by["columns"], row, strict=True)) for row in by["data"]]
    typed = pads.partitioning(pa.schema([("date", pa.string()), ("symbol", pa.string())]), flavor="hive")
    symbols = pc.value_counts(pads.dataset(str(out), partitioning=typed).to_table()["symbol"]).to_pylist()
    assert {r["symbol"]: r["rows"] for r in by} == {c["values"]: c["counts"] for c in symbols}
    assert sum(r["live_accuracy"] * r["live_rows"] for r in by) == pytest.approx(m["live_accuracy"] * m["live_rows"])
    assert set(pc.unique(table["scoring_run_id"]).to_pylist()) == {run.info.run_id}
    assert set(pc.unique(table["model_run_id"]).to_pylist()) == {champion["run_id"]}

    again = score(champion, f"output={out}", "keys=[ts,symbol]", f"window={DAY3}", "window_column=date")
    assert again.returncode == 0, again.stderr[-3000:]
    other = score(champion, f"output={out}", "keys=[ts,symbol]", f"window={DAY4}", "window_column=date")
    assert other.returncode == 0, other.stderr[-3000:]
    table = read(out)
    day3 = table.filter(pc.equal(table["date"], "2026-01-03"))
    assert day3.num_rows == day_rows(champion, "2026-01-03")  # replaced, not duplicated
    assert set(pc.unique(day3["scoring_run_id"]).to_pylist()) == {again.run.info.run_id}
    assert table.num_rows == day_rows(champion, "2026-01-03") + day_rows(champion, "2026-01-04")
    assert not [p for p in out.parent.iterdir() if ".staging-" in p.name]


def test_delta_output_replaces_the_slice_in_one_transaction(champion):
    from deltalake import DeltaTable

    out = champion["root"] / "predictions" / "delta"
    for _ in range(2):
        result = score(champion, f"output={out}", "format=delta", "keys=[ts]", f"window={DAY3}",
                       "window_column=date")
        assert result.returncode == 0, result.stderr[-3000:]
    table = DeltaTable(str(out))
    assert table.version() == 1 and table.metadata().partition_columns == ["date", "symbol"]
    rows = table.to_pyarrow_table()
    assert rows.num_rows == day_rows(champion, "2026-01-03")
    assert set(pc.unique(rows["scoring_run_id"]).to_pylist()) == {result.run.info.run_id}
    assert result.run.data.params["output.format"] == "delta"
    appended = score(champion, f"output={out}", "format=delta", "mode=append", "keys=[ts]", f"window={DAY3}",
                     "window_column=date")
    assert appended.returncode == 0, appended.stderr[-3000:]
    assert DeltaTable(str(out)).to_pyarrow_table().num_rows == 2 * day_rows(champion, "2026-01-03")


def test_sigterm_mid_write_leaves_the_old_output(champion, tmp_path):
    """A bigger table in small batches, so the kill lands while batches are being written."""
    import psutil
    import ticks as generator

    big = generator.write_parquet(generator.make(rows=300_000), tmp_path)
    out = champion["root"] / "predictions" / "killed"
    done = score(champion, f"output={out}", "keys=[ts]", f"overrides=data.path={big}")
    # The same slice again, in batches of 100 rows: slow enough to be killed while writing.
    params = ["data=ticks", f"output={out}", "keys=[ts]", f"overrides=data.path={big} scoring.batch_size=100"]
    assert done.returncode == 0, done.stderr[-3000:]
    before = snapshot(out)
    assert before

    argv = [MLFLOW, "run", str(REPO / "projects" / "lightgbm"), "-e", "predict", "--env-manager", "virtualenv",
            "--experiment-name", "ticks-lightgbm-scoring"]
    for p in params:
        argv += ["-P", p]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=champion["root"],
                            env={**os.environ, **champion["env"], "MLFLOW_TRACKING_URI": champion["uri"]},
                            start_new_session=True)
    client = mlflow.MlflowClient(champion["uri"])
    try:
        deadline = time.monotonic() + 300
        scorer = None
        while True:  # the first scored batch is on its way to the staging directory
            scorer = scorer or next((p for p in psutil.Process(proc.pid).children(recursive=True)
                                     if p.name().startswith("python") and "mlrecipes.scoring" in p.cmdline()), None)
            runs = [r for r in all_runs(client) if r.info.status == "RUNNING" and "rows_scored" in r.data.metrics]
            if runs and scorer is not None:
                break
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.1)
        scorer.send_signal(signal.SIGTERM)  # python, not its shell: what a killed task's process gets
        out_text, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    run = client.get_run(runs[0].info.run_id)
    # The scorer closes its run KILLED; the `mlflow run` CLI then overwrites it with FAILED (MLflow
    # 3.17's _maybe_set_run_terminated compares the status string with RunStatus' integers). The
    # launcher (make run, Airflow) puts KILLED back; the exit status and reason are the scorer's own.
    assert run.info.status in ("KILLED", "FAILED"), out_text[-8000:]
    assert run.data.tags["mlrecipes.exit_code"] == "143"
    assert run.data.tags["mlrecipes.error"] == "terminated by a signal"
    assert "terminated; the output is unchanged" in out_text
    assert snapshot(out) == before  # the previous predictions, byte for byte
    assert read(out).num_rows == 300_000
    assert not [p for p in out.parent.iterdir() if ".staging-" in p.name]


def _renamed(tmp_path, renamed: dict[str, str]):
    """The fixture tick table with some symbols written differently (an upstream format change)."""
    import ticks as generator

    table = generator.make()
    symbols = pa.array([renamed.get(s, s) for s in table["symbol"].to_pylist()], pa.string())
    return generator.write_parquet(table.set_column(table.schema.get_field_index("symbol"), "symbol", symbols),
                                   tmp_path)


def test_categories_the_model_never_saw_are_counted_and_can_stop_the_write(champion, tmp_path):
    # One symbol without its leading zeros: its rows are scored with a symbol the model never saw.
    out = champion["root"] / "predictions" / "unseen"
    one = _renamed(tmp_path / "one", {"005930": "5930"})
    day3 = read(one).filter(pc.equal(pc.field("date"), "2026-01-03"))
    n = day3.filter(pc.equal(day3["symbol"], 5930)).num_rows  # read back with inferred types: 5930 is a number
    assert 0 < n < day3.num_rows
    result = score(champion, f"output={out}", f"window={DAY3}", "window_column=date",
                   f"overrides=data.path={one} scoring.max_unseen_fraction=0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.run.data.metrics
    assert m["rows_out"] == day3.num_rows
    assert m["unseen_rows"] == m["unseen.symbol.rows"] == n and m["unseen.venue.rows"] == 0
    assert m["unseen_fraction"] == pytest.approx(n / day3.num_rows)
    assert (f"warning: {n} of {day3.num_rows} rows ({n / day3.num_rows:.1%}) carry a category model ticks-lightgbm "
            f"version 1 never saw in training (symbol: '5930' x{n}), scored as a missing value") in result.stderr
    run_id = result.run.info.run_id
    unseen = mlflow.artifacts.load_dict(f"runs:/{run_id}/evaluation/unseen_categories.json")
    assert unseen["data"] == [["symbol", "5930", n]]
    by = mlflow.artifacts.load_dict(f"runs:/{run_id}/evaluation/by_symbol.json")
    by = {row[by["columns"].index("symbol")]: row[by["columns"].index("unseen_rows")] for row in by["data"]}
    assert by == {"000660": 0, "035420": 0, "051910": 0, "5930": n}

    # Every symbol so: more than scoring.max_unseen_fraction, and nothing is written.
    before = snapshot(out)
    every = _renamed(tmp_path / "every", {s: s.lstrip("0") for s in ("005930", "000660", "035420", "051910")})
    refused = score(champion, f"output={out}", f"window={DAY3}", "window_column=date",
                    f"overrides=data.path={every} scoring.max_unseen_fraction=0.5")
    assert refused.returncode != 0, refused.stderr[-3000:]
    assert refused.last_line.startswith(f"error: {day3.num_rows} of {day3.num_rows} rows (100.0%) carry a category")
    assert "more than scoring.max_unseen_fraction 0.5; the output is unchanged" in refused.last_line
    assert "Traceback" not in refused.stderr
    assert refused.run.info.status == "FAILED" and refused.run.data.tags["mlrecipes.exit_code"] == "2"
    assert snapshot(out) == before


def _missing_f3(tmp_path, champion):
    table = read(champion["root"] / "ticks_parquet")
    pads.write_dataset(table.drop_columns(["f3"]), tmp_path / "no_f3", format="parquet", partitioning=["date"],
                       partitioning_flavor="hive")
    text = table.set_column(table.schema.get_field_index("f0"), "f0", pc.cast(table["f0"], pa.string()))
    pads.write_dataset(text, tmp_path / "f0_text", format="parquet", partitioning=["date"], partitioning_flavor="hive")
    (tmp_path / "a_file").write_text("not a directory")


BAD = [
    ("no-alias", ["model=@staging"], "no version of ticks-lightgbm has alias staging (1 registered; the latest, "
     "version 1, promoted: "),
    ("no-such-model", ["model=models:/nope/3"], "model version nope/3 does not exist"),
    ("missing-column", ["overrides=data.path={tmp}/no_f3"], "input column 'f3' is missing from parquet"),
    ("not-writable", ["output={tmp}/a_file/predictions"], "is not writable"),
    ("unknown-mode", ["mode=upsert"], "unknown scoring.mode 'upsert'; valid: overwrite-slice, append, overwrite"),
    ("empty-slice", ["window=2026-02-01T00:00:00+00:00/2026-02-02T00:00:00+00:00", "window_column=date"],
     "the slice is empty"),
    ("unsafe-cast", ["overrides=data.path={tmp}/f0_text"], "input column 'f0' is string, the model needs double"),
    ("report-by", ["overrides=data.report_by=sector"], "data.report_by: no column 'sector' in parquet"),
]


@pytest.mark.parametrize(("params", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_fails_cleanly_and_leaves_the_output(champion, tmp_path, params, message):
    _missing_f3(tmp_path, champion)
    out = champion["root"] / "predictions" / "bad"
    if not out.exists():
        first = score(champion, f"output={out}", f"window={DAY3}", "window_column=date")
        assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(out)
    words = [w.format(tmp=tmp_path) for w in params]
    if not any(w.startswith("output=") for w in words):
        words.append(f"output={out}")
    result = score(champion, *words)
    assert result.returncode != 0
    assert message in result.last_line, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.run.info.status == "FAILED" and result.run.data.tags["mlrecipes.exit_code"] == "2"
    assert snapshot(out) == before


def test_no_champion_yet_is_one_line(tmp_path):
    """A store where nothing was trained: mnist-xgboost has no champion."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run(uri, "xgboost", f"output={tmp_path / 'out'}", entry="predict",
                        env={"MLRECIPES_DATA_DIR": str(FIXTURE_DATA)})
    assert result.returncode != 0
    assert result.last_line == ("error: no version of mnist-xgboost has alias champion; train it first "
                                "(see docs/troubleshooting.md#scoring-finds-no-champion)")
    assert result.run.info.status == "FAILED"
    assert not (tmp_path / "out").exists()
    # A version the gate rejected: the line says so, and how to promote or score it.
    env = {"MLRECIPES_DATA_DIR": str(FIXTURE_DATA)}
    trained = mlflow_run(uri, "xgboost", "num_boost_round=2", "overrides=gate.threshold=0.999", env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = mlflow_run(uri, "xgboost", f"output={tmp_path / 'out'}", entry="predict", env=env)
    assert result.returncode != 0 and result.run.info.status == "FAILED"
    assert result.last_line.startswith("error: no version of mnist-xgboost has alias champion (1 registered; "
                                       "the latest, version 1, rejected: test_accuracy "), result.last_line
    assert result.last_line.endswith("below the gate threshold 0.999); promote one with `mlrecipes promote "
                                     "mnist-xgboost 1` or score a version with "
                                     "-P model=1 (see docs/troubleshooting.md#scoring-finds-no-champion)")
    assert not (tmp_path / "out").exists()


def test_image_model_scores_idx_images(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLRECIPES_DATA_DIR": str(FIXTURE_DATA)}
    trained = mlflow_run(uri, "xgboost", "num_boost_round=5", "overrides=gate.threshold=0.3", experiment="mnist",
                         env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = tmp_path / "mnist_predictions"
    result = mlflow_run(uri, "xgboost", f"output={out}", entry="predict", env=env, experiment="mnist-xgboost-scoring",
                        cli=True)
    assert result.returncode == 0, result.stderr[-3000:]
    table = read(out)
    assert table.num_rows == 200  # the fixture's test images
    assert table.column_names[:3] == ["index", "label", "prediction"]
    assert [f"proba_{d}" for d in range(10)] == [c for c in table.column_names if c.startswith("proba_")]
    assert sorted(table["index"].to_pylist()) == list(range(200))
    m = result.run.data.metrics
    assert 0.3 < m["live_accuracy"] <= 1 and m["rows_out"] == 200
