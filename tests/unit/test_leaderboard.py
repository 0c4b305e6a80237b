"""The leaderboard: champion, previous champion, latest, each model's own gate metric, last move."""

import mlflow
from omegaconf import OmegaConf
from test_registry import GATE, RMSE_GATE, gated

from mlrecipes import cli, leaderboard, registry


def test_champion_previous_latest_own_metric_and_last_move(tracking_uri, capsys):
    for rmse in (0.45, 0.41, 0.43):   # v1 champion, v2 champion from v1, v3 rejected
        gated("ticks-xgboost", {"test_rmse": rmse, "test_baseline_rmse": 0.5}, RMSE_GATE)
    gated("mnist-lightgbm", {"test_accuracy": 0.95}, GATE)
    gated("mnist-lightgbm", {"test_accuracy": 0.97}, OmegaConf.merge(GATE, {"promote": False}))
    client = mlflow.MlflowClient()
    registry.rollback(client, "ticks-xgboost", reason="drift on Mondays")

    table, moves = leaderboard.rows(client)
    got = {(r["model"], r["row"]): r for r in table}
    assert [(r["model"], r["row"], r["version"]) for r in table] == [
        ("mnist-lightgbm", "champion", "1"), ("mnist-lightgbm", "latest", "2"),
        ("ticks-xgboost", "champion", "1"), ("ticks-xgboost", "latest", "3")]
    assert got[("ticks-xgboost", "champion")]["metric"] == "test_rmse"
    assert got[("ticks-xgboost", "champion")]["alias"] == "champion"
    assert got[("ticks-xgboost", "latest")]["alias"] == "-"
    assert got[("ticks-xgboost", "champion")]["value"] == 0.45
    assert got[("ticks-xgboost", "champion")]["baseline"] == 0.5  # what always the training mean scores
    assert got[("mnist-lightgbm", "champion")]["baseline"] is None  # a run from before the baselines
    assert got[("mnist-lightgbm", "latest")]["metric"] == "test_accuracy"

    registry.promote(client, "ticks-xgboost", "2", force=True, reason="back after the fix")
    table, moves = leaderboard.rows(client)
    assert [(r["row"], r["version"]) for r in table if r["model"] == "ticks-xgboost"] == [
        ("champion", "2"), ("previous", "1"), ("latest", "3")]
    (line,) = [m for m in moves if m.startswith("ticks-xgboost")]
    assert "@champion -> version 2 (from version 1)" in line and "promote, forced: back after the fix" in line

    assert cli.main(["leaderboard"]) == 0
    out = capsys.readouterr().out
    assert "test_rmse" in out and "last move of @champion" in out
