"""Hydra composition of project config + shared groups, and its one-line errors."""

from pathlib import Path

import pytest

from mlrecipes import config
from mlrecipes.errors import UserError

XGB = Path(__file__).resolve().parents[2] / "projects" / "xgboost"


def test_parse_argv_splits_overrides_without_a_shell():
    argv = ["data=mnist", "--overrides", "model.params.max_depth=4 'gate.threshold=0.5'", "seed=1"]
    assert config.parse_argv(argv) == ["data=mnist", "model.params.max_depth=4", "gate.threshold=0.5", "seed=1"]
    assert config.parse_argv(["--overrides", ""]) == []
    # a value with shell metacharacters stays one literal word; nothing is expanded
    assert config.parse_argv(["--overrides", "registry.model_name='$(rm -rf x)*'"]) == [
        "registry.model_name=$(rm -rf x)*"
    ]


def test_compose_merges_shared_groups_and_overrides():
    cfg = config.compose(XGB, ["data=breast_cancer", "model.params.max_depth=3"])
    assert cfg.data.kind == "breast_cancer"
    assert cfg.registry.model_name == "breast_cancer-xgboost"
    assert cfg.model.params.max_depth == 3
    assert cfg.gate.alias == "champion"
    flat = config.flatten(cfg)
    assert flat["model.params.max_depth"] == "3" and flat["data.name"] == "breast_cancer"


def test_the_gate_threshold_comes_from_the_data_group():
    """0.9 on the image sets and breast_cancer; none on a table (a tick direction model's 55 %
    can be a good one), where only the champion bars; an override wins either way."""
    table = ["data.path=/lake/t", "data.target=y"]
    assert config.compose(XGB, ["data=mnist"]).gate.threshold == 0.9
    assert config.compose(XGB, ["data=breast_cancer"]).gate.threshold == 0.9
    for data in ("parquet", "delta", "csv"):
        assert config.compose(XGB, [f"data={data}", *table]).gate.threshold is None
    assert config.compose(XGB, ["data=ticks"]).gate.threshold is None
    assert config.compose(XGB, ["data=ticks", "gate.threshold=0.4"]).gate.threshold == 0.4
    assert config.compose(XGB, ["data=mnist", "gate.threshold=null"]).gate.threshold is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=nope"], "unknown data 'nope'; valid: breast_cancer, csv, delta, fashion_mnist, mnist, parquet, ticks"),
        (["model.params.max_depth"], "malformed override 'model.params.max_depth'"),
        (["model.no_such_key=1"], "no_such_key"),
        (["data=csv"], "missing required config value(s): data.path, data.target"),
        # a value of another kind than the default's ends here, not in a TypeError deep in train.py
        (["model.num_boost_round=abc"], "model.num_boost_round must be a number, got 'abc'"),
        (["data=parquet", "data.path=/t", "data.target=y", "data.limit=all"], "data.limit must be a number, got 'all'"),
        (["gate.promote=yes"], "gate.promote must be true or false, got 'yes'"),
        (["model.early_stopping_rounds=true"], "model.early_stopping_rounds must be a number, got True"),
    ],
)
def test_compose_errors_are_one_line(overrides, message):
    with pytest.raises(UserError) as err:
        config.compose(XGB, overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_of_the_default_s_kind_pass():
    # MLflow's float params (400.0 for an int), true/false words, interpolations, new keys with +, null
    cfg = config.compose(XGB, ["model.num_boost_round=400.0", "gate.promote=false", "model.params.max_depth=${seed}",
                               "+model.params.gamma=0.1", "data.limit=0", "data=mnist",
                               "data.files.train_images.items=null"])
    assert cfg.model.num_boost_round == 400.0 and cfg.gate.promote is False
    assert cfg.model.params.max_depth == cfg.seed and cfg.model.params.gamma == 0.1


def test_unknown_option_is_rejected():
    with pytest.raises(UserError, match="unknown option '--foo'"):
        config.parse_argv(["--foo", "1"])


@pytest.mark.parametrize("project", ["tf_mnist", "torch_mnist"])
def test_a_zero_takes_the_arch_default_and_a_value_overrides_it(project):
    root = XGB.parent / project
    lr = "optimizer.learning_rate" if project == "tf_mnist" else "train.learning_rate"
    section, key = lr.split(".")
    for arch in ("mlp", "cnn"):
        # what the MLproject passes by default: 0 for epochs, batch_size and learning_rate
        cfg = config.compose(root, [f"arch={arch}", "train.epochs=0", "train.batch_size=0", f"{lr}=0"])
        assert cfg.train.epochs == cfg.arch.train.epochs >= 1
        assert cfg.train.batch_size == cfg.arch.train.batch_size >= 1
        assert cfg[section][key] == cfg.arch[section][key] > 0
        assert config.flatten(cfg)["train.epochs"] == str(cfg.arch.train.epochs)  # the logged value
        cfg = config.compose(root, [f"arch={arch}", "train.epochs=3", f"{lr}=0.01"])
        assert cfg.train.epochs == 3 and cfg[section][key] == 0.01


def test_the_arch_s_optimizer_params_go_under_the_config_s():
    root = XGB.parent / "tf_mnist"
    cfg = config.compose(root, ["arch=mlp"])
    assert cfg.optimizer.params.weight_decay == cfg.arch.optimizer.params.weight_decay > 0
    assert cfg.optimizer.warmup_fraction == cfg.arch.optimizer.warmup_fraction > 0
    assert config.flatten(cfg)["optimizer.params.weight_decay"] == str(cfg.arch.optimizer.params.weight_decay)
    cfg = config.compose(root, ["arch=mlp", "+optimizer.params.weight_decay=0", "+optimizer.params.beta_1=0.8"])
    assert cfg.optimizer.params == {"weight_decay": 0, "beta_1": 0.8}  # the config's keys win
    assert "weight_decay" not in config.compose(root, ["arch=cnn"]).optimizer.params
