"""torch_mnist as real MLflow Project runs (the main test through the `mlflow run` CLI)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import pytest
from helpers import FIXTURE_DATA, REPO, curve_points, project_python, registered_versions

pytestmark = pytest.mark.smoke

PROJECT = REPO / "projects" / "torch_mnist"
EPOCHS = 3
# The tiny fixture cannot reach the default gate; a low bar lets the champion alias move.
LOW_GATE = "overrides=gate.threshold=0.1"
HISTORY = ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy")


def _model_name(arch: str) -> str:
    return f"mnist-torch-{arch}"


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_variant_trains_logs_and_registers(run_project, tracking_uri, arch):
    result = run_project("torch_mnist", f"arch={arch}", f"epochs={EPOCHS}", "device=cpu",
                         f"{LOW_GATE} eval.test_every=1", cli=True)
    assert result.returncode == 0, result.stderr[-3000:]
    run = result.run
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlrecipes.variant"] == arch
    assert run.data.params["arch.name"] == arch
    assert run.data.params["train.epochs"] == str(EPOCHS)

    client = mlflow.MlflowClient(tracking_uri)
    for key in HISTORY:  # one point per epoch, logged with its step
        steps = [step for step, _ in _history(client, run.info.run_id, key)]
        assert steps == list(range(1, EPOCHS + 1)), key
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
    # the test curve: each epoch's weights evaluated after training, then the final ones put back
    curve = curve_points(tracking_uri, run.info.run_id)
    assert [step for step, _, _ in curve] == list(range(1, EPOCHS + 1))
    assert curve[-1][2] == pytest.approx(run.data.metrics["test_accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/confusion_matrix.png" in artifacts
    assert "evaluation/training_curves.png" in artifacts

    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert [m.source_run_id for m in models] == [run.info.run_id]
    assert "pytorch" in mlflow.models.get_model_info(models[0].model_uri).flavors
    requirements = mlflow.pyfunc.get_model_dependencies(models[0].model_uri)
    pins = Path(requirements).read_text().split()
    assert any(p.startswith("torch==") for p in pins) and any(p.startswith("mlflow==") for p in pins)
    assert not any("+" in p for p in pins)  # resolvable on PyPI (no +cpu local label)

    (version,) = registered_versions(tracking_uri, _model_name(arch))
    assert version.run_id == run.info.run_id
    champion = client.get_model_version_by_alias(_model_name(arch), "champion")
    assert champion.version == version.version
    assert run.data.tags["gate.decision"] == "promoted"


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("arch=transformer", "error: unknown arch 'transformer'; valid: cnn, mlp"),
        ("device=tpu", "error: unknown device 'tpu'; valid: auto, cpu, cuda"),
        (f"{LOW_GATE} arch.dropout=1.5", "error: arch.dropout must be in [0, 1), got 1.5"),
        (f"{LOW_GATE} arch=cnn arch.augment=5",
         "error: arch.augment must be null or {degrees: D, translate: T, scale: [LOW, HIGH]}, got 5"),
        (f"{LOW_GATE} arch=cnn arch.augment={{degrees:8}}",
         "error: arch.augment must be null or {degrees: D, translate: T, scale: [LOW, HIGH]}, got {'degrees': 8}"),
    ],
)
def test_unknown_value_fails_cleanly(run_project, tracking_uri, param, expected):
    result = run_project("torch_mnist", "epochs=1", LOW_GATE, param)  # a param's own overrides= replaces LOW_GATE
    assert result.returncode != 0
    assert result.last_line == expected
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [expected]  # one line, no traceback
    assert "Traceback" not in result.stderr
    assert result.run.info.status == "FAILED"
    for arch in ("mlp", "cnn"):
        assert registered_versions(tracking_uri, _model_name(arch)) == []


def test_same_seed_same_metrics(run_project, tracking_uri):
    client = mlflow.MlflowClient(tracking_uri)
    runs = []
    for _ in range(2):
        result = run_project("torch_mnist", "arch=cnn", "epochs=2", "device=cpu", LOW_GATE)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(result.run)
    first, second = (r.info.run_id for r in runs)
    assert first != second
    for key in (*HISTORY, "test_accuracy", "test_log_loss"):
        assert _history(client, first, key) == _history(client, second, key), key


# Runs inside the project's environment: the orchestration venv has no torch.
PREDICT = """
import json, sys
import mlflow, numpy as np
sys.path.insert(0, sys.argv[2])
from mlrecipes.data import flat_float, read_idx
images = read_idx(__import__("pathlib").Path(sys.argv[3]))
proba = mlflow.pyfunc.load_model(sys.argv[1]).predict(flat_float(images))
print(json.dumps(np.asarray(proba, dtype=float).tolist()))
"""


def test_champion_loads_through_pyfunc_and_predicts_digits(run_project, tracking_uri):
    # Small batches give the 540 fixture images enough steps to learn (about 0.96 test accuracy).
    result = run_project("torch_mnist", "arch=cnn", "epochs=15", "batch_size=32", "device=cpu", LOW_GATE)
    assert result.returncode == 0, result.stderr[-3000:]
    from mlrecipes.data import read_idx

    images = FIXTURE_DATA / "mnist" / "t10k-images-idx3-ubyte.gz"
    labels = read_idx(FIXTURE_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz")
    proc = subprocess.run(
        [str(project_python("torch_mnist_cnn")), "-c", PREDICT, "models:/mnist-torch-cnn@champion",
         str(REPO / "src"), str(images)],
        capture_output=True, text=True, timeout=600,
        env={"MLFLOW_TRACKING_URI": tracking_uri, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import numpy as np

    proba = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert proba.shape == (len(labels), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    predicted = proba.argmax(axis=1)
    # The registered champion is the model the recipe evaluated: same accuracy on the same images.
    accuracy = float((predicted == labels).mean())
    assert accuracy == pytest.approx(result.run.data.metrics["test_accuracy"], abs=1e-9)
    # ...and it reads digits: one image of each digit, all (or all but one) right.
    first_of_each = [int(np.flatnonzero(labels == d)[0]) for d in range(10)]
    right = int((predicted[first_of_each] == labels[first_of_each]).sum())
    assert right >= 9, f"predicted {predicted[first_of_each]} for digits 0-9"
