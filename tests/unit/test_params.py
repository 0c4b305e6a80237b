"""Shared MLproject parameters (conf/params.yaml): the time window's `window`, `window_column` and
`window_length`, taken by every entry point of every project without an MLproject declaring them;
and the `overrides` check that names the character it refuses."""

import shlex
from pathlib import Path

import pytest
import yaml

from mlrecipes import config, schedule
from mlrecipes.errors import UserError
from mlrecipes.params import shared_params

REPO = Path(__file__).resolve().parents[2]
PROJECTS = ("lightgbm", "xgboost", "tf_mnist", "torch_mnist")
DAY = "2026-01-04T00:00:00+00:00/2026-01-05T00:00:00+00:00"


def test_the_window_parameters_and_their_config_keys():
    params = shared_params()
    assert {name: p.key for name, p in params.items()} == {
        "window": "window.interval", "window_column": "window.column", "window_length": "window.length",
        "compute": "compute"}
    assert all(p.type == "string" and p.default == "" and p.help for p in params.values())


def test_no_mlproject_declares_them_and_every_project_composes_the_window():
    for project in PROJECTS:
        spec = yaml.safe_load((REPO / "projects" / project / "MLproject").read_text())
        for name, entry in spec["entry_points"].items():
            assert not set(entry["parameters"]) & set(shared_params()), (project, name)
            assert "interval" not in entry["command"] and "lookback" not in entry["command"], (project, name)
        cfg = config.compose(REPO / "projects" / project, [])
        assert dict(cfg.window) == {"column": None, "interval": None, "length": None}
        assert not {"interval", "interval_column", "lookback"} & set(cfg.data)


def test_parse_argv_maps_a_shared_option_to_its_config_key():
    argv = ["data=ticks", "--overrides", "seed=7", "--window_column", "ts", "--window_length", "30d",
            "--window", DAY]
    assert config.parse_argv(argv) == ["window.column=ts", "window.length=30d", f"window.interval={DAY}",
                                       "data=ticks", "seed=7"]
    # An empty value (the default, and what the trigger form sends) sets nothing.
    assert config.parse_argv(["data=ticks", "--window", "", "--window_column", "  "]) == ["data=ticks"]


def test_overrides_of_the_same_key_win_over_a_shared_option():
    """As before, when the MLproject's own `++data.interval={interval}` came before `--overrides`."""
    cfg = config.compose(REPO / "projects" / "lightgbm",
                         config.parse_argv(["--overrides", "window.column=date", "--window_column", "ts"]))
    assert cfg.window.column == "date"


def test_an_unknown_option_names_the_valid_ones():
    with pytest.raises(UserError, match=r"^unknown option '--interval'; valid: --overrides, --window, "
                                        r"--window_column, --window_length, --compute; "
                                        r"pass Hydra overrides as key=value"):
        config.parse_argv(["--interval", DAY])
    with pytest.raises(UserError, match="^option --window needs a value"):
        config.parse_argv(["--window"])


@pytest.mark.parametrize("entry_point", ["main", "predict", "sweep"])
def test_mlflow_passes_an_undeclared_param_as_an_option_that_parse_argv_maps(entry_point):
    """`mlflow run projects/lightgbm -P window_column=ts ...`: MLflow renders the entry point's
    command with the undeclared params appended as `--name value` (shell-quoted)."""
    from mlflow.projects import _project_spec

    project = REPO / "projects" / "lightgbm"
    entry = _project_spec.load_project(str(project)).get_entry_point(entry_point)
    command = entry.compute_command({"data": "ticks", "window_column": "ts", "window_length": "30d",
                                     "window": DAY}, storage_dir=None)
    assert command.endswith(f"--window_column ts --window_length 30d --window {DAY}")
    words = shlex.split(command)
    start = next(i for i, w in enumerate(words) if w.endswith("train.py") or w == "mlrecipes.scoring")
    rest = [w for w in words[start + 1:] if not w.endswith("train.py")]
    if entry_point == "sweep":  # the sweep's own options are not overrides
        from mlrecipes.sweep.run import parse_args

        rest = parse_args(rest)[1]
    extra = ["+scoring=default"] if entry_point == "predict" else []
    cfg = config.compose(project, [*config.parse_argv(rest), *extra], optional=("data.target",))
    assert dict(cfg.window) == {"column": "ts", "interval": DAY, "length": "30d"}


# ---------------------------------------------------------------- the launcher and the trigger form


@pytest.mark.parametrize("job", ["xgboost", "ticks_scoring", "lightgbm_sweep", "tf_mnist_cnn", "torch_mnist_mlp"])
def test_every_entry_point_takes_and_checks_the_shared_params(job):
    loaded = schedule.load_schedule()
    j = loaded.job(job)
    assert schedule.check_params(j, {"window": DAY, "window_column": "date", "window_length": "2d"}) == {
        "window": DAY, "window_column": "date", "window_length": "2d"}
    fields = schedule.form_fields(j, loaded.form)
    for name, p in shared_params().items():
        default = j.params.get(name, "")
        # An empty default is optional in Airflow 3's form only with "null" among its types.
        kind = ["null", "string"] if default == "" else "string"
        assert fields[name]["schema"] == {"type": kind, "description": p.help}
        assert fields[name]["default"] == default
    with pytest.raises(UserError, match=r"unknown parameter 'interval' for project .*; valid: .*window, "
                                        r"window_column, window_length, compute$"):
        schedule.check_params(j, {"interval": DAY})


def test_the_scoring_job_filters_on_its_window_column():
    loaded = schedule.load_schedule()
    fields = schedule.form_fields(loaded.job("ticks_scoring"), loaded.form)
    assert fields["window_column"]["default"] == "date" and fields["window"]["default"] == ""


def test_a_shared_param_of_another_type_is_type_checked(tmp_path, monkeypatch):
    from mlrecipes import params

    path = tmp_path / "params.yaml"
    path.write_text("horizon: {key: data.horizon, type: int, default: 0, help: rows ahead}\n")
    monkeypatch.setattr(params, "PARAMS_FILE", path)
    job = schedule.load_schedule().job("xgboost")
    assert schedule.check_params(job, {"horizon": 3.0}) == {"horizon": "3"}
    with pytest.raises(UserError, match=r"parameter horizon='soon' is not a int"):
        schedule.check_params(job, {"horizon": "soon"})
    assert config.parse_argv(["--horizon", "3"]) == ["data.horizon=3"]


@pytest.mark.parametrize(("text", "bad"), [
    ("a=$(x)", "'$' is not allowed"),
    ("seed=1; id", "';' is not allowed"),
    ("seed=1 | id", "'|' is not allowed"),
    ("a='b'", "\"'\" is not allowed"),
    ("seed=1\n", r"'\n' is not allowed"),
    ("seed=`id`", "'`' is not allowed"),
    ("seed", "'seed' is not a key=value token"),
    ("seed=1 a==b", "'a==b' is not a key=value token"),
])
def test_a_refused_overrides_value_names_what_is_refused(text, bad):
    expected = (f"overrides {text!r}: {bad}: expected space-separated key=value tokens "
                "without quotes or shell characters")
    assert schedule.overrides_problem(text) == expected
    job = schedule.load_schedule().job("xgboost")
    with pytest.raises(UserError) as err:
        schedule.check_params(job, {"overrides": text})
    assert str(err.value) == expected


def test_a_good_overrides_value_has_no_problem():
    for text in ("", "seed=7 +x.y=[1,2] ~a.b data.filters=[[date,ge,2026-01-02]]", "++a.b=c:d/e@f%20"):
        assert schedule.overrides_problem(text) is None


def test_an_empty_optional_field_of_the_form_reaches_the_launcher_as_no_value():
    # Airflow 3's form sends null for an optional field the user cleared: no "-P window=None".
    assert schedule.param_text(None) == ""


def test_compute_picks_the_shared_group_for_every_project():
    from mlrecipes.paths import REPO_ROOT

    for project in ("xgboost", "lightgbm", "tf_mnist", "torch_mnist"):
        local = config.compose(REPO_ROOT / "projects" / project, config.parse_argv([]))
        dask = config.compose(REPO_ROOT / "projects" / project, config.parse_argv(["--compute", "dask"]))
        assert (local.compute.kind, dask.compute.kind) == ("local", "dask"), project


def test_scoring_takes_compute_dask_for_tables_and_refuses_it_for_images_in_one_line():
    from mlrecipes.paths import REPO_ROOT
    from mlrecipes.scoring.settings import settings

    def composed(*argv):
        return config.compose(REPO_ROOT / "projects" / "lightgbm",
                              [*config.parse_argv([*argv, "--compute", "dask"]), "+scoring=default"],
                              optional=("data.target",))

    assert settings(composed("data=ticks")).dask  # compute.score scores it on the cluster
    assert not settings(config.compose(REPO_ROOT / "projects" / "lightgbm",
                                       [*config.parse_argv(["data=ticks"]), "+scoring=default"],
                                       optional=("data.target",))).dask
    with pytest.raises(UserError, match="^compute=dask scores tables; an IDX image set is scored in one process"):
        settings(composed("data=mnist", "scoring.output=/tmp/predictions"))
