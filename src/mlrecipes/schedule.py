"""The schedule: conf/schedule.yaml (jobs, profiles, pools, the trigger form) and the job's params.

Read by the Airflow DAG file at every parse, so stdlib + PyYAML only: no mlflow, no framework.
`job_problems` is the one verdict on each job (the DAG file builds the jobs it passes, its
import-error report and `list` name the others). Also the receipt, the JSON file in which the
launcher hands the MLflow run to its caller.
"""

from __future__ import annotations

import json
import os
import re
import string
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import yaml

from mlrecipes.errors import UserError, one_line
from mlrecipes.params import shared_params
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
# Every character the pattern lets through somewhere (_KEY, _VALUE, `=`, `~`, `+`, the space):
# any other one is named in the error.
_OVERRIDES_CHARS = frozenset(string.ascii_letters + string.digits + "_.,:+-/@%[]=~ ")


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
    # Entries that are not a job at all (unknown key, no project...): {name: problem}. Only a
    # `load_schedule(strict=False)` keeps them here; a strict load raises on the first one.
    invalid: dict[str, str] = field(default_factory=dict)

    def job(self, name: str) -> Job:
        if name in self.invalid:
            raise UserError(f"schedule job {name!r}: {self.invalid[name]}")
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


def load_schedule(path: str | Path | None = None, profile: str | None = None, strict: bool = True) -> Schedule:
    """Read the schedule; $MLRECIPES_SCHEDULE and $MLRECIPES_PROFILE pick file and profile.

    strict=False: an entry that is not a valid job goes to `Schedule.invalid` instead of failing
    the whole file (the Airflow DAG file: one bad entry must not take down the other jobs)."""
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
    jobs, invalid = {}, {}
    for name, entry in (doc.get("jobs") or {}).items():
        try:
            jobs[str(name)] = _job(str(name), base, entry)
        except UserError as exc:
            if strict:
                raise UserError(f"schedule job {name!r}: {exc}") from None
            invalid[str(name)] = str(exc)
    return Schedule(jobs, doc.get("form") or {}, doc.get("pools") or {}, profile, invalid)


def _job(name: str, base: dict, entry) -> Job:
    if entry is not None and not isinstance(entry, dict):
        raise UserError(f"expected a mapping of settings, got {entry!r}")
    merged = _merge(base, entry or {})
    unknown = sorted(set(merged) - _JOB_KEYS)
    if unknown or "project" not in merged:
        raise UserError(f"unknown key(s) {', '.join(unknown)}" if unknown else "no project")
    merged["memory_limit_mb"] = memory_limit(merged.get("memory_limit_mb"))
    return Job(name=name, **merged)


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
    """The entry point's parameters: {name: {type, default}}: those its MLproject declares, then
    the shared ones of conf/params.yaml (`mlflow run` passes them as `--<name> <value>`)."""
    spec = mlproject(job.project_dir)
    entry = (spec.get("entry_points") or {}).get(job.entry_point)
    if entry is None:
        raise UserError(f"project {job.project} has no entry point {job.entry_point!r}")
    declared = {k: (v if isinstance(v, dict) else {"type": "string", "default": v})
                for k, v in (entry.get("parameters") or {}).items()}
    return {**declared, **{name: p.spec() for name, p in shared_params().items() if name not in declared}}


def form_fields(job: Job, form: dict[str, dict]) -> dict[str, dict]:
    """JSON schema + default of every parameter, for the Airflow trigger form (defaults = the job's)."""
    out = {}
    for name, spec in project_params(job).items():
        schema = dict(form.get(name) or {"type": _JSON_TYPES.get(spec.get("type", "string"), "string")})
        if spec.get("description") and "description" not in schema:  # a shared parameter's help
            schema["description"] = spec["description"]
        if name == "overrides":
            schema["pattern"] = OVERRIDES_PATTERN
        if name == "data":  # the data group's options themselves: no second list to keep in sync
            schema["enum"] = data_options(job)
        default = job.params.get(name, spec.get("default"))
        if schema.get("type") == "integer" and isinstance(default, float) and default.is_integer():
            default = int(default)  # MLproject floats like 400.0 shown as 400 in an integer field
        if default == "" and schema.get("type") == "string":
            # Optional: Airflow 3's form takes a field whose type lacks "null" as required and an empty
            # string as missing, and keeps its Trigger button disabled until every such field is filled.
            schema["type"] = ["null", "string"]
        out[name] = {"default": default, "schema": schema}
    return out


_JSON_TYPES = {"float": "number", "int": "integer", "string": "string", "path": "string", "uri": "string"}


def data_options(job: Job) -> list[str]:
    """The `data` group's options for the job's project: conf/data/<name>.yaml of the project
    and of the repository (Hydra searches both)."""
    folders = (job.project_dir / "conf" / "data", SHARED_CONF / "data")
    return sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})


def check_params(job: Job, params: dict) -> dict[str, str]:
    """Names the entry point takes (its MLproject's or the shared ones), values of their type,
    overrides well formed."""
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
        if name == "overrides":
            problem = overrides_problem(text)
            if problem:
                raise UserError(problem)
        out[name] = text
    return out


def overrides_problem(text: str) -> str | None:
    """Why an `overrides` value fails OVERRIDES_PATTERN, naming the character (or token) at fault;
    None when it passes."""
    if re.search(OVERRIDES_PATTERN, text):
        return None
    bad = next((c for c in text if c not in _OVERRIDES_CHARS), None)
    if bad is not None:
        what = f"{bad!r} is not allowed"
    else:  # only allowed characters, in a shape that is no token: `seed`, `a==b`, `=1`
        token = next((t for t in text.split(" ") if t and not re.fullmatch(_TOKEN, t)), text)
        what = f"{token!r} is not a key=value token"
    return f"overrides {text!r}: {what}: expected space-separated key=value tokens without quotes or shell characters"


def param_text(value) -> str:
    if value is None:  # an optional field the trigger form sent empty
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 12.0 from a JSON form would reach Hydra as a float
    return str(value)


# ---------------------------------------------------------------- each job's verdict

SKIPPED = "skipped: no MLproject"  # a job whose project does not exist (yet): not scheduled, not an error

# Airflow's dag_id characters (the DAG of job <name> is mlrecipes_<name>).
_JOB_NAME = re.compile(r"[\w.\-]{1,200}")
# Airflow's cron presets (airflow.utils.dates.cron_presets) and its two special schedules.
_PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
            "@monthly": "0 0 1 * *", "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *"}
_NUMBERS = ("retry_delay_minutes", "retry_backoff", "max_retry_delay_minutes", "timeout_minutes",
            "kill_grace_seconds")


def job_problems(schedule: Schedule) -> dict[str, str | None]:
    """Why each job of the schedule is not scheduled, or None when it is: the one verdict the
    Airflow DAG file builds its DAGs from, its import-error report shows and `list` prints.

    SKIPPED for a job whose project does not exist; otherwise the problem in one line: the job's
    settings, its schedule, its project's entry point, its params (names, types, overrides, the
    `data` group's options) and every default of the trigger form checked against its schema, as
    Airflow checks a trigger. The checks of Airflow-only settings (schedule expression, form
    schema) use Airflow's own libraries (croniter, jsonschema) and are skipped without them."""
    problems: dict[str, str | None] = {name: _job_problem(job, schedule.form) for name, job in schedule.jobs.items()}
    problems.update(schedule.invalid)
    return problems


def _job_problem(job: Job, form: dict[str, dict]) -> str | None:
    problem = _settings_problem(job)
    if problem or not job.exists:
        return problem or SKIPPED
    try:
        fields_ = form_fields(job, form)
        check_params(job, job.params)
    except UserError as exc:
        return str(exc)
    except (OSError, yaml.YAMLError) as exc:
        return f"cannot read {job.project_dir / 'MLproject'}: {one_line(exc)}"
    data = fields_.get("data")
    if data is not None and data["default"] not in data["schema"]["enum"]:
        return (f"data {data['default']!r} is not a data group: no conf/data/{data['default']}.yaml "
                f"(options: {', '.join(data['schema']['enum'])})")
    return _form_problem(fields_)


def _settings_problem(job: Job) -> str | None:
    if not _JOB_NAME.fullmatch(job.name):
        return "a job's name is letters, digits, '_', '.' and '-' (its DAG id is mlrecipes_<name>)"
    for key in ("params", "env", "tags"):
        if not isinstance(getattr(job, key), dict):
            return f"{key} must be a mapping, got {getattr(job, key)!r}"
    if isinstance(job.retries, bool) or not isinstance(job.retries, int) or job.retries < 0:
        return f"retries must be a whole number >= 0, got {job.retries!r}"
    for key in _NUMBERS:
        value = getattr(job, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
            return f"{key} must be a number >= 0, got {value!r}"
    if not job.timeout_minutes > 0:
        return f"timeout_minutes must be above 0, got {job.timeout_minutes!r}"
    if not isinstance(job.pool, str) or not job.pool:
        return f"pool must be a pool's name, got {job.pool!r}"
    return _schedule_problem(job.schedule)


def _schedule_problem(expression) -> str | None:
    if expression is None or expression in ("@once", "@continuous"):
        return None
    if not isinstance(expression, str):
        return f"schedule must be a cron expression or preset, got {expression!r}"
    try:
        from croniter import croniter  # Airflow's cron parser (Airflow installs it)
    except ImportError:
        return None
    try:
        croniter(_PRESETS.get(expression, expression))
    except (ValueError, KeyError) as exc:  # croniter's errors are ValueErrors
        return f"schedule {expression!r} is not a cron expression or preset ({one_line(exc)})"
    return None


def _form_problem(fields_: dict[str, dict]) -> str | None:
    """A default the trigger form would reject (conf/schedule.yaml `form`), as Airflow's Param does."""
    try:
        import jsonschema  # what Airflow's Param validates with (Airflow installs it)
    except ImportError:
        return None
    for name, f in fields_.items():
        try:
            jsonschema.validate(f["default"], f["schema"], format_checker=jsonschema.FormatChecker())
        except jsonschema.ValidationError as exc:
            return f"parameter {name}={f['default']!r} is not valid in the trigger form: {one_line(exc.message)}"
        except jsonschema.SchemaError as exc:
            return f"the trigger form's schema of {name} is not a JSON schema: {one_line(exc.message)}"
    return None


# ---------------------------------------------------------------- the receipt


def read_receipt(path: str | Path) -> dict | None:
    """{job, run_id, experiment_id, url, status} as the launcher wrote it, or None."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
