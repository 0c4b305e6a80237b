"""The experiments the launcher creates open in the MLflow UI on their runs table (MLflow 3's
experiment kind tag), not on the GenAI overview."""

from __future__ import annotations

from mlrecipes.tracking import EXPERIMENT_KIND_TAG, TRAINING_KIND, ensure_experiment


def test_experiments_are_created_or_tagged_as_model_training(tmp_path):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert TRAINING_KIND == "custom_model_development"  # ExperimentKind.CUSTOM_MODEL_DEVELOPMENT (UI)

    created = ensure_experiment(client, "mnist")
    assert client.get_experiment(created).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    assert ensure_experiment(client, "mnist") == created  # got, not created twice

    old = client.create_experiment("before-the-tag")  # made by an earlier version: tagged now
    guessed = client.create_experiment("guessed", tags={EXPERIMENT_KIND_TAG: "genai_development_inferred"})
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for name, exp_id, kind in (("before-the-tag", old, TRAINING_KIND), ("guessed", guessed, TRAINING_KIND),
                               ("chosen", chosen, "genai_development")):  # a user's choice stays
        assert ensure_experiment(client, name) == exp_id
        assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == kind
