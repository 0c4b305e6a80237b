"""Scoring on a LocalCluster of 2 workers (`-e predict -P compute=dask`): the same output and run metrics
as one process, one Delta commit per run, and a worker killed mid scoring leaves the output complete
or untouched.

A champion is trained in one process (seconds); each scoring run is the predict entry point's own
`scoring.run.run`, on the session's cluster."""

import os
import signal
import threading
import time

import mlflow
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
from helpers import REPO, borrowed, workers_of
from pyarrow.fs import FileSelector

pytest.importorskip("distributed")

from distributed import get_task_stream  # noqa: E402

from mlrecipes.compute import score, steps  # noqa: E402

DAY3 = "2026-01-03T00:00:00+00:00/2026-01-04T00:00:00+00:00"
META = ["scoring_run_id", "scored_at"]  # differ from run to run
RUN_METRICS = ("rows_in", "rows_out", "unseen_rows", "unseen.symbol.rows", "live_accuracy", "live_rows",
               "predicted.down.rows", "predicted.flat.rows", "predicted.up.rows")


def champion(project: str, path) -> None:
    """Trains `project` in one process on the tick table and makes it ticks-<project>@champion."""
    pytest.importorskip(project)
    import importlib.util

    from mlrecipes import config, recipe

    spec = importlib.util.spec_from_file_location(f"train_{project}", REPO / "projects" / project / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = config.compose(REPO / "projects" / project, ["data=ticks", "features=none", f"data.path={path}",
                                                      "model.num_boost_round=20", "gate.threshold=0",
                                                      "gate.beat_baseline=false"])
    with mlflow.start_run():
        assert recipe.steps(cfg, module.fit).registered is not None
    assert mlflow.MlflowClient().get_model_version_by_alias(f"ticks-{project}", "champion")


def scored(project: str, path, out, *argv: str, compute: str = "dask") -> tuple[int, mlflow.entities.Run]:
    """One scoring run of the predict entry point: (exit code, its run)."""
    from mlrecipes.scoring import run

    before = {r.info.run_id for r in mlflow.search_runs(search_all_experiments=True, output_format="list")}
    code = run.run(REPO / "projects" / project, ["data=ticks", f"data.path={path}", f"scoring.output={out}",
                                                 "scoring.keys=[ts,symbol]", f"compute={compute}", *argv])
    runs = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
            if r.info.run_id not in before]
    assert len(runs) == 1
    return code, runs[0]


def read(path) -> pa.Table:
    typed = pads.partitioning(pa.schema([("date", pa.string()), ("symbol", pa.string())]), flavor="hive")
    return pads.dataset(str(path), format="parquet", partitioning=typed).to_table()


def rows(table: pa.Table) -> pa.Table:
    """The rows without the per-run columns, in one order."""
    kept = table.drop_columns([c for c in META if c in table.column_names])
    return kept.sort_by([(c, "ascending") for c in ("ts", "symbol", "proba_up")]).select(sorted(kept.column_names))


def directories(path) -> set[str]:
    return {str(p.parent.relative_to(path)) for p in path.rglob("*.parquet")}


def snapshot(path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def on_session_cluster(dask_client, monkeypatch):
    client, _ = dask_client
    monkeypatch.setattr(score.cluster, "client", lambda cfg: borrowed(client))
    return client


@pytest.mark.parametrize("project", ["xgboost", "lightgbm"])
def test_the_cluster_writes_what_one_process_writes_with_the_same_run_metrics(
        project, tracking_uri, ticks, tmp_path, on_session_cluster):
    import ticks as generator

    champion(project, ticks["parquet"])
    # A day whose symbol 005930 arrives as 5930 (an upstream format change): categories the model never saw.
    table = ticks["table"]
    renamed = pc.if_else(pc.and_(pc.equal(table["date"], "2026-01-03"), pc.equal(table["symbol"], "005930")),
                         "5930", table["symbol"])
    source = generator.write_parquet(table.set_column(table.schema.get_field_index("symbol"), "symbol", renamed),
                                     tmp_path)
    window = [f"window.interval={DAY3}", "window.column=date"]
    code, one = scored(project, source, tmp_path / "one", *window, compute="local")
    assert code == 0
    with get_task_stream(on_session_cluster) as stream:
        code, on = scored(project, source, tmp_path / "dask", *window)
    assert code == 0 and on.info.status == "FINISHED"
    assert workers_of(stream, score.TASK) == set(on_session_cluster.scheduler_info()["workers"])  # both scored
    expected, got = read(tmp_path / "one"), read(tmp_path / "dask")
    assert got.num_rows == expected.num_rows > 0
    assert rows(got).equals(rows(expected))  # the same rows, predictions and probabilities
    assert directories(tmp_path / "dask") == directories(tmp_path / "one")  # partitioned alike
    assert set(pc.unique(got["scoring_run_id"]).to_pylist()) == {on.info.run_id}
    m, m1 = on.data.metrics, one.data.metrics
    assert m["unseen_rows"] > 0 and m["rows_in"] == got.num_rows
    assert {k: m.get(k) for k in RUN_METRICS} == {k: m1.get(k) for k in RUN_METRICS}
    assert on.data.params["compute.n_workers"] == "2" and on.data.params["output.format"] == "parquet"
    by = [mlflow.artifacts.load_dict(f"runs:/{r.info.run_id}/evaluation/by_symbol.json") for r in (on, one)]
    assert by[0] == by[1]

    # A rerun replaces the slice: the same rows, none twice.
    code, again = scored(project, source, tmp_path / "dask", *window)
    assert code == 0
    got = read(tmp_path / "dask")
    assert rows(got).equals(rows(expected))
    assert set(pc.unique(got["scoring_run_id"]).to_pylist()) == {again.info.run_id}
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


def test_delta_output_is_one_commit_per_run_and_a_rerun_replaces_the_slice(tracking_uri, ticks, tmp_path,
                                                                         on_session_cluster):
    from deltalake import DeltaTable

    champion("xgboost", ticks["parquet"])
    out = tmp_path / "predictions"
    delta = ["data.kind=delta", f"window.interval={DAY3}", "window.column=date", "scoring.format=delta"]
    day = ticks["table"].filter(pc.equal(ticks["table"]["date"], "2026-01-03")).num_rows
    for version in (0, 1):
        code, run = scored("xgboost", ticks["delta"], out, *delta)
        assert code == 0 and run.info.status == "FINISHED"
        table = DeltaTable(str(out))
        assert table.version() == version  # one commit per run
        written = table.to_pyarrow_table()
        assert written.num_rows == day == run.data.metrics["rows_in"]  # replaced, never duplicated
        assert set(pc.unique(written["scoring_run_id"]).to_pylist()) == {run.info.run_id}
    code, one = scored("xgboost", ticks["delta"], tmp_path / "one", *delta, compute="local")
    assert code == 0
    assert rows(DeltaTable(str(tmp_path / "one")).to_pyarrow_table()).equals(rows(written))



def test_s3_in_and_out_the_workers_stage_on_s3_and_write_what_one_process_writes(
        tracking_uri, ticks, s3, tmp_path, on_session_cluster, monkeypatch):
    from mlrecipes.data import tables

    for name, value in s3["env"].items():  # the driver's; the workers get the filesystem it opens, keys included
        monkeypatch.setenv(name, value)
    champion("xgboost", ticks["parquet"])
    window = [f"window.interval={DAY3}", "window.column=date"]
    written = {}
    for compute in ("local", "dask"):
        out = f"s3://lake/predictions/{compute}"
        code, run = scored("xgboost", "s3://lake/ticks_parquet", out, *window, compute=compute)
        assert code == 0 and run.data.params["data.source.uri"] == "s3://lake/ticks_parquet"
        filesystem, path = tables.filesystem_for(out, {})
        typed = pads.partitioning(pa.schema([("date", pa.string()), ("symbol", pa.string())]), flavor="hive")
        written[compute] = pads.dataset(path, filesystem=filesystem, format="parquet", partitioning=typed).to_table()
        staged = filesystem.get_file_info(FileSelector("lake/predictions", recursive=False))
        assert not [i.path for i in staged if ".staging-" in i.path]
    assert written["dask"].num_rows > 0 and rows(written["dask"]).equals(rows(written["local"]))

def test_a_worker_killed_mid_scoring_leaves_the_output_complete_or_untouched(tracking_uri, ticks, tmp_path,
                                                                             on_session_cluster, monkeypatch):
    client = on_session_cluster
    champion("xgboost", ticks["parquet"])
    out = tmp_path / "predictions"
    code, _ = scored("xgboost", ticks["parquet"], out, compute="local")
    assert code == 0
    before, expected = snapshot(out), rows(read(out))
    real = score.score_piece

    def slowly(*args):  # 20 files at 0.5 s each: the kill lands mid scoring (sent by value to the workers)
        time.sleep(0.5)
        return real(*args)

    pids = client.run(os.getpid)
    write = score.write

    def killing(*args):  # a worker killed 1.5 s into scoring (the workers checked, the model sent)
        threading.Timer(1.5, os.kill, (pids[sorted(pids)[-1]], signal.SIGKILL)).start()
        return write(*args)

    monkeypatch.setattr(score, "score_piece", slowly)
    monkeypatch.setattr(score, "write", killing)
    started = time.monotonic()
    code, run = scored("xgboost", ticks["parquet"], out)
    assert time.monotonic() - started < 120
    assert run.info.status in ("FINISHED", "FAILED")  # never left RUNNING
    if code == 0:  # Dask ran the lost worker's tasks again: the whole output
        assert rows(read(out)).equals(expected)
        assert set(pc.unique(read(out)["scoring_run_id"]).to_pylist()) == {run.info.run_id}
    else:  # the run failed for the lost worker: the output as it was, byte for byte
        assert code == steps.EXIT_RETRY and run.info.status == "FAILED"
        assert snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
    client.wait_for_workers(1, timeout=120)  # the next tests run on whatever workers are up


def test_a_refusal_on_the_cluster_is_one_line_writes_nothing_and_leaves_no_run_running(
        tracking_uri, ticks, tmp_path, on_session_cluster, capsys):
    import ticks as generator

    champion("xgboost", ticks["parquet"])
    out, window = tmp_path / "predictions", [f"window.interval={DAY3}", "window.column=date"]
    assert scored("xgboost", ticks["parquet"], out, *window, compute="local")[0] == 0
    before = snapshot(out)
    table = ticks["table"]  # every symbol arrives in another format: all of the slice's rows unseen
    source = generator.write_parquet(table.set_column(table.schema.get_field_index("symbol"), "symbol",
                                                      pc.binary_join_element_wise("x", table["symbol"], "")),
                                     tmp_path)
    capsys.readouterr()
    empty_day = ["data.kind=delta", "window.interval=2027-01-01/2027-01-02", "window.column=date",
                 "scoring.format=delta"]
    refusals = [(source, out, [*window, "scoring.max_unseen_fraction=0.5"], "more than scoring.max_unseen_fraction"),
                (ticks["delta"], tmp_path / "delta", empty_day, "no rows to score")]
    for path, output, argv, said in refusals:
        code, run = scored("xgboost", path, output, *argv)
        assert code == 2 and run.info.status == "FAILED"
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and said in lines[0] and "the output is unchanged" in lines[0], lines
    assert snapshot(out) == before and not (tmp_path / "delta").exists()
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
