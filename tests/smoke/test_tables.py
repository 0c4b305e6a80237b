"""Lakehouse tables through real MLflow Project runs of both GBDT projects, on the fixture tick table."""

import gzip
import hashlib
import struct

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from helpers import FIXTURE_DATA, registered_versions

LOW_GATE = "gate.threshold=0.3"
FEATURES = "data.exclude=[date,ts,next_return,up]"  # the other targets would leak the label; ts is no feature


def table_params(path, *overrides, data="parquet", target="direction"):
    return [f"data={data}", "num_boost_round=30",
            "overrides=" + " ".join([f"data.path={path}", f"data.target={target}", "data.name=ticks", *overrides])]


def model_config(name: str, run_id: str) -> dict:
    """The table model's config (features, categories, classes) of the version `run_id` registered."""
    version = next(v for v in mlflow.MlflowClient().search_model_versions(f"name='{name}'") if v.run_id == run_id)
    return mlflow.models.Model.load(f"models:/{name}/{version.version}").flavors["python_function"]["config"]


@pytest.mark.smoke
def test_parquet_directory_filter_time_split_categoricals(run_project, tracking_uri, ticks):
    result = run_project("xgboost", *table_params(
        ticks["parquet"], FEATURES, "data.split=time", "data.time_column=ts",
        "data.filters=[[date,ge,2026-01-03],[symbol,in,[005930,000660,035420]]]", "data.report_by=symbol", LOW_GATE),
        experiment="tables")
    assert result.returncode == 0, result.stderr[-3000:]
    run = result.run
    p, m = run.data.params, run.data.metrics
    t = ticks["table"]
    selected = t.filter(pc.and_(pc.greater_equal(t["date"], "2026-01-03"),
                                pc.is_in(t["symbol"], pa.array(["005930", "000660", "035420"]))))
    assert int(p["data.rows.read"]) == selected.num_rows
    assert int(p["data.rows.dropped_missing_target"]) == selected["direction"].null_count
    assert p["data.source.filter"] == "date >= '2026-01-03' and symbol in ['005930', '000660', '035420']"
    # No look-ahead: every training tick is older than every validation tick, and those than every test tick.
    assert p["data.split.train.time_max"] < p["data.split.validation.time_min"]
    assert p["data.split.validation.time_max"] < p["data.split.test.time_min"]
    assert p["data.split.train.time_min"] >= "2026-01-03"
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"ticks-train", "ticks-validation", "ticks-test"}
    assert m["test_accuracy"] > 0.5 and "val_accuracy" in m and "test_roc_auc" not in m
    # The bar it clears: always the most frequent training direction.
    assert 0.2 < m["test_baseline_accuracy"] < m["test_accuracy"] and m["test_baseline_log_loss"] > m["test_log_loss"]
    # data.report_by: the same metrics per symbol, over all the test rows.
    table = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/evaluation/by_symbol.json")
    by = pd.DataFrame(table["data"], columns=table["columns"])
    assert list(by["symbol"]) == ["000660", "005930", "035420"] and by["rows"].sum() == int(p["data.rows.test"])
    assert (by["rows"] * by["test_accuracy"]).sum() / by["rows"].sum() == pytest.approx(m["test_accuracy"])
    # Every symbol and venue of the test window traded in the training window too.
    assert m["test_unseen_rows"] == 0 and by["unseen_rows"].tolist() == [0, 0, 0]
    # symbol and venue are categoricals fixed by the training rows; gaps stayed missing values.
    config = model_config("ticks-xgboost", run.info.run_id)
    assert config["categories"]["symbol"] == ["000660", "005930", "035420"]
    assert config["categories"]["venue"] == ["KRX", "NXT"]
    assert config["class_names"] == ["down", "flat", "up"] and config["framework"] == "xgboost"
    assert registered_versions(tracking_uri, "ticks-xgboost")[0].run_id == run.info.run_id


@pytest.mark.smoke
def test_report_by_a_partition_that_is_no_feature(run_project, ticks):
    """data.report_by=date: the test metrics per trading day, though the features exclude the date."""
    result = run_project("lightgbm", *table_params(ticks["parquet"], FEATURES, "data.split=time", "data.time_column=ts",
                                                   "data.report_by=date"), experiment="tables")
    assert result.returncode == 0, result.stderr[-3000:]
    run = result.run
    p = run.data.params
    table = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/evaluation/by_date.json")
    by = pd.DataFrame(table["data"], columns=table["columns"])
    assert by["rows"].sum() == int(p["data.rows.test"])
    # The test split's days, as the partition names them, with each day's test rows.
    t = ticks["table"]
    t = t.filter(pc.is_valid(t["direction"]))
    test = t.filter(pc.and_(pc.greater_equal(t["ts"], pd.Timestamp(p["data.split.test.time_min"])),
                            pc.less_equal(t["ts"], pd.Timestamp(p["data.split.test.time_max"]))))
    days = test["date"].value_counts().to_pylist()
    assert dict(zip(by["date"], by["rows"], strict=True)) == {d["values"]: d["counts"] for d in days}
    assert list(by["date"]) == sorted(by["date"]) and by["date"].tolist()[-1] == "2026-01-06"
    assert {"test_accuracy", "test_baseline_accuracy"} <= set(by.columns)
    assert "date" not in model_config("ticks-lightgbm", run.info.run_id)["features"]  # read, never a feature


@pytest.mark.smoke
def test_a_rolling_window_through_the_mlproject_params(run_project, ticks):
    """What a scheduled retraining passes: Airflow's data interval, the column, and a length; the
    run trains on the 2 days before the interval's end."""
    by_time = "data.split=time data.time_column=ts"  # the latest ticks are the test set
    result = run_project("lightgbm", "data=parquet", "num_boost_round=10",
                         "window=2026-01-04T00:00:00+00:00/2026-01-05T00:00:00+00:00", "window_column=date",
                         "window_length=2d", f"overrides=data.path={ticks['parquet']} data.target=direction "
                         f"data.name=ticks_window {FEATURES} {by_time} {LOW_GATE}", experiment="tables")
    assert result.returncode == 0, result.stderr[-3000:]
    p = result.run.data.params
    t = ticks["table"]
    window = t.filter(pc.and_(pc.greater_equal(t["date"], "2026-01-03"), pc.less(t["date"], "2026-01-05")))
    assert int(p["data.rows.read"]) == window.num_rows
    assert p["data.source.filter"] == "date >= '2026-01-03' and date < '2026-01-05'"
    assert p["window.length"] == "2d" and p["window.column"] == "date"
    # Two days later: test rows later than any the champion trained on. The gate re-scores the
    # champion on them before comparing.
    later = run_project("lightgbm", "data=parquet", "num_boost_round=10",
                        "window=2026-01-06T00:00:00+00:00/2026-01-07T00:00:00+00:00", "window_column=date",
                        "window_length=2d", f"overrides=data.path={ticks['parquet']} data.target=direction "
                        f"data.name=ticks_window {FEATURES} {by_time}", experiment="tables")
    assert later.returncode == 0, later.stderr[-3000:]
    reason = later.run.data.tags["gate.reason"]
    assert "version 1 re-scored on this run's test rows; its own run logged" in reason, reason


@pytest.mark.smoke
def test_delta_version_binary_target_logs_auc(run_project, tracking_uri, ticks):
    result = run_project("lightgbm", *table_params(
        ticks["delta"], "data.version=0", "data.exclude=[date,ts,next_return,direction]", LOW_GATE,
        data="delta", target="up"), experiment="tables")
    assert result.returncode == 0, result.stderr[-3000:]
    run = result.run
    assert run.data.params["data.source.version"] == "0"
    t = ticks["table"]
    assert int(run.data.params["data.rows.read"]) == t.filter(pc.less(t["date"], "2026-01-06")).num_rows
    m = run.data.metrics
    assert 0.5 < m["test_roc_auc"] <= 1 and 0 < m["test_pr_auc"] <= 1
    client = mlflow.MlflowClient()
    files = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/roc_curve.png" in files
    tags = {i.dataset.name: {t.key: t.value for t in i.tags} for i in run.inputs.dataset_inputs}
    assert tags["ticks-train"]["version"] == "0" and tags["ticks-train"]["uri"] == str(ticks["delta"])


@pytest.mark.smoke
def test_table_over_s3_keeps_credentials_out(run_project, tracking_uri, s3):
    result = run_project("lightgbm", *table_params("s3://lake/ticks_parquet", FEATURES,
                                                   "data.filters=[[symbol,ne,051910]]", LOW_GATE),
                         experiment="tables", env=s3["env"])
    assert result.returncode == 0, result.stderr[-3000:]
    run = result.run
    assert run.data.params["data.source.uri"] == "s3://lake/ticks_parquet"
    secret = s3["env"]["AWS_SECRET_ACCESS_KEY"]
    config = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config.yaml")
    for text in (str(run.data.params), str(run.data.tags), config, result.stdout, result.stderr):
        assert secret not in text


@pytest.mark.smoke
def test_regression_with_the_gate_direction(run_project, tracking_uri, ticks):
    params = table_params(ticks["parquet"], "task=regression", "data.exclude=[date,ts,direction,up]",
                          target="next_return")
    first = run_project("xgboost", *params, experiment="tables")
    assert first.returncode == 0, first.stderr[-3000:]
    m = first.run.data.metrics
    assert m["test_rmse"] > 0 and m["test_mae"] > 0 and m["test_r2"] > 0.3 and "test_accuracy" not in m
    assert m["test_rmse"] < m["test_baseline_rmse"] and m["test_mae"] < m["test_baseline_mae"]  # the training mean
    assert f"test_rmse {m['test_rmse']:.4f} (baseline {m['test_baseline_rmse']:.4f})" in first.stdout
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(first.run.info.run_id, "evaluation")}
    assert {"evaluation/predicted_vs_actual.png", "evaluation/residuals.png"} <= files
    # A worse model (higher RMSE) is registered but does not take the alias: lower is better.
    worse = run_project("xgboost", *params[:1], "num_boost_round=1", "early_stopping_rounds=1",
                        params[2] + " model.params.learning_rate=0.01", experiment="tables")
    assert worse.returncode == 0, worse.stderr[-3000:]
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias("ticks-xgboost", "champion").run_id == first.run.info.run_id
    tags = client.get_run(worse.run.info.run_id).data.tags
    assert tags["gate.decision"] == "rejected" and "test_rmse" in tags["gate.reason"]


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.mark.smoke
def test_an_idx_image_set_other_than_mnist(run_project, tracking_uri, tmp_path):
    """A 3-class IDX set of its own name, files and checksums (digits 0-2 of the MNIST fixture, relabelled)."""
    from mlrecipes.data import read_idx

    root = tmp_path / "data" / "digits3"
    root.mkdir(parents=True)
    overrides = ["data.name=digits3", "data.class_names=[zero,one,two]", "data.download=false", LOW_GATE]
    for prefix, split in (("train", "train"), ("test", "t10k")):
        images = read_idx(FIXTURE_DATA / "mnist" / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(FIXTURE_DATA / "mnist" / f"{split}-labels-idx1-ubyte.gz")
        keep = labels < 3
        for kind, array in (("images", images[keep]), ("labels", labels[keep])):
            raw = idx_bytes(np.ascontiguousarray(array))
            (root / f"d3-{prefix}-{kind}.gz").write_bytes(gzip.compress(raw))
            overrides += [f"data.files.{prefix}_{kind}.name=d3-{prefix}-{kind}",
                          f"data.files.{prefix}_{kind}.items=null",
                          f"data.files.{prefix}_{kind}.sha256={hashlib.sha256(raw).hexdigest()}"]
    result = run_project("xgboost", "data=mnist", "num_boost_round=20", "overrides=" + " ".join(overrides),
                         env={"MLRECIPES_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.run.data.metrics["test_accuracy"] > 0.8
    assert registered_versions(tracking_uri, "digits3-xgboost")
    report = mlflow.artifacts.load_dict(f"runs:/{result.run.info.run_id}/evaluation/per_class_report.json")
    assert {"zero", "one", "two"} <= set(report)


# End to end, one error of each stage (the reader's filter, the split, Delta time travel): that a
# user error ends the real run FAILED with exit 2 and one line, registering nothing. Every other
# message (unknown columns, empty targets, non-numeric targets, incompatible files, raw
# timestamps, S3 failures) is asserted in-process by tests/unit/test_table_reader.py.
BAD = [
    ("filters", [FEATURES, "data.filters=[[bid,gt,1]]"], "data.filters: unknown column 'bid'"),
    ("time-split-empty", [FEATURES, "data.split=time", "data.time_column=date", "data.test_fraction=0.9"],
     "time split on 'date' leaves train empty"),
    ("delta-version", ["data=delta", "data.path={delta}", "data.version=9", FEATURES], "has no version 9"),
    ("report-by", [FEATURES, "data.report_by=sector"], "data.report_by: unknown column(s) sector; columns: ts, "),
]


@pytest.mark.smoke
@pytest.mark.parametrize(("overrides", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_table_input_fails_cleanly(run_project, tracking_uri, ticks, overrides, message):
    group = next((o for o in overrides if o.startswith("data=")), "data=parquet")  # an -P parameter
    words = [f"data.path={ticks['parquet']}", "data.target=direction", "data.name=ticks",
             *(o.format(delta=ticks["delta"]) for o in overrides if not o.startswith("data="))]
    result = run_project("lightgbm", group, "overrides=" + " ".join(words), experiment="tables")
    assert result.returncode != 0 and result.run.data.tags["mlrecipes.exit_code"] == "2"
    assert message in result.last_line, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.run.info.status == "FAILED"
    assert mlflow.MlflowClient().search_registered_models() == []


@pytest.mark.smoke
@pytest.mark.parametrize("case", ["wrong-secret", "dead-endpoint"])
def test_s3_failures_are_one_line_and_bounded(run_project, tracking_uri, s3, case):
    import socket

    env = dict(s3["env"])
    if case == "wrong-secret":
        env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = run_project("xgboost", *table_params("s3://lake/ticks_parquet", FEATURES), experiment="tables",
                         env=env, timeout=120)
    assert result.returncode != 0 and result.run.data.tags["mlrecipes.exit_code"] == "2"
    assert "cannot read s3://lake/ticks_parquet" in result.last_line, result.stderr[-2000:]
    assert result.run.info.status == "FAILED"
    assert "wrong" not in str(result.run.data.params)
