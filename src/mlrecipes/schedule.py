"""The schedule: conf/schedule.yaml (jobs, profiles, pools, the trigger form) and the job's params.

Read by the Airflow DAG file at every parse, so stdlib + PyYAML only: no mlflow, no framework.
Also the receipt, the JSON file in which the launcher hands the MLflow run to its caller.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import yaml

from mlrecipes.errors import UserError
from mlrecipes.paths import REPO_ROOT, SHARED_CONF
from mlrecipes.store import tracking_uri

SCHEDULE_FILE = SHARED_CONF / "schedule.yaml"

# Hydra override tokens separated by spaces: `key=value`, `+key=value`, `++key=value`, `~key`,
# `~key=value`. No quotes, `$`, `;`, `|`, `&`, backticks, parentheses, globs or redirections:
# nothing a shell would interpret, even though the value never reaches a shell unquoted.
_KEY = r"[A-Za-z_][A-Za-z0-9_.@/\-]*"
_VALUE = r"[A-Za-z0-9_.,:+\-/@%\[\]]*"
_TOKEN = rf"(~{_KEY}(={_VALUE})?|\+{{0,2}}{_KEY}={_VALUE})"
# Tokens separated by spaces only (a newline separates shell commands). `(?!\n)`: Python's `$`
# (jsonschema uses re.search) also matches before a final newline, ECMA's (the browser's) does not.
OVERRIDES_PATTERN = rf"^ *({_TOKEN}( +{_TOKEN})*)? *$(?!\n)"


@dataclass(frozen=True)
class Job:
    """One entry of the schedule, with defaults and the active profile applied."""

    name: str
    project: str
    params: dict = field(default_factory=dict)
    schedule: str | None = None
    tracking_uri: str | None = None
    ui_url: str = "http://127.0.0.1:5000"
    experiment: str = "mnist"
    entry_point: str = "main"
    env_manager: str = "virtualenv"
    env_root: str | None = None
    env: dict = field(default_factory=dict)
    retries: int = 2
    retry_delay_minutes: float = 2
    retry_backoff: float = 2.0
    max_retry_delay_minutes: float = 30
    timeout_minutes: float = 120
    kill_grace_seconds: float = 60
    memory_limit_mb: float | None = None  # summed RSS of the launch's process tree; None: no limit
    pool: str = "default_pool"
    tags: dict = field(default_factory=dict)
    description: str = ""
    projects_dir: str | None = None

    @property
    def project_dir(self) -> Path:
        return REPO_ROOT / (self.projects_dir or "projects") / self.project  # relative: to the repo

    @property
    def exists(self) -> bool:
        return (self.project_dir / "MLproject").is_file()

    def resolved_tracking_uri(self) -> str:
        return tracking_uri(self.tracking_uri)  # the store rule of every command

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


@dataclass(frozen=True)
class Schedule:
    jobs: dict[str, Job]
    form: dict[str, dict]
    pools: dict[str, dict]
    profile: str

    def job(self, name: str) -> Job:
        if name not in self.jobs:
            raise UserError(f"unknown job {name!r}; jobs: {', '.join(self.jobs)}")
        return self.jobs[name]

    def existing(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.exists]


_JOB_KEYS = {f.name for f in fields(Job)} - {"name"}


# libyaml's parser when PyYAML has it: the DAG file parses YAML at every DAG-processor pass.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506  (a safe loader)


@lru_cache(maxsize=64)
def mlproject(project_dir: Path) -> dict:
    return _yaml((project_dir / "MLproject").read_text()) or {}


def load_schedule(path: str | Path | None = None, profile: str | None = None) -> Schedule:
    """Read the schedule; $MLRECIPES_SCHEDULE and $MLRECIPES_PROFILE pick file and profile."""
    path = Path(path or os.environ.get("MLRECIPES_SCHEDULE") or SCHEDULE_FILE)
    profile = profile or os.environ.get("MLRECIPES_PROFILE") or "local"
    try:
        doc = _yaml(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read schedule {path}: {exc}") from None
    profiles = doc.get("profiles") or {}
    if profile not in profiles:
        raise UserError(f"unknown profile {profile!r} in {path}; profiles: {', '.join(profiles)}")
    base = _merge(doc.get("defaults") or {}, profiles[profile] or {})
    jobs = {}
    for name, entry in (doc.get("jobs") or {}).items():
        merged = _merge(base, entry or {})
        unknown = sorted(set(merged) - _JOB_KEYS)
        if unknown or "project" not in merged:
            problem = f"unknown key(s) {', '.join(unknown)}" if unknown else "no project"
            raise UserError(f"schedule job {name!r}: {problem}")
        limit = merged.get("memory_limit_mb")
        merged["memory_limit_mb"] = memory_limit(limit, f"schedule job {name!r}: memory_limit_mb")
        jobs[name] = Job(name=name, **merged)
    return Schedule(jobs, doc.get("form") or {}, doc.get("pools") or {}, profile)


def memory_limit(value, name: str = "memory_limit_mb") -> float | None:
    """None (no limit) or a positive number of MB; anything else is a UserError."""
    if value is None:
        return None
    try:
        mb = float(value) if not isinstance(value, bool) else 0.0
    except (TypeError, ValueError):
        mb = 0.0
    if not mb > 0 or mb == float("inf"):
        raise UserError(f"{name} {value!r} is not a positive number of MB")
    return mb


def _merge(base: dict, over: dict) -> dict:
    """Later wins; the `env`, `tags` and `params` mappings are merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if key in ("env", "tags", "params") and isinstance(value, dict):
            out[key] = {**(out.get(key) or {}), **value}
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- MLproject params and the form


def project_params(job: Job) -> dict[str, dict]:
    """The entry point's declared parameters: {name: {type, default}}."""
    spec = mlproject(job.project_dir)
    entry = (spec.get("entry_points") or {}).get(job.entry_point)
    if entry is None:
        raise UserError(f"project {job.project} has no entry point {job.entry_point!r}")
    return {k: (v if isinstance(v, dict) else {"type": "string", "default": v})
            for k, v in (entry.get("parameters") or {}).items()}


def form_fields(job: Job, form: dict[str, dict]) -> dict[str, dict]:
    """JSON schema + default of every parameter, for the Airflow trigger form (defaults = the job's)."""
    out = {}
    for name, spec in project_params(job).items():
        schema = dict(form.get(name) or {"type": _JSON_TYPES.get(spec.get("type", "string"), "string")})
        if name == "overrides":
            schema["pattern"] = OVERRIDES_PATTERN
        default = job.params.get(name, spec.get("default"))
        if schema.get("type") == "integer" and isinstance(default, float) and default.is_integer():
            default = int(default)  # MLproject floats like 400.0 shown as 400 in an integer field
        out[name] = {"default": default, "schema": schema}
    return out


_JSON_TYPES = {"float": "number", "int": "integer", "string": "string", "path": "string", "uri": "string"}


def check_params(job: Job, params: dict) -> dict[str, str]:
    """Names declared by the project, values of the declared type, overrides well formed."""
    declared = project_params(job)
    out = {}
    for name, value in params.items():
        if name not in declared:
            raise UserError(f"unknown parameter {name!r} for project {job.project}; "
                            f"valid: {', '.join(declared)}")
        text = param_text(value)
        kind = declared[name].get("type", "string")
        try:
            {"float": float, "int": int}.get(kind, str)(text)
        except ValueError:
            raise UserError(f"parameter {name}={text!r} is not a {kind}") from None
        if name == "overrides" and not re.search(OVERRIDES_PATTERN, text):
            raise UserError(f"overrides {text!r}: expected space-separated key=value tokens "
                            "without quotes or shell characters")
        out[name] = text
    return out


def param_text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 12.0 from a JSON form would reach Hydra as a float
    return str(value)


# ---------------------------------------------------------------- the receipt


def read_receipt(path: str | Path) -> dict | None:
    """{job, run_id, experiment_id, url, status} as the launcher wrote it, or None."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
