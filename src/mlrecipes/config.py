"""Hydra composition: project config + shared groups in the repository's conf/ + overrides."""

from __future__ import annotations

import shlex
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from mlrecipes.errors import UserError
from mlrecipes.params import shared_params
from mlrecipes.paths import SHARED_CONF


def parse_argv(argv: list[str]) -> list[str]:
    """`key=value` words, `--overrides "a=1 b=2"` (MLflow passes that as one quoted word) and the
    shared parameters of conf/params.yaml, which MLflow passes as `--<name> <value>`.

    The free-form string is split with shlex here instead of by the shell, so no user value
    is ever word-split or glob-expanded by a shell. A shared parameter becomes `<key>=<value>`
    ahead of every other word, so an `overrides` of the same key wins (as the MLproject's own
    parameters, which come before `--overrides`); an empty value sets nothing.
    """
    overrides: list[str] = []
    shared_values: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--overrides":
            value = next(words, "")
            try:
                overrides.extend(shlex.split(value))
            except ValueError as exc:
                raise UserError(f"malformed overrides string {value!r}: {exc}") from None
        elif word.startswith("--"):
            shared = shared_params()
            param = shared.get(word[2:])
            if param is None:
                valid = ", ".join(f"--{name}" for name in ["overrides", *shared])
                raise UserError(f"unknown option {word!r}; valid: {valid}; pass Hydra overrides as key=value")
            value = next(words, None)
            if value is None:
                raise UserError(f"option {word} needs a value")
            if value.strip():
                shared_values.append(f"{param.key}={value}")
        else:
            overrides.append(word)
    # `-P overrides=` defaults to an empty string; drop empty words MLflow may pass.
    return [o for o in [*shared_values, *overrides] if o.strip()]


def compose(project_dir: Path, overrides: list[str], optional: tuple[str, ...] = ()) -> DictConfig:
    """Compose `<project>/conf/config.yaml` with the shared groups; errors become one line.

    `optional`: dotted keys that may stay `???` (scoring needs no `data.target`)."""
    conf_dir = Path(project_dir).resolve() / "conf"
    searchpath = f"hydra.searchpath=[file://{SHARED_CONF}]"
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        # A config group (data=parquet, arch=cnn) is a folder of either conf/; any other key is a value.
        choices = [o for o in parsed if (conf_dir / o.key_or_group).is_dir() or (SHARED_CONF / o.key_or_group).is_dir()]
        values = [o for o in parsed if o not in choices and not o.is_delete()]
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = hydra_compose("config", overrides=[*overrides, searchpath])
            # The same groups without the values: what each overridden key held before (its type).
            if values:
                defaults = hydra_compose("config", overrides=[*(o.input_line for o in choices), searchpath])
        OmegaConf.resolve(cfg)
        for o in values:
            _same_kind(o.key_or_group, defaults, cfg)
    except MissingConfigException as exc:
        group = (exc.missing_cfg_file or "").rsplit("/", 1)
        if exc.options and len(group) == 2:
            raise UserError(
                f"unknown {group[0]} '{group[1]}'; valid: {', '.join(sorted(exc.options))}"
            ) from None
        raise UserError(_first_line(exc)) from None
    except OverrideParseException as exc:
        raise UserError(f"malformed override '{exc.override}': {_first_line(exc)}") from None
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(_first_line(exc)) from None
    missing = sorted(set(OmegaConf.missing_keys(cfg)) - set(optional))
    if missing:
        raise UserError(f"missing required config value(s): {', '.join(missing)}")
    arch_defaults(cfg)
    kind_defaults(cfg)
    return cfg


def _same_kind(key: str, defaults: DictConfig, cfg: DictConfig) -> None:
    """An overridden key holds what its default held: a number, true/false or a list.

    Hydra keeps `train.epochs=abc` as the string 'abc', which would fail later, deep in a
    project, with a TypeError; Hydra checks types only for structured (dataclass) configs."""
    try:
        default = OmegaConf.select(defaults, key, throw_on_missing=True)
    except OmegaConfBaseException:  # ??? or an interpolation that needs another value: any kind
        return
    value = OmegaConf.select(cfg, key)
    if value is None:  # null unsets any key (e.g. an IDX file's item count: not checked)
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int | float):
        ok, kind = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(default, ListConfig):
        ok, kind = isinstance(value, ListConfig), "a list, e.g. [a,b]"
    else:
        return
    if not ok:
        raise UserError(f"{key} must be {kind}, got {value!r}")


def arch_defaults(cfg: DictConfig) -> None:
    """A 0 in `train` or `optimizer` (the MLproject's default for epochs, batch_size and
    learning_rate) takes the variant's own value at the same key under `arch`
    (`arch.train.epochs`, `arch.optimizer.learning_rate`): an MLP and a CNN want different
    schedules, and `-P epochs=3` still sets it for either. A mapping there (`arch.optimizer.params`)
    goes under the config's own, whose keys win. Filled in here, so the logged config shows the
    value that was used."""
    arch = cfg.get("arch")
    if not isinstance(arch, DictConfig):
        return
    for section in ("train", "optimizer"):
        own, top = arch.get(section), cfg.get(section)
        if not isinstance(own, DictConfig) or not isinstance(top, DictConfig):
            continue
        for key, value in own.items():
            if key not in top:
                continue
            if isinstance(value, DictConfig) and isinstance(top[key], DictConfig):
                top[key] = OmegaConf.merge(OmegaConf.to_container(value), OmegaConf.to_container(top[key]))
            elif top[key] in (0, None):
                top[key] = value


def kind_defaults(cfg: DictConfig) -> None:
    """The GBDT projects' model defaults by kind of data: a 0 or null in `model` (the MLproject's
    default for num_boost_round, learning_rate and max_depth / num_leaves; null for the other params)
    takes the value of the run's kind from `model_defaults.<kind>` (conf/model_defaults/images.yaml,
    chosen on MNIST and Fashion-MNIST, or tables.yaml, chosen on tick tables), so a table never
    trains silently with MNIST's coarse bins and column sampling, and `-P learning_rate=0.2` still
    sets it for either.
    The kind is `model.tuned_for` (auto: images for an image set, tables otherwise). Afterwards
    `model_defaults` is dropped and a param no kind sets (still null) left out: the logged config
    holds what trained, and `model.tuned_for` which defaults it came from."""
    presets, model = cfg.get("model_defaults"), cfg.get("model")
    if not isinstance(presets, DictConfig) or not isinstance(model, DictConfig):
        return
    kind = model.get("tuned_for") or "auto"
    if kind == "auto":
        from mlrecipes.data import is_image_set  # pyarrow: only when a project has kinds

        kind = "images" if is_image_set(cfg.data) else "tables"
    if kind not in presets:
        raise UserError(f"model.tuned_for must be auto, {' or '.join(presets)}; got {kind!r}")
    with open_dict(cfg):
        _fill_unset(model, presets[kind])
        model.tuned_for = kind
        params = model.get("params")
        if isinstance(params, DictConfig):
            for key in [k for k, v in params.items() if v is None]:
                del params[key]
        del cfg["model_defaults"]


def _fill_unset(top: DictConfig, own: DictConfig) -> None:
    """`own`'s values where `top` has none (0 or null), mappings key by key; keys only `own` has added."""
    for key, value in own.items():
        if key not in top:
            top[key] = value
        elif isinstance(value, DictConfig) and isinstance(top[key], DictConfig):
            _fill_unset(top[key], value)
        elif top[key] is None or (type(top[key]) in (int, float) and top[key] == 0):  # not False
            top[key] = value


def flatten(cfg: DictConfig) -> dict[str, str]:
    """Dotted keys -> strings, the form MLflow params take."""
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            out[prefix] = str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")[:2]).strip()
    return text or type(exc).__name__
