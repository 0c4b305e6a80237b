"""Sweeps through the real `mlflow run -e sweep` (and the launcher), on the 600-image fixture.

Tiny on purpose: 300 images, 5 boosting rounds, 3-4 trials. What is checked is the shape a sweep
leaves in MLflow and in the Optuna study, not the quality of the models.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
from helpers import FIXTURE_DATA, REPO, ProjectRun, all_runs, mlflow_run, registered_versions

pytestmark = pytest.mark.smoke

TINY = "model.num_boost_round=5 gate.threshold=0.1"  # the fixture cannot reach the production bar


@pytest.fixture
def run_sweep(tracking_uri, tmp_path):
    """`mlflow run projects/<project> -e sweep -P ...`; the run it created and its children."""

    def _run(project: str, *params: str, experiment: str = "sweeps", cli: bool = False) -> ProjectRun:
        return mlflow_run(tracking_uri, project, *params, entry="sweep", experiment=experiment, cwd=tmp_path,
                          cli=cli, env={"MLRECIPES_DATA_DIR": str(FIXTURE_DATA)})

    return _run


def children(parent_id: str):
    client = mlflow.MlflowClient()
    runs = [r for r in all_runs(client) if r.data.tags.get("mlflow.parentRunId") == parent_id]
    return sorted(runs, key=lambda r: int(r.data.tags["mlrecipes.sweep.trial"]))


def study(tracking_uri: str, name: str):
    """The trials of an Optuna study stored beside the tracking store (`<db>.optuna.db`)."""
    import optuna

    db = tracking_uri.removesuffix(".db") + ".optuna.db"
    return optuna.load_study(study_name=name, storage=db).trials


def test_lightgbm_sweep_parent_children_best_registered(run_sweep, tracking_uri):
    result = run_sweep("lightgbm", "trials=3", "limit=300", f"overrides={TINY}", cli=True)
    assert result.returncode == 0, result.stderr[-4000:]
    parent = result.run
    assert parent.info.status == "FINISHED"
    tags, params, metrics = parent.data.tags, parent.data.params, parent.data.metrics
    assert tags["mlrecipes.sweep.role"] == "parent" and tags["mlrecipes.sweep.study"] == "lightgbm-gbdt-default-mnist"
    assert params["sweep.objective"] == "val_log_loss" and params["sweep.direction"] == "minimize"
    assert params["sweep.space.model.params.learning_rate"] == "tag(log, interval(0.05, 0.4))"
    assert '"seed": 42' in params["sweep.sampler"] and '"median"' in params["sweep.pruner"]

    kids = children(parent.info.run_id)
    assert [k.data.tags["mlrecipes.sweep.trial"] for k in kids] == ["0", "1", "2"]
    for kid in kids:  # each a normal recipe run: config, data digest, validation + test metrics, model
        assert kid.info.status == "FINISHED" and kid.data.tags["mlrecipes.sweep.state"] == "complete"
        assert kid.data.params["data.limit"] == "300" and kid.data.params["model.num_boost_round"] == "5"
        assert {i.dataset.name for i in kid.inputs.dataset_inputs} == {"mnist-train", "mnist-test"}
        assert "val_log_loss" in kid.data.metrics and "test_accuracy" in kid.data.metrics
        assert mlflow.models.get_model_info(f"runs:/{kid.info.run_id}/model").signature is not None
    # the sampled values are the children's config
    sampled = [kid.data.params["model.params.num_leaves"] for kid in kids]
    assert len({kid.data.params["model.params.learning_rate"] for kid in kids}) == 3, sampled

    best = min(kids, key=lambda k: k.data.metrics["val_log_loss"])
    assert metrics["best_value"] == pytest.approx(best.data.metrics["val_log_loss"])
    assert tags["mlrecipes.sweep.best_run_id"] == best.info.run_id
    assert params["best.model.params.learning_rate"] == best.data.params["model.params.learning_rate"]
    # only the best trial's model is registered, and it went through the gate
    versions = registered_versions(tracking_uri, "mnist-lightgbm")
    assert [v.run_id for v in versions] == [best.info.run_id]
    assert mlflow.MlflowClient().get_run(best.info.run_id).data.tags["gate.decision"] == "promoted"
    assert tags["registry.model"] == "mnist-lightgbm/1"
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/objective_history.png", "sweep/param_importances.png", "sweep/trials.csv",
            "sweep/sweep.yaml"} <= files

    # the leaderboard says which trial of which sweep the champion came from
    from mlrecipes import leaderboard

    table, _ = leaderboard.rows(mlflow.MlflowClient())
    assert table[0]["from"] == f"sweep {parent.info.run_id[:8]} trial {best.data.tags['mlrecipes.sweep.trial']}"

    # The same command again: the study already has its 3 trials, so nothing runs and nothing
    # is registered twice; one more trial (trials=4) runs exactly one.
    again = run_sweep("lightgbm", "trials=3", "limit=300", f"overrides={TINY}")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "3 trial(s) already finished, 0 to run of 3" in again.stdout + again.stderr
    assert children(again.run.info.run_id) == []
    assert len(registered_versions(tracking_uri, "mnist-lightgbm")) == 1


def test_failing_trial_does_not_stop_the_sweep_on_a_table(run_sweep, tracking_uri, tmp_path):
    # XGBoost on a table (binary: ROC AUC as the objective); max_depth=-1 is a value XGBoost
    # rejects, so the trials that draw it fail and the others go on.
    space = tmp_path / "space.yaml"
    space.write_text("objective: val_roc_auc\nn_trials: 4\nsampler: {name: random, seed: 0}\n"
                     "pruner: {name: median, n_startup_trials: 1, report_every: 1}\n"
                     "params:\n  model.params.max_depth: choice(-1, 3)\n"
                     "  model.params.learning_rate: tag(log, interval(0.05, 0.5))\n")
    result = run_sweep("xgboost", f"sweep={space}", "data=breast_cancer", f"overrides={TINY}", experiment="tables")
    assert result.returncode == 0, result.stderr[-4000:]
    kids = children(result.run.info.run_id)
    assert len(kids) == 4
    # seed 0 draws max_depth 3, -1, 3, 3: trial 1 fails, trials 2 and 3 still run
    states = [k.data.tags["mlrecipes.sweep.state"] for k in kids]
    assert states[1] == "failed" and "failed" not in states[2:] and states[0] == "complete", states
    failed = [k for k in kids if k.data.tags["mlrecipes.sweep.state"] == "failed"]
    for kid in failed:
        assert kid.info.status == "FAILED" and kid.data.params["model.params.max_depth"] == "-1"
        assert "xgboost rejected the parameters" in kid.data.tags["mlrecipes.error"]
    assert "error: trial" in result.stderr and "Traceback" not in result.stderr
    assert result.run.data.metrics["trials_failed"] == len(failed)
    assert result.run.data.tags["mlrecipes.sweep.objective"] == "val_roc_auc"
    (version,) = registered_versions(tracking_uri, "breast_cancer-xgboost")
    best = max((k for k in kids if k.data.tags["mlrecipes.sweep.state"] == "complete"),
               key=lambda k: k.data.metrics["val_roc_auc"])
    assert version.run_id == best.info.run_id


def test_killed_sweep_resumes_without_repeating_a_trial(tracking_uri, tmp_path):
    # Through the launcher (what Airflow runs): SIGTERM to its group after two finished trials.
    argv = [sys.executable, "-m", "mlrecipes", "run", "lightgbm_sweep", "-P", "trials=4", "-P", "limit=300",
            "-P", "study=resume", "-P", f"overrides={TINY}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLRECIPES_DATA_DIR": str(FIXTURE_DATA)}
    client = mlflow.MlflowClient(tracking_uri)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
                            start_new_session=True)
    try:
        while True:  # trial 2 started: trials 0 and 1 are finished and told to the study
            if any(r.data.tags.get("mlrecipes.sweep.trial") == "2" for r in all_runs(client)):
                break
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)  # what Airflow's on_kill does to the launcher's group
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, out[-4000:]
    (first,) = [r for r in all_runs(client) if r.data.tags.get("mlrecipes.sweep.role") == "parent"]
    assert first.info.status == "KILLED"
    assert all(r.info.status != "RUNNING" for r in all_runs(client))  # an interrupted trial ends KILLED
    assert registered_versions(tracking_uri, "mnist-lightgbm") == []

    again = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "2 trial(s) already finished, 2 to run of 4" in again.stdout
    (second,) = [r for r in all_runs(client) if r.data.tags.get("mlrecipes.sweep.role") == "parent"
                 and r.info.run_id != first.info.run_id]
    assert second.info.status == "FINISHED" and second.data.tags["mlrecipes.sweep.study"] == "resume"
    trials = study(tracking_uri, "resume")
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    assert len({t.number for t in trials}) == len(trials)  # no trial number twice
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4  # no parameter set twice
    # under the killed parent: trials 0 and 1 finished, trial 2 interrupted (KILLED, not counted)
    assert [(k.info.status, k.data.tags["mlrecipes.sweep.state"]) for k in children(first.info.run_id)] == [
        ("FINISHED", "complete"), ("FINISHED", "complete"), ("KILLED", "interrupted")]
    assert [k.data.tags["mlrecipes.sweep.trial"] for k in children(second.info.run_id)] == ["3", "4"]
    (version,) = registered_versions(tracking_uri, "mnist-lightgbm")
    best = min(complete, key=lambda t: t.value)
    assert version.run_id == best.user_attrs["mlflow_run_id"]


BAD_SPACES = {
    "not-in-config": ("n_trials: 3\nparams:\n  model.params.no_such: interval(0.1, 0.2)\n",
                      "sweep parameter 'model.params.no_such' is not in the config of lightgbm"),
    "empty-range": ("n_trials: 3\nparams:\n  model.params.num_leaves: range(64, 16)\n",
                    "sweep parameter model.params.num_leaves: range(64, 16) is an empty range"),
    "objective": ("n_trials: 3\nobjective: val_auc\nparams:\n  model.params.num_leaves: range(16, 64, 8)\n",
                  "objective 'val_auc' is not a metric the recipe logs for a classification task"),
}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["sweep=nosuch"], "unknown sweep 'nosuch'; valid: default"),
        (["trials=0"], "trials must be a positive integer, got '0'"),
        *[([f"sweep={{tmp}}/{name}.yaml"], message) for name, (_, message) in BAD_SPACES.items()],
    ],
    ids=["unknown-sweep", "zero-trials", *BAD_SPACES],
)
def test_bad_input_fails_cleanly(run_sweep, tracking_uri, tmp_path, params, message):
    for name, (text, _) in BAD_SPACES.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    result = run_sweep("lightgbm", *(p.format(tmp=tmp_path) for p in params), "limit=300")
    assert result.returncode != 0
    assert message in result.last_line, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.run is not None and result.run.info.status == "FAILED"
    assert result.run.data.tags["mlrecipes.exit_code"] == "2"
    assert children(result.run.info.run_id) == []
    assert mlflow.MlflowClient().search_registered_models() == []


def test_a_sweep_on_a_rolling_window_of_a_table(run_sweep, tracking_uri, ticks, tmp_path):
    """The window parameters a scheduled retraining passes reach every trial: each reads the 2 days
    before the interval's end, and the best one is registered."""
    import pyarrow.compute as pc

    space = tmp_path / "space.yaml"
    space.write_text("objective: val_accuracy\nn_trials: 2\nsampler: {name: random, seed: 0}\n"
                     "params:\n  model.params.num_leaves: choice(7, 15)\n")
    result = run_sweep("lightgbm", f"sweep={space}", "data=parquet",
                       "window=2026-01-04T00:00:00+00:00/2026-01-05T00:00:00+00:00", "window_column=date",
                       "window_length=2d", f"overrides=data.path={ticks['parquet']} data.target=direction "
                       "data.name=ticks_sweep data.exclude=[date,ts,next_return,up] model.num_boost_round=5",
                       experiment="tables")
    assert result.returncode == 0, result.stderr[-4000:]
    t = ticks["table"]
    rows = t.filter(pc.and_(pc.greater_equal(t["date"], "2026-01-03"), pc.less(t["date"], "2026-01-05"))).num_rows
    kids = children(result.run.info.run_id)
    assert len(kids) == 2
    for kid in kids:
        assert int(kid.data.params["data.rows.read"]) == rows
        assert kid.data.params["data.source.filter"] == "date >= '2026-01-03' and date < '2026-01-05'"
    (version,) = registered_versions(tracking_uri, "ticks_sweep-lightgbm")
    assert version.run_id in {k.info.run_id for k in kids}
