"""Shared MLproject parameters (conf/params.yaml): taken by every entry point of every project
without being declared in its MLproject.

MLflow passes a parameter an entry point does not declare to its command as `--<name> <value>`
(mlflow/projects/_project_spec.py, EntryPoint.compute_command); `config.parse_argv` turns that into
the Hydra override `<key>=<value>`, and `schedule` type-checks it and puts it in the trigger form.
Read by the Airflow DAG file at every parse too, so stdlib + PyYAML only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from mlrecipes.errors import UserError
from mlrecipes.paths import SHARED_CONF

PARAMS_FILE = SHARED_CONF / "params.yaml"
TYPES = ("string", "float", "int")  # MLproject parameter types a shared one may have


@dataclass(frozen=True)
class SharedParam:
    name: str  # the MLproject parameter: -P <name>=<value>, --<name> <value> on the command line
    key: str  # the config key it sets, e.g. window.interval
    type: str = "string"
    default: object = ""  # "" sets nothing: the config's own value stays
    help: str = ""

    def spec(self) -> dict:
        """As an MLproject declares a parameter: {type, default} (+ description for the form)."""
        return {"type": self.type, "default": self.default, **({"description": self.help} if self.help else {})}


def shared_params(path: Path | None = None) -> dict[str, SharedParam]:
    """{name: SharedParam} of conf/params.yaml, in the file's order."""
    return _load(Path(path or PARAMS_FILE))


@lru_cache(maxsize=8)
def _load(path: Path) -> dict[str, SharedParam]:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping of parameter names")
    out = {}
    for name, entry in doc.items():
        if not isinstance(entry, dict) or not entry.get("key"):
            raise UserError(f"{path}: parameter {name!r} needs a `key` (the config key it sets)")
        unknown = sorted(set(entry) - {"key", "type", "default", "help"})
        if unknown:
            raise UserError(f"{path}: parameter {name!r}: unknown key(s) {', '.join(unknown)}")
        kind = str(entry.get("type", "string"))
        if kind not in TYPES:
            raise UserError(f"{path}: parameter {name!r}: type {kind!r}; valid: {', '.join(TYPES)}")
        out[str(name)] = SharedParam(str(name), str(entry["key"]), kind, entry.get("default", ""),
                                     str(entry.get("help") or ""))
    return out
