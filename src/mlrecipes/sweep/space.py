"""The search space: `projects/<name>/conf/sweep/<sweep>.yaml`'s `params`, config keys mapped to
expressions in Hydra's sweeper vocabulary (`interval(a, b)`, `int(interval(a, b))`,
`range(start, stop, step)`, `choice(a, b, ...)`, `tag(log, interval(a, b))`), read with Hydra's own
override grammar (`hydra.core.override_parser`) and turned into Optuna distributions; and back: a
trial's sampled values as overrides for Hydra's compose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlrecipes.errors import UserError, one_line


@dataclass(frozen=True)
class Param:
    key: str  # config key, as in the override (`model.params.num_leaves`)
    add: bool  # `+key`: a key the config does not have yet (e.g. a library parameter left at its default)
    expression: str
    distribution: object | None  # an optuna distribution; None for a fixed value
    fixed: str | None = None  # the override's value text, for fixed values

    @property
    def name(self) -> str:
        return self.key


def parse_space(params, base_cfg) -> list[Param]:
    """Each `key: expression` through Hydra's override grammar, checked against the composed config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, OverrideType, RangeSweep
    from hydra.errors import HydraException

    if not params:
        raise UserError("the sweep's params are empty: give at least one `config.key: interval(a, b)`")
    parser = OverridesParser.create()
    out = []
    for raw_key, expression in dict(params).items():
        text = f"{raw_key}={_expression_text(expression)}"
        try:
            override = parser.parse_override(text)
        except HydraException as exc:
            raise UserError(f"sweep parameter {raw_key}: cannot parse {expression!r}: {one_line(exc)}") from None
        key, add = override.key_or_group, override.type == OverrideType.ADD
        if override.type not in (OverrideType.CHANGE, OverrideType.ADD) or override.package:
            raise UserError(f"sweep parameter {raw_key}: only `key` or `+key` may be swept")
        present = _has_key(base_cfg, key)
        if not add and not present:
            raise UserError(f"sweep parameter {key!r} is not in the config of {base_cfg.project}; "
                            f"check the key or write `+{key}` to add a new one")
        if add and present:
            raise UserError(f"sweep parameter +{key}: the config already has {key!r}; drop the `+`")
        value = override.value()
        if not override.is_sweep_override():
            out.append(Param(key, add, str(expression), None, override.get_value_element_as_str()))
            continue
        text = _expression_text(expression)
        out.append(Param(key, add, text, _distribution(key, text, value, override, ChoiceSweep, IntervalSweep,
                                                        RangeSweep)))
    return out


def _expression_text(expression) -> str:
    if isinstance(expression, bool):
        return str(expression).lower()
    return "null" if expression is None else str(expression)


def _has_key(cfg, key: str) -> bool:
    from omegaconf import OmegaConf

    node, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, node) if node else cfg
    return parent is not None and OmegaConf.is_dict(parent) and leaf in parent


def _distribution(key, text, value, override, ChoiceSweep, IntervalSweep, RangeSweep):
    import optuna.distributions as d

    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator())
        bad = [c for c in choices if not isinstance(c, (str, int, float, bool))]
        if bad:
            raise UserError(f"sweep parameter {key}: choices must be numbers, strings or booleans, got {bad[0]!r}")
        if not choices:
            raise UserError(f"sweep parameter {key}: empty choice")
        return d.CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        items = list(override.sweep_iterator())
        if not items:
            raise UserError(f"sweep parameter {key}: {text} is an empty range")
        step = value.step
        if any(isinstance(x, float) for x in (value.start, value.stop, step)):
            return d.FloatDistribution(float(items[0]), float(items[-1]), step=float(step)) if len(items) > 1 \
                else d.CategoricalDistribution([float(items[0])])
        # Hydra's range stops before `stop`, as Python's does; optuna's high is inclusive: the last item.
        return d.IntDistribution(int(items[0]), int(items[-1]), step=int(step)) if len(items) > 1 \
            else d.CategoricalDistribution([int(items[0])])
    if isinstance(value, IntervalSweep):
        start, end, log = value.start, value.end, "log" in value.tags
        if not start < end:
            raise UserError(f"sweep parameter {key}: interval({start}, {end}) is an empty range")
        if log and start <= 0:
            raise UserError(f"sweep parameter {key}: a log interval must start above 0, got {start}")
        if isinstance(start, int) and isinstance(end, int):  # int(interval(a, b))
            return d.IntDistribution(start, end, log=log)
        return d.FloatDistribution(float(start), float(end), log=log)
    raise UserError(f"sweep parameter {key}: unsupported sweep {text}")


def suggest(trial, p: Param):
    import optuna.distributions as d

    dist = p.distribution
    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(p.name, list(dist.choices))
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(p.name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(p.name, dist.low, dist.high, step=dist.step, log=dist.log)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*")


def override_text(p: Param, value) -> str:
    """`key=value` (or `+key=value`) for Hydra's compose, the value written as the grammar reads it."""
    if p.distribution is None:
        text = p.fixed
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif _PLAIN.fullmatch(str(value)) and str(value).lower() not in ("true", "false", "null", "nan", "inf"):
        text = str(value)
    else:
        text = "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{'+' if p.add else ''}{p.key}={text}"
