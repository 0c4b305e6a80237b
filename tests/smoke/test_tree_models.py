"""XGBoost and LightGBM as real MLflow Project runs (the main test through the `mlflow run` CLI)."""

import gzip
import shutil

import mlflow
import pytest
from helpers import FIXTURE_DATA, curve_points, registered_versions

# Per-iteration validation metric each framework's autolog records.
ITER_METRIC = {"xgboost": "validation-mlogloss", "lightgbm": "validation-multi_logloss"}
LOW_GATE = "gate.threshold=0.5"  # the 600-image fixture cannot reach the production bar


def artifacts(run_id: str) -> set[str]:
    client = mlflow.MlflowClient()
    found, todo = set(), [""]
    while todo:
        for item in client.list_artifacts(run_id, todo.pop()):
            (todo.append(item.path) if item.is_dir else found.add(item.path))
    return found


@pytest.mark.smoke
@pytest.mark.parametrize("project", ["xgboost", "lightgbm"])
def test_mnist_run_end_to_end(run_project, tracking_uri, project):
    result = run_project(project, "num_boost_round=40", f"overrides={LOW_GATE} seed=7 eval.test_every=10", cli=True)
    assert result.returncode == 0, result.stderr[-3000:]
    run = result.run
    assert run.info.status == "FINISHED"
    # composed config as flattened params, including the -P and free-form overrides
    assert run.data.params["model.num_boost_round"] == "40"
    assert run.data.params["seed"] == "7"
    assert run.data.params["data.name"] == "mnist"
    assert run.data.tags["mlrecipes.project"] == project
    assert len(run.data.tags["mlrecipes.git.commit"]) == 40
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"mnist-train", "mnist-test"}
    # metrics: evaluation + per-iteration history
    metrics = run.data.metrics
    assert 0.5 < metrics["test_accuracy"] <= 1 and 0 < metrics["test_macro_f1"] <= 1
    assert metrics["test_log_loss"] > 0 and metrics["train_seconds"] > 0 and metrics["peak_rss_mb"] > 50
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, ITER_METRIC[project])
    assert len(history) > 5 and [m.step for m in history] == sorted(m.step for m in history)
    # the test curve: the first N rounds evaluated after training, every 10 rounds trained
    curve = curve_points(tracking_uri, run.info.run_id)
    assert [step for step, _, _ in curve] == list(range(10, len(history) + 1, 10))
    # artifacts of the same run
    files = artifacts(run.info.run_id)
    for expected in ("config.yaml", "evaluation/confusion_matrix.png", "evaluation/per_class_report.json",
                     "evaluation/training_curves.png"):
        assert expected in files
    assert "feature_importance_weight.png" not in files  # 784 pixels: not drawn
    # model logged with signature + input example, registered, gate passed
    model = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
    assert model.signature is not None and model.saved_input_example_info is not None
    versions = registered_versions(tracking_uri, f"mnist-{project}")
    assert [v.run_id for v in versions] == [run.info.run_id]
    champion = mlflow.MlflowClient().get_model_version_by_alias(f"mnist-{project}", "champion")
    assert champion.run_id == run.info.run_id
    assert mlflow.MlflowClient().get_run(run.info.run_id).data.tags["gate.decision"] == "promoted"


@pytest.mark.smoke
def test_second_run_below_champion_is_registered_but_not_promoted(run_project, tracking_uri):
    first = run_project("lightgbm", "num_boost_round=40", f"overrides={LOW_GATE}")
    assert first.returncode == 0, first.stderr[-3000:]
    worse = run_project("lightgbm", "num_boost_round=1", "early_stopping_rounds=1",
                        "overrides=gate.threshold=0.0")
    assert worse.returncode == 0, worse.stderr[-3000:]
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias("mnist-lightgbm", "champion").run_id == first.run.info.run_id
    tags = client.get_run(worse.run.info.run_id).data.tags
    assert tags["gate.decision"] == "rejected" and "worse than the champion" in tags["gate.reason"]
    assert len(registered_versions(tracking_uri, "mnist-lightgbm")) == 2


@pytest.mark.smoke
def test_breast_cancer_and_csv_tables(run_project, tracking_uri, tmp_path):
    result = run_project("xgboost", "data=breast_cancer", "num_boost_round=30", experiment="tables")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.run.data.metrics["test_accuracy"] > 0.9
    assert registered_versions(tracking_uri, "breast_cancer-xgboost")
    assert "feature_importance_weight.png" in artifacts(result.run.info.run_id)  # named columns: drawn

    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "label"})
    frame.to_csv(tmp_path / "ticks.csv", index=False)
    result = run_project(
        "lightgbm", "data=csv", "num_boost_round=30",
        f"overrides=data.path={tmp_path / 'ticks.csv'} data.target=label data.name=ticks",
        experiment="tables",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.run.data.params["data.path"] == str(tmp_path / "ticks.csv")
    assert registered_versions(tracking_uri, "ticks-lightgbm")


def corrupt_data_dir(tmp_path):
    root = tmp_path / "corrupt"
    shutil.copytree(FIXTURE_DATA / "mnist", root / "mnist")
    images = root / "mnist" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw[: len(raw) // 2]))  # valid gzip, truncated IDX
    return {"MLRECIPES_DATA_DIR": str(root)}


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("project", "params", "env", "message"),
    # One error per stage end to end (composing the config, the project's fit, reading the data);
    # the other messages of each stage are asserted in-process by tests/unit (test_config, test_data).
    [
        ("xgboost", ["overrides=model.params.max_depth"], None, "malformed override 'model.params.max_depth'"),
        ("lightgbm", ["num_boost_round=-5"], None, "model.num_boost_round must be >= 1, got -5"),
        ("xgboost", [], corrupt_data_dir, "corrupt IDX file"),
    ],
    ids=["malformed-override", "negative-rounds-lgb", "corrupt-idx"],
)
def test_bad_input_fails_cleanly(run_project, tracking_uri, tmp_path, project, params, env, message):
    result = run_project(project, *params, env=env(tmp_path) if callable(env) else env)
    assert result.returncode != 0
    assert message in result.last_line, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.run is not None and result.run.info.status == "FAILED"
    assert mlflow.MlflowClient().search_registered_models() == []
