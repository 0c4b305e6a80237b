"""The GBDT projects' model defaults by kind of data (mlrecipes.config.kind_defaults): MNIST's on an
image set, the table defaults (bench/table_defaults.py) on a table, whatever the MLproject passes as 0."""

from pathlib import Path

import pytest

from mlrecipes import config
from mlrecipes.errors import UserError

PROJECTS = Path(__file__).resolve().parents[2] / "projects"
# What `mlflow run` passes when no -P sets them (the MLproject's defaults).
MLPROJECT = {"xgboost": ["model.num_boost_round=0", "model.params.learning_rate=0", "model.params.max_depth=0"],
             "lightgbm": ["model.num_boost_round=0", "model.params.learning_rate=0", "model.params.num_leaves=0"]}
TABLE = ["data=parquet", "data.path=/lake/t", "data.target=y"]
# The image defaults (chosen on MNIST and Fashion-MNIST: bench/image_defaults.py).
IMAGES = {"xgboost": {"learning_rate": 0.4, "max_depth": 7, "max_bin": 32, "subsample": 0.7,
                      "colsample_bytree": 0.5, "tree_method": "hist"},
          "lightgbm": {"learning_rate": 0.1, "num_leaves": 63, "max_bin": 15, "feature_fraction": 0.2,
                       "data_sample_strategy": "goss", "bagging_fraction": 1.0, "bagging_freq": 0,
                       "min_data_in_leaf": 20, "force_col_wise": True, "verbosity": -1}}


@pytest.mark.parametrize("project", ["xgboost", "lightgbm"])
def test_an_image_set_keeps_its_mnist_defaults(project):
    cfg = config.compose(PROJECTS / project, ["data=mnist", *MLPROJECT[project]])
    assert cfg.model.tuned_for == "images" and cfg.model.num_boost_round == 400
    assert dict(cfg.model.params) == IMAGES[project]  # nothing more, nothing less
    assert "model_defaults" not in cfg  # the logged config holds what trained


@pytest.mark.parametrize("project", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("data", [TABLE, ["data=ticks"], ["data=breast_cancer"]])
def test_a_table_gets_the_table_defaults(project, data):
    cfg = config.compose(PROJECTS / project, [*data, *MLPROJECT[project]])
    tables = config.compose(PROJECTS / project, ["data=mnist", "model.tuned_for=tables"])
    assert cfg.model.tuned_for == "tables" and cfg.model == tables.model
    assert cfg.model.params.max_bin >= 255 and dict(cfg.model.params) != IMAGES[project]
    assert None not in cfg.model.params.values()


@pytest.mark.parametrize("project", ["xgboost", "lightgbm"])
def test_a_value_set_on_the_command_line_wins_for_either_kind(project):
    for data in (["data=mnist"], TABLE):
        cfg = config.compose(PROJECTS / project, [*data, "model.num_boost_round=7", "model.params.learning_rate=0.2",
                                                  "model.params.max_bin=63", "seed=3"])
        assert (cfg.model.num_boost_round, cfg.model.params.learning_rate, cfg.model.params.max_bin) == (7, 0.2, 63)


def test_false_is_a_value_not_unset():
    cfg = config.compose(PROJECTS / "lightgbm", ["data=mnist", "model.params.force_col_wise=false"])
    assert cfg.model.params.force_col_wise is False


def test_an_unknown_kind_is_one_line():
    with pytest.raises(UserError, match="model.tuned_for must be auto, images or tables; got 'audio'"):
        config.compose(PROJECTS / "xgboost", ["model.tuned_for=audio"])
