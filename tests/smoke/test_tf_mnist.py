"""tf_mnist as real MLflow Project runs (the main test through the `mlflow run` CLI), on the fixture."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
from helpers import FIXTURE_DATA, curve_points, project_python, registered_versions

from mlrecipes.data import flat_float, read_idx

EPOCH_METRICS = ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy", "learning_rate")
# Enough small-batch epochs on the 540 fixture training images for a CNN that reads digits.
CHAMPION_PARAMS = ("arch=cnn", "epochs=30", "batch_size=32", "overrides=gate.threshold=0.8")

# Runs inside the project's environment: the orchestration venv has no TensorFlow.
PREDICT = """
import sys
import mlflow.pyfunc
import numpy as np
model = mlflow.pyfunc.load_model(sys.argv[1])
np.save(sys.argv[3], np.asarray(model.predict(np.load(sys.argv[2]))))
"""


@pytest.mark.smoke
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_variant_trains_logs_and_registers(run_project, tracking_uri, arch):
    epochs = 2
    # An absolute gate of 0 so the alias moves whatever two epochs on 540 images reach.
    proj = run_project("tf_mnist", f"arch={arch}", f"epochs={epochs}",
                       "overrides=gate.threshold=0 eval.test_every=1", cli=True)
    assert proj.returncode == 0, proj.stderr[-3000:]
    run = proj.run
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlrecipes.variant"] == arch
    assert run.data.params["arch.name"] == arch and run.data.params["train.epochs"] == str(epochs)

    client = mlflow.MlflowClient(tracking_uri)
    for key in EPOCH_METRICS:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(1, epochs + 1)), key
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
    assert run.data.metrics["train_cpu_seconds"] > 0
    # the test curve: each epoch's weights evaluated after training, then the final ones put back
    curve = curve_points(tracking_uri, run.info.run_id)
    assert [step for step, _, _ in curve] == list(range(1, epochs + 1))
    assert curve[-1][2] == pytest.approx(run.data.metrics["test_accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/confusion_matrix.png" in artifacts and "evaluation/training_curves.png" in artifacts

    # stdout is not a terminal here: one line per epoch, as Airflow's logs get it, no bar.
    epoch_lines = [line for line in proj.stdout.splitlines() if re.match(r"\d+/\d+ - .*val_accuracy", line)]
    assert len(epoch_lines) == epochs, proj.stdout
    assert "━" not in proj.stdout

    name = f"mnist-tf-{arch}"
    versions = registered_versions(tracking_uri, name)
    assert [v.run_id for v in versions] == [run.info.run_id]
    assert client.get_model_version_by_alias(name, "champion").version == versions[0].version
    assert run.data.tags["gate.decision"] == "promoted"
    info = mlflow.models.get_model_info(f"models:/{name}/{versions[0].version}")
    assert {"tensorflow", "python_function"} <= set(info.flavors)
    assert info.signature.inputs.inputs[0].shape == (-1, 784)  # the flat pixels, any batch
    assert info.saved_input_example_info is not None
    pins = Path(mlflow.pyfunc.get_model_dependencies(info.model_uri)).read_text().split()
    assert sum(p.startswith(("tensorflow==", "tensorflow-cpu==", "tensorflow_cpu==")) for p in pins) == 1, pins


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("arch=resnet", "error: unknown arch 'resnet'; valid: cnn, mlp"),
        ("overrides=train.steps_per_execution=0", "error: train.steps_per_execution must be >= 1, got 0"),
        ("overrides=arch.label_smoothing=1", "error: arch.label_smoothing must be in [0, 1), got 1.0"),
        ("overrides=optimizer.warmup_fraction=1.5", "error: optimizer.warmup_fraction must be in [0, 1), got 1.5"),
        ("overrides=train.epochs=abc", "error: train.epochs must be a number, got 'abc'"),
    ],
)
def test_bad_value_fails_with_one_line(run_project, tracking_uri, param, expected):
    proj = run_project("tf_mnist", "arch=mlp", "epochs=1", param)
    assert proj.returncode != 0
    assert proj.last_line == expected
    assert [line for line in proj.stderr.splitlines() if line.startswith("error:")] == [expected]
    assert "Traceback" not in proj.stderr
    assert proj.run.info.status == "FAILED"
    assert mlflow.MlflowClient(tracking_uri).search_registered_models() == []


@pytest.mark.smoke
def test_champion_predicts_digits(run_project, tracking_uri, tmp_path):
    # The alias moves only past 80 % test accuracy, so loading @champion needs a real model.
    proj = run_project("tf_mnist", *CHAMPION_PARAMS)
    assert proj.returncode == 0, proj.stderr[-3000:]
    assert proj.run.data.tags["gate.decision"] == "promoted", proj.run.data.tags.get("gate.reason")

    mnist = FIXTURE_DATA / "mnist"
    labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    np.save(tmp_path / "images.npy", flat_float(read_idx(mnist / "t10k-images-idx3-ubyte.gz")))
    subprocess.run(
        [str(project_python("tf_mnist_cnn")), "-c", PREDICT, "models:/mnist-tf-cnn@champion",
         str(tmp_path / "images.npy"), str(tmp_path / "proba.npy")],
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}, check=True, timeout=600,
    )
    proba = np.load(tmp_path / "proba.npy")
    assert proba.shape == (len(labels), 10)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)  # probabilities, not logits
    predicted = proba.argmax(axis=1)

    # The registered model is the one the run evaluated, with the same preprocessing ...
    assert (predicted == labels).mean() == pytest.approx(proj.run.data.metrics["test_accuracy"])
    # ... and it reads digits: the first ten test images (7 2 1 0 4 1 4 9 5 9).
    assert predicted[:10].tolist() == labels[:10].tolist()
