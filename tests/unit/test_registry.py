"""The champion gate, promote / rollback / history, against a real SQLite registry."""

import json

import mlflow
import numpy as np
import pytest
from omegaconf import OmegaConf

from mlrecipes import cli as mlrecipes_cli
from mlrecipes import data, evaluate, registry
from mlrecipes.errors import UserError

GATE = OmegaConf.create({"metric": "test_accuracy", "direction": "maximize", "threshold": 0.9,
                         "alias": "champion", "promote": True})
RMSE_GATE = OmegaConf.merge(GATE, {"metric": "test_rmse", "direction": "minimize", "threshold": 0.5})


@pytest.mark.parametrize(
    ("candidate", "champion", "promote"),
    [(0.95, None, True), (0.85, None, False), (0.95, 0.96, False), (0.96, 0.96, True), (0.97, 0.96, True),
     (float("nan"), None, False)],
)
def test_decide_maximize(candidate, champion, promote):
    ok, reason = registry.decide(candidate, registry.Gate.of(GATE), champion)
    assert ok is promote and reason


@pytest.mark.parametrize(
    ("candidate", "champion", "promote", "words"),
    [(0.42, None, True, "test_rmse 0.42 reaches the threshold 0.5; no champion yet"),
     (0.6, None, False, "test_rmse 0.6 above the gate threshold 0.5"),
     (0.42, 0.40, False, "test_rmse 0.42 worse than the champion's 0.4"),
     (0.38, 0.40, True, "not worse than the champion's 0.4")],
)
def test_decide_minimize_reads_naturally(candidate, champion, promote, words):
    ok, reason = registry.decide(candidate, registry.Gate.of(RMSE_GATE), champion)
    assert ok is promote and words in reason


def test_no_threshold_only_compares_with_the_champion():
    gate = registry.Gate.of(OmegaConf.merge(RMSE_GATE, {"threshold": None}))  # conf/task/regression.yaml
    assert registry.decide(1e6, gate, None) == (True, "test_rmse 1e+06 with no threshold set; no champion yet")
    ok, reason = registry.decide(0.5, gate, 0.4)
    assert not ok and "worse than the champion's 0.4" in reason
    assert registry.decide(0.3, gate, 0.4) == (True, "test_rmse 0.3 is not worse than the champion's 0.4")


def test_reason_shows_enough_digits_to_tell_close_scores_apart():
    _, reason = registry.decide(0.97651, registry.Gate.of(GATE), 0.97654)
    assert "0.97651 worse than the champion's 0.97654" in reason


@pytest.mark.parametrize(("change", "words"), [({"direction": "up"}, "gate.direction must be maximize or minimize"),
                                               ({"threshold": "high"}, "gate.threshold must be a number"),
                                               ({"promote": "maybe"}, "gate.promote must be true or false")])
def test_bad_gate_config_is_a_user_error(change, words):
    with pytest.raises(UserError, match=words):
        registry.Gate.of(OmegaConf.merge(GATE, change))


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def candidate(metrics: dict) -> tuple[str, str]:
    with mlflow.start_run() as run:
        mlflow.log_metrics(metrics)
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    return info.model_uri, run.info.run_id


def gated(name: str, metrics: dict, gate=GATE) -> dict:
    uri, run_id = candidate(metrics)
    return registry.register_and_gate(uri, name, run_id, metrics, gate)


def champion(name: str) -> str | None:
    found = registry.holder(mlflow.MlflowClient(), name, "champion")
    return str(found.version) if found else None


def test_gate_moves_champion_only_past_the_gate(tracking_uri):
    client = mlflow.MlflowClient()
    steps = [(0.85, False, None), (0.93, True, "2"), (0.91, False, "2"), (0.95, True, "4")]
    for accuracy, promoted, champion_version in steps:
        uri, run_id = candidate({"test_accuracy": accuracy, "test_macro_f1": 0.5})
        result = registry.register_and_gate(uri, "demo", run_id, {"test_accuracy": accuracy}, GATE)
        assert result["promoted"] is promoted
        version = client.get_model_version("demo", result["version"])
        assert version.tags["gate.decision"] == ("promoted" if promoted else "rejected")
        assert version.tags["gate.metric"] == "test_accuracy" and version.tags["gate.direction"] == "maximize"
        assert client.get_run(run_id).data.tags["gate.reason"] == result["reason"]
        assert champion("demo") == champion_version
    assert len(client.search_model_versions("name='demo'")) == 4
    assert "worse than the champion" in client.get_model_version("demo", "3").tags["gate.reason"]
    assert "below the gate threshold" in client.get_model_version("demo", "1").tags["gate.reason"]
    # The gate's own moves are in the audit trail.
    moves = registry.history(client, "demo")
    assert [(m["version"], m["from"], m["action"]) for m in moves] == [("4", "2", "gate"), ("2", None, "gate")]


def test_gate_direction_minimize(tracking_uri):
    assert gated("reg", {"test_rmse": 0.42}, RMSE_GATE)["promoted"]
    rejected = gated("reg", {"test_rmse": 0.44}, RMSE_GATE)
    assert not rejected["promoted"] and rejected["reason"] == "test_rmse 0.44 worse than the champion's 0.42"
    assert not gated("reg", {"test_rmse": 0.7}, RMSE_GATE)["promoted"]
    assert gated("reg", {"test_rmse": 0.40}, RMSE_GATE)["promoted"]
    assert champion("reg") == "4"


def test_gate_metric_missing_is_a_user_error_before_registering(tracking_uri):
    uri, run_id = candidate({"test_accuracy": 0.95})
    with pytest.raises(UserError, match=r"gate metric 'test_rmse' is not among this run's metrics \(test_accuracy\)"):
        registry.register_and_gate(uri, "nothing", run_id, {"test_accuracy": 0.95}, RMSE_GATE)
    assert mlflow.MlflowClient().search_registered_models() == []


def test_promote_false_registers_but_never_moves_the_alias(tracking_uri):
    gated("dry", {"test_accuracy": 0.91})
    result = gated("dry", {"test_accuracy": 0.99}, OmegaConf.merge(GATE, {"promote": False}))
    version = mlflow.MlflowClient().get_model_version("dry", result["version"])
    assert version.tags["gate.decision"] == "not promoted (promote=false)"
    assert version.tags["gate.passed"] == "true" and "would have promoted" in version.tags["gate.reason"]
    assert champion("dry") == "1" and not result["promoted"]


def test_the_gate_records_the_airflow_task_its_caller_hands_it(tracking_uri, monkeypatch):
    """The audit record names the DAG run from the `context` tags; Airflow's environment is not read."""
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "from_env")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "env_run")
    uri, run_id = candidate({"test_accuracy": 0.95})
    registry.register_and_gate(uri, "ctx", run_id, {"test_accuracy": 0.95}, GATE)
    uri, run_id = candidate({"test_accuracy": 0.96})
    registry.register_and_gate(uri, "ctx", run_id, {"test_accuracy": 0.96}, GATE,
                               context={"airflow.dag_id": "train_xgb", "airflow.dag_run_id": "manual__1"})
    second, first = (m["command"] for m in registry.history(mlflow.MlflowClient(), "ctx"))
    assert second == f"gate of run {run_id} (Airflow train_xgb manual__1)"
    assert first.startswith("gate of run ") and "Airflow" not in first


# ------------------------------------------------------------------ the CLI


def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()  # what came before: not the command's
    code = mlrecipes_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def three(tracking_uri):
    """Model `m`: v1 champion, v2 champion (from v1), v3 rejected (below the threshold)."""
    for accuracy in (0.91, 0.93, 0.80):
        gated("m", {"test_accuracy": accuracy})
    assert champion("m") == "2"
    return "m"


def test_promote_through_the_gate(three, capsys):
    gated("m", {"test_accuracy": 0.95}, OmegaConf.merge(GATE, {"promote": False}))  # v4: passes, not promoted
    code, out, err = cli(capsys, "promote", "m", "4")
    assert code == 0 and err == "" and champion("m") == "4"
    assert "@champion -> version 4 (from version 2)" in out
    (record,) = [json.loads(v) for k, v in mlflow.MlflowClient().get_model_version("m", "4").tags.items()
                 if k.startswith("audit.champion.")]
    assert record["action"] == "promote" and record["from"] == "2" and not record["forced"]
    assert record["by"] and record["at"].endswith("Z") and "T" in record["at"]
    assert record["command"] == "mlrecipes promote m 4"
    assert "test_accuracy 0.95 reaches the threshold 0.9" in record["reason"]


def test_promote_waits_for_a_gate_holding_the_registry_lock(three, tracking_uri):
    import threading

    from mlrecipes.store import store_lock

    gated("m", {"test_accuracy": 0.95}, OmegaConf.merge(GATE, {"promote": False}))  # v4
    done = threading.Event()
    with store_lock(tracking_uri, "registry"):  # what register_and_gate holds while it decides
        worker = threading.Thread(target=lambda: (registry.promote(mlflow.MlflowClient(), "m", "4"), done.set()))
        worker.start()
        assert not done.wait(1.0) and champion("m") == "2"  # blocked: the alias has not moved
    worker.join(30)
    assert done.is_set() and champion("m") == "4"


def test_promote_refused_by_the_gate_leaves_the_alias(three, capsys):
    code, out, err = cli(capsys, "promote", "m", "3")
    assert code == 2 and champion("m") == "2"
    assert err.count("\n") == 1 and err.startswith("error: the gate refuses m version 3: test_accuracy 0.8 below")
    code, out, err = cli(capsys, "promote", "m", "1")  # passes the threshold, worse than the champion
    assert code == 2 and "worse than the champion's 0.93" in err and champion("m") == "2"


def test_promote_forced_with_a_reason(three, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    code, out, err = cli(capsys, "promote", "m", "3", "--force", "--reason", "hotfix for ticket 42")
    assert code == 0 and champion("m") == "3"
    (record,) = registry.history(mlflow.MlflowClient(), "m")[:1]
    assert record["forced"] and record["reason"] == "hotfix for ticket 42" and record["mlflow_user"] == "alice"
    assert record["command"].endswith("promote m 3 --force --reason 'hotfix for ticket 42'")


def test_rollback_to_the_previous_champion_and_further(three, capsys):
    gated("m", {"test_accuracy": 0.95})  # v4 champion, from v2
    code, out, err = cli(capsys, "rollback", "m", "--reason", "v4 misbehaves in production")
    assert code == 0 and champion("m") == "2", err
    code, out, err = cli(capsys, "rollback", "m")  # a second rollback goes one further back
    assert code == 0 and champion("m") == "1", err
    code, out, err = cli(capsys, "rollback", "m")
    assert code == 2 and err == "error: m has no previous champion to roll back to (@champion is version 1); " \
                                "--to VERSION picks one\n"
    assert champion("m") == "1"


def test_rollback_to_a_given_version(three, capsys):
    gated("m", {"test_accuracy": 0.95})
    code, out, err = cli(capsys, "rollback", "m", "--to", "1")
    assert code == 0 and champion("m") == "1"
    record = registry.history(mlflow.MlflowClient(), "m")[0]
    assert (record["action"], record["version"], record["from"]) == ("rollback", "1", "4")
    assert record["reason"] == "rolled back from version 4"


def test_history_lists_every_move_newest_first(three, capsys):
    gated("m", {"test_accuracy": 0.95})
    cli(capsys, "rollback", "m")
    cli(capsys, "promote", "m", "3", "--force", "--reason", "try it")
    moves = registry.history(mlflow.MlflowClient(), "m")
    assert [(m["version"], m["from"], m["action"]) for m in moves] == [
        ("3", "2", "promote"), ("2", "4", "rollback"), ("4", "2", "gate"), ("2", "1", "gate"), ("1", None, "gate")]
    assert [m["at"] for m in moves] == sorted((m["at"] for m in moves), reverse=True)
    code, out, err = cli(capsys, "history", "m")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == list(registry.HISTORY_COLUMNS)
    assert lines[2].split()[1:5] == ["champion", "3", "2", "promote"] and "(forced)" in lines[2]
    assert len(lines) == 2 + 5


def test_rollback_refuses_a_version_that_never_passed_the_gate_unless_forced(three, capsys):
    code, out, err = cli(capsys, "rollback", "m", "--to", "3")
    assert code == 2 and "never passed the gate" in err and champion("m") == "2"
    assert "see docs/troubleshooting.md#a-champion-must-be-rolled-back" in err
    code, out, err = cli(capsys, "rollback", "m", "--to", "3", "--force", "--reason", "known good offline")
    assert code == 0 and champion("m") == "3"


def test_rollback_refuses_a_version_whose_run_was_deleted(three, capsys):
    client = mlflow.MlflowClient()
    client.delete_run(client.get_model_version("m", "1").run_id)
    code, out, err = cli(capsys, "rollback", "m")
    assert code == 2 and "its run" in err and "was deleted" in err and champion("m") == "2"


@pytest.mark.parametrize("argv", [
    ("promote", "nope", "1"),
    ("promote", "m", "9"),
    ("promote", "m", "2"),                      # already the champion
    ("promote", "m", "3", "--force"),           # --force without --reason
    ("rollback", "m", "--force"),
    ("rollback", "m", "--to", "9"),
    ("rollback", "nope"),
    ("history", "nope"),
])
def test_bad_input_is_one_error_line_and_leaves_the_alias(three, capsys, argv):
    code, out, err = cli(capsys, *argv)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert champion("m") == "2"


def test_rollback_without_a_previous_champion(tracking_uri, capsys):
    gated("solo", {"test_accuracy": 0.95})
    code, out, err = cli(capsys, "rollback", "solo")
    assert code == 2 and "no previous champion" in err and champion("solo") == "1"


def test_versions_promoted_before_the_audit_trail_still_count(tracking_uri, capsys):
    client = mlflow.MlflowClient()
    gated("old", {"test_accuracy": 0.91})
    gated("old", {"test_accuracy": 0.93})
    for v in ("1", "2"):  # as the gate tagged them before moves were recorded
        for key in client.get_model_version("old", v).tags:
            if key.startswith("audit.") or key == "gate.passed":
                client.delete_model_version_tag("old", v, key)
    client.set_model_version_tag("old", "2", "audit.champion.garbage", "not json")
    moves = registry.history(client, "old")
    assert [(m["version"], m["action"]) for m in moves] == [("2", "gate"), ("1", "gate")]
    code, out, err = cli(capsys, "rollback", "old")
    assert code == 0 and champion("old") == "1", err


# ------------------------------------------------------------------ a champion tested on other rows


class Rule(mlflow.pyfunc.PythonModel):
    """A table model (mlrecipes.table_model's output): 'up' when its one feature is > 0."""

    def predict(self, context, model_input, params=None):
        import pandas as pd

        up = (model_input.iloc[:, 0].to_numpy(float) > 0).astype(float)
        return pd.DataFrame({"prediction": np.where(up > 0, "up", "down"), "proba_down": 1 - up, "proba_up": up})


def window(xs: list[float], ys: list[int], columns=("x",), day: int = 4, test_from: str = "14:00") -> data.Dataset:
    """A table split whose test rows are (xs, ys); 'down' = 0, 'up' = 1. By time (column ts): the
    training and validation rows end on January `day` at 12:00, the test rows start at `test_from`."""
    import pandas as pd

    frame = pd.DataFrame({c: np.asarray(xs, dtype=np.float32) for c in columns})
    y = np.asarray(ys)
    on = f"2026-01-{day:02d}T"
    times = {"data.split.train.time_max": on + "10:00:00", "data.split.validation.time_max": on + "12:00:00",
             "data.split.test.time_min": on + test_from + ":00"}
    return data.Dataset("ticks", "file:///ticks", frame, y, frame, y, frame, y, ["down", "up"],
                        feature_names=list(columns), target="direction", params=times)


def trained_on(ds: data.Dataset, accuracy: float, time_column: str | None = "ts") -> tuple[str, str]:
    """A run tested on ds's rows that logged `accuracy`, with the Rule model."""
    from mlflow.models import infer_signature

    from mlrecipes import tracking

    rows = data.raw_rows(ds.X_test)
    with mlflow.start_run() as run:
        mlflow.log_param("data.time_column", time_column)
        tracking.log_dataset(ds)
        mlflow.log_metric("test_accuracy", accuracy)
        info = mlflow.pyfunc.log_model(name="model", python_model=Rule(), pip_requirements=["mlflow"],
                                       signature=infer_signature(rows, Rule().predict(None, rows)))
    return info.model_uri, run.info.run_id


def test_a_champion_tested_on_another_window_is_rescored_on_the_candidates(tracking_uri):
    """Last week's champion logged 0.9 on last week's easy rows; this week it gets 2 of 4 right on
    this week's test rows, and a candidate with 0.75 there is the better model."""
    gate = OmegaConf.merge(GATE, {"threshold": None})
    last_week = window([1.0, -1.0, 2.0, -2.0], [1, 0, 1, 0])
    uri, run_id = trained_on(last_week, 0.9)
    assert registry.register_and_gate(uri, "ticks", run_id, {"test_accuracy": 0.9}, gate)["promoted"]
    this_week = window([1.0, 1.0, -1.0, -1.0], [1, 0, 0, 1], day=11)
    uri, run_id = trained_on(this_week, 0.75)
    result = registry.register_and_gate(uri, "ticks", run_id, {"test_accuracy": 0.75}, gate,
                                        rescore=lambda model: evaluate.on_test_rows(model, this_week))
    assert result["promoted"] and champion("ticks") == "2"
    assert result["reason"] == ("test_accuracy 0.75 is not worse than the champion's 0.5 (version 1 re-scored "
                                "on this run's test rows; its own run logged 0.9)")


def test_a_champion_tested_on_the_same_rows_keeps_its_own_value(tracking_uri):
    gate = OmegaConf.merge(GATE, {"threshold": None})
    rows = window([1.0, -1.0, 2.0, -2.0], [1, 0, 1, 0])
    uri, run_id = trained_on(rows, 0.9)
    registry.register_and_gate(uri, "same", run_id, {"test_accuracy": 0.9}, gate)
    uri, run_id = trained_on(rows, 0.75)

    def never(model):
        raise AssertionError("re-scored although both runs were tested on the same rows")

    result = registry.register_and_gate(uri, "same", run_id, {"test_accuracy": 0.75}, gate, rescore=never)
    assert result["reason"] == "test_accuracy 0.75 worse than the champion's 0.9" and champion("same") == "1"


def test_a_champion_that_cannot_score_the_candidates_rows_keeps_its_own_value(tracking_uri, capsys):
    gate = OmegaConf.merge(GATE, {"threshold": None})
    uri, run_id = trained_on(window([1.0, -1.0], [1, 0]), 0.9)
    registry.register_and_gate(uri, "moved", run_id, {"test_accuracy": 0.9}, gate)
    renamed = window([1.0, 1.0, -1.0], [1, 0, 0], columns=("x_new",), day=11)  # it reads another column
    uri, run_id = trained_on(renamed, 0.95)
    result = registry.register_and_gate(uri, "moved", run_id, {"test_accuracy": 0.95}, gate,
                                        rescore=lambda model: evaluate.on_test_rows(model, renamed))
    assert result["promoted"] and result["reason"] == (
        "test_accuracy 0.95 is not worse than the champion's 0.9 (each on its own run's test rows: it cannot "
        "score this run's: it needs column 'x', which this run does not read)")
    err = capsys.readouterr().err
    assert "warning: the gate compares with champion version 1's value on its own test rows (it cannot" in err
    assert "troubleshooting.md#the-gate-cannot-re-score-the-champion" in err


def test_a_champion_that_changes_while_it_is_rescored_is_rescored_again(tracking_uri):
    """The re-scoring runs outside the registry lock; another run's gate moves the alias meanwhile."""
    gate = OmegaConf.merge(GATE, {"threshold": None})
    for accuracy in (0.6, 0.7):  # v1 champion, then v2 trained on the same rows: registered, not promoted
        uri, run_id = trained_on(window([1.0, -1.0], [1, 0]), accuracy)
        registry.register_and_gate(uri, "busy", run_id, {"test_accuracy": accuracy}, OmegaConf.merge(
            gate, {"promote": accuracy == 0.6}))
    rows = window([1.0, 1.0, -1.0, -1.0], [1, 0, 0, 1], day=11)
    uri, run_id = trained_on(rows, 0.75)
    scored = []

    def rescore(model):
        scored.append(model)
        if len(scored) == 1:  # meanwhile, another run's gate makes version 2 the champion
            registry.move_alias(mlflow.MlflowClient(), "busy", "champion", "2", action="gate",
                                command="another run", reason="test")
        return evaluate.on_test_rows(model, rows)

    result = registry.register_and_gate(uri, "busy", run_id, {"test_accuracy": 0.75}, gate, rescore=rescore)
    assert scored == ["models:/busy/1", "models:/busy/2"]
    assert "version 2 re-scored on this run's test rows; its own run logged 0.7" in result["reason"]


def test_a_model_no_better_than_its_baseline_never_becomes_champion(tracking_uri, capsys):
    """On a table there is no threshold: without this, a model that learned nothing (or a broken
    feature) would become the first champion."""
    gate = OmegaConf.merge(GATE, {"threshold": None, "beat_baseline": True})
    result = gated("flat", {"test_accuracy": 0.36, "test_baseline_accuracy": 0.3655}, gate)
    assert not result["passed"] and champion("flat") is None
    assert result["reason"] == ("test_accuracy 0.36 is no better than the baseline's 0.3655 (a model that knows only "
                                "the training target: its most frequent class, or its mean)")
    tags = mlflow.MlflowClient().get_model_version("flat", "1").tags
    assert tags["gate.beat_baseline"] == "true" and tags["gate.passed"] == "false"
    # minimize: an RMSE equal to the training mean's does not beat it either
    assert not gated("flat_ret", {"test_rmse": 0.0077, "test_baseline_rmse": 0.0077},
                     OmegaConf.merge(RMSE_GATE, {"threshold": None}))["passed"]
    assert gated("flat_ret", {"test_rmse": 0.0056, "test_baseline_rmse": 0.0077},
                 OmegaConf.merge(RMSE_GATE, {"threshold": None}))["promoted"]
    # switched off, only the champion bars; promote re-applies the version's own gate
    assert gated("flat_off", {"test_accuracy": 0.36, "test_baseline_accuracy": 0.3655},
                 OmegaConf.merge(gate, {"beat_baseline": False}))["promoted"]
    code, out, err = cli(capsys, "promote", "flat", "1")
    assert code == 2 and "is no better than the baseline's 0.3655" in err and champion("flat") is None


def test_promote_says_when_the_two_were_tested_on_different_rows(tracking_uri, capsys):
    """The CLI has no test rows to re-score on: its verdict says the values come from different rows."""
    gate = OmegaConf.merge(GATE, {"threshold": None})
    uri, run_id = trained_on(window([1.0, -1.0, 2.0, -2.0], [1, 0, 1, 0]), 0.9)
    registry.register_and_gate(uri, "w", run_id, {"test_accuracy": 0.9}, gate)
    uri, run_id = trained_on(window([1.0, 1.0, -1.0, -1.0], [1, 0, 0, 1]), 0.75)
    registry.register_and_gate(uri, "w", run_id, {"test_accuracy": 0.75}, OmegaConf.merge(gate, {"promote": False}))
    code, out, err = cli(capsys, "promote", "w", "2")
    assert code == 2 and champion("w") == "1"
    assert "worse than the champion's 0.9 (each on its own run's test rows, which differ); --force" in err


def test_promote_reuses_the_champion_value_its_gate_rescored_on_its_own_test_rows(tracking_uri, capsys):
    """A window registered only (promote=false): its gate re-scored the champion on its test rows,
    and promoting it by hand later compares with that value, not the champion's own window's."""
    gate = OmegaConf.merge(GATE, {"threshold": None})
    uri, run_id = trained_on(window([1.0, -1.0, 2.0, -2.0], [1, 0, 1, 0]), 0.9)
    registry.register_and_gate(uri, "later", run_id, {"test_accuracy": 0.9}, gate)
    rows = window([1.0, 1.0, -1.0, -1.0], [1, 0, 0, 1], day=11)
    uri, run_id = trained_on(rows, 0.75)
    result = registry.register_and_gate(uri, "later", run_id, {"test_accuracy": 0.75},
                                        OmegaConf.merge(gate, {"promote": False}),
                                        rescore=lambda model: evaluate.on_test_rows(model, rows))
    assert not result["promoted"] and champion("later") == "1"
    tags = mlflow.MlflowClient().get_model_version("later", "2").tags
    assert (tags["gate.champion.version"], tags["gate.champion.value"], tags["gate.champion.rescored"]) == (
        "1", "0.5", "true")
    code, out, err = cli(capsys, "promote", "later", "2")
    assert code == 0 and champion("later") == "2", err
    moves = registry.history(mlflow.MlflowClient(), "later")
    assert moves[0]["reason"] == ("test_accuracy 0.75 is not worse than the champion's 0.5 (version 1 re-scored on "
                                  "this version's test rows by its gate)")


def test_promote_does_not_reuse_a_value_rescored_for_another_champion(tracking_uri, capsys):
    gate = OmegaConf.merge(GATE, {"threshold": None})
    uri, run_id = trained_on(window([1.0, -1.0, 2.0, -2.0], [1, 0, 1, 0]), 0.9)
    registry.register_and_gate(uri, "moved_on", run_id, {"test_accuracy": 0.9}, gate)
    rows = window([1.0, 1.0, -1.0, -1.0], [1, 0, 0, 1], day=11)
    uri, run_id = trained_on(rows, 0.75)
    registry.register_and_gate(uri, "moved_on", run_id, {"test_accuracy": 0.75}, OmegaConf.merge(
        gate, {"promote": False}), rescore=lambda model: evaluate.on_test_rows(model, rows))
    uri, run_id = trained_on(window([1.0, -1.0, 2.0, -2.0], [1, 0, 1, 0], day=12), 0.95)
    registry.register_and_gate(uri, "moved_on", run_id, {"test_accuracy": 0.95}, gate)  # v3 champion, 0.95
    code, out, err = cli(capsys, "promote", "moved_on", "2")
    assert code == 2 and champion("moved_on") == "3"
    assert "worse than the champion's 0.95 (each on its own run's test rows, which differ); --force" in err


@pytest.mark.parametrize(("test_from", "time_column", "why"), [
    ("11:00", "ts", "this run's test rows start at 2026-01-04T11:00:00, before the end of the rows it trained on, "
                    "2026-01-04T12:00:00"),  # a random split over overlapping windows
    ("14:00", None, "no common data.time_column shows that this run's test rows are new to it"),
])
def test_a_champion_that_may_have_trained_on_the_candidates_test_rows_keeps_its_own_value(
        tracking_uri, capsys, test_from, time_column, why):
    """Re-scored on rows it trained on, the champion would look better than it is: the gate compares
    the two runs' own values then, and says why."""
    gate = OmegaConf.merge(GATE, {"threshold": None})
    uri, run_id = trained_on(window([1.0, -1.0, 2.0, -2.0], [1, 0, 1, 0]), 0.9, time_column)
    registry.register_and_gate(uri, "overlap", run_id, {"test_accuracy": 0.9}, gate)
    rows = window([1.0, 1.0, -1.0, -1.0], [1, 0, 0, 1], test_from=test_from)
    uri, run_id = trained_on(rows, 0.95, time_column)

    def never(model):
        raise AssertionError("re-scored on rows the champion may have trained on")

    result = registry.register_and_gate(uri, "overlap", run_id, {"test_accuracy": 0.95}, gate, rescore=never)
    assert result["reason"] == ("test_accuracy 0.95 is not worse than the champion's 0.9 "
                                f"(each on its own run's test rows: {why})")
    assert f"warning: the gate compares with champion version 1's value on its own test rows ({why})" in \
        capsys.readouterr().err
