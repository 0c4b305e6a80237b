"""The store rule every command follows, and read-only commands on a store that does not exist."""

import pytest

from mlrecipes import cli, leaderboard, store
from mlrecipes.errors import UserError
from mlrecipes.paths import REPO_ROOT


def test_given_then_environment_then_the_repository_store(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert store.tracking_uri(None) == f"sqlite:///{REPO_ROOT / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert store.tracking_uri(None) == "http://mlflow:5000"
    assert store.tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"  # given wins


def test_relative_sqlite_paths_mean_the_current_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///runs/mlflow.db?timeout=30")
    assert store.tracking_uri(None) == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}?timeout=30"
    assert store.tracking_uri("sqlite:///m.db", base=tmp_path / "b") == f"sqlite:///{tmp_path / 'b' / 'm.db'}"
    for unchanged in ("sqlite:////abs/m.db", "sqlite:///:memory:", "http://mlflow:5000", "databricks"):
        assert store.tracking_uri(unchanged) == unchanged


def test_sqlite_path_only_of_absolute_sqlite_uris():
    assert str(store.sqlite_path("sqlite:////data/m.db?timeout=30")) == "/data/m.db"
    for other in ("sqlite:///m.db", "sqlite:///:memory:", "http://mlflow:5000", "postgresql://h/db"):
        assert store.sqlite_path(other) is None


def test_a_missing_sqlite_store_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "nowhere" / "x.db"
    with pytest.raises(UserError, match=f"no MLflow store at {missing}: "):
        store.require_store(f"sqlite:///{missing}")
    assert not missing.parent.exists()
    missing.parent.mkdir()
    missing.touch()
    assert store.require_store(f"sqlite:///{missing}") == f"sqlite:///{missing}"
    assert store.require_store("http://mlflow:5000") == "http://mlflow:5000"  # a server answers for itself


@pytest.mark.parametrize("argv", [("leaderboard",), ("history", "m"), ("promote", "m", "1"), ("rollback", "m")])
def test_commands_on_a_missing_store_fail_in_one_line_and_create_nothing(tmp_path, capsys, argv):
    missing = tmp_path / "nowhere" / "x.db"
    given = ["--tracking-uri", f"sqlite:///{missing}"]
    if argv[0] == "leaderboard":
        code = leaderboard.main(given)  # the old `python -m` path, a thin alias
    else:
        code = cli.main([*argv, *given])  # --tracking-uri after the verb, as anywhere
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"error: no MLflow store at {missing}: ") and err.count("\n") == 1, err
    assert not missing.parent.exists()
