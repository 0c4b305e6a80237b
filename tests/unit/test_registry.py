"""The champion gate against a real SQLite registry."""

import mlflow
import pytest
from omegaconf import OmegaConf

from mlrecipes import registry

GATE = OmegaConf.create({"metric": "test_accuracy", "min_accuracy": 0.9, "alias": "champion"})


@pytest.mark.parametrize(
    ("candidate", "champion", "promote"),
    [(0.95, None, True), (0.85, None, False), (0.95, 0.96, False), (0.96, 0.96, True), (0.97, 0.96, True)],
)
def test_decide(candidate, champion, promote):
    ok, reason = registry.decide(candidate, 0.9, champion)
    assert ok is promote and reason


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def candidate(accuracy: float) -> tuple[str, str]:
    with mlflow.start_run() as run:
        mlflow.log_metric("test_accuracy", accuracy)
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    return info.model_uri, run.info.run_id


def test_gate_moves_champion_only_past_the_gate(tracking_uri):
    client = mlflow.MlflowClient()
    steps = [(0.85, False, None), (0.93, True, "2"), (0.91, False, "2"), (0.95, True, "4")]
    for accuracy, promoted, champion_version in steps:
        uri, run_id = candidate(accuracy)
        result = registry.register_and_gate(uri, "demo", run_id, accuracy, GATE)
        assert result["promoted"] is promoted
        version = client.get_model_version("demo", result["version"])
        assert version.tags["gate.decision"] == ("promoted" if promoted else "rejected")
        assert client.get_run(run_id).data.tags["gate.reason"] == result["reason"]
        if champion_version:
            assert str(client.get_model_version_by_alias("demo", "champion").version) == champion_version
    assert len(client.search_model_versions("name='demo'")) == 4
    assert "worse than the champion" in client.get_model_version("demo", "3").tags["gate.reason"]
    assert "below the gate minimum" in client.get_model_version("demo", "1").tags["gate.reason"]
