"""What the `mlrecipes` verbs do with the schedule: list its jobs, show a job's composed config,
run an ad-hoc scoring or sweep of a project, reap stale runs."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace

from mlrecipes.errors import EXIT_TERMINATED, UserError
from mlrecipes.launch.preflight import check_data
from mlrecipes.launch.project import child_env, launch
from mlrecipes.launch.reap import parse_duration, reap
from mlrecipes.schedule import Job, Schedule, check_params, job_problems, memory_limit
from mlrecipes.store import store_init_lock


def with_tracking_uri(schedule: Schedule, uri: str) -> Schedule:
    """Every job on the store the command line named (it wins over the profile's)."""
    return replace(schedule, jobs={n: replace(j, tracking_uri=uri) for n, j in schedule.jobs.items()})


def with_memory_limit(schedule: Schedule, value) -> Schedule:
    limit = memory_limit(value, "--memory-limit-mb")
    return replace(schedule, jobs={n: replace(j, memory_limit_mb=limit) for n, j in schedule.jobs.items()})


def job_for(schedule: Schedule, target: str, entry_point: str) -> Job:
    """The job of the schedule named `target` when its entry point is this one, else an ad-hoc job
    of the project named `target` (job and project names may coincide: `xgboost`).

    An ad-hoc job takes the profile's settings (store, environment manager, limits) from the first
    job of the same project; scoring runs go to the experiment `<project>-scoring`, a sweep to the
    project's training experiment."""
    job = schedule.jobs.get(target)
    if job is not None and job.entry_point == entry_point:
        return job
    same = [j for j in schedule.jobs.values() if j.project == target]
    if not same:
        if job is not None:
            raise UserError(f"job {target!r} runs entry point {job.entry_point!r}, not {entry_point!r}; "
                            f"`mlrecipes run {target}` runs it")
        projects = sorted({j.project for j in schedule.jobs.values()})
        raise UserError(f"{target!r} is neither a job nor a project of the schedule; projects: {', '.join(projects)}")
    base = same[0]
    experiment = f"{target}-scoring" if entry_point == "predict" else base.experiment
    return replace(base, name=f"{target}-{entry_point}", entry_point=entry_point, params={}, schedule=None,
                   experiment=experiment, description=f"ad-hoc {entry_point} of project {target}")


def job_named(schedule: Schedule, name: str) -> Job:
    """A job of the schedule, or an ad-hoc job by the name job_for gave it (`<project>-<entry point>`):
    the launcher hands that name to its `prepare-env` child."""
    if name not in schedule.jobs and name not in schedule.invalid:
        for entry_point in ("predict", "sweep"):
            project = name.removesuffix(f"-{entry_point}")
            if project != name and any(j.project == project for j in schedule.jobs.values()):
                return job_for(schedule, project, entry_point)
    return schedule.job(name)


def composed_config(job: Job, params: dict) -> str:
    """The config the job's entry point would compose (YAML), from MLflow's own rendering of the
    MLproject command: the same parameter defaults, substitution and quoting as `mlflow run`."""
    from mlflow.projects import _project_spec
    from omegaconf import OmegaConf

    from mlrecipes import config

    if not job.exists:
        raise UserError(f"job {job.name}: project {job.project_dir} has no MLproject")
    values = check_params(job, {**job.params, **params})
    entry = _project_spec.load_project(str(job.project_dir)).get_entry_point(job.entry_point)
    words = shlex.split(entry.compute_command(values, storage_dir=None))
    # `python train.py <words>`, `python -m mlrecipes.scoring <words>`, `-m mlrecipes.sweep train.py <opts> <words>`
    start = next(i for i, w in enumerate(words) if w.endswith("train.py") or w.startswith("mlrecipes."))
    words = words[start + 1:]
    if words and words[0].endswith("train.py"):
        words = words[1:]
    words = _without_sweep_options(words)
    optional: tuple[str, ...] = ()
    if job.entry_point == "predict":
        words, optional = [*words, "+scoring=default"], ("data.target",)
    cfg = config.compose(job.project_dir, config.parse_argv(words), optional=optional)
    return OmegaConf.to_yaml(cfg)


def _without_sweep_options(words: list[str]) -> list[str]:
    """The sweep's own options (--sweep, --trials, ...) are not Hydra overrides: a trial composes without them."""
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("--sweep", "--trials", "--budget-minutes", "--study"):
            skip = True
        else:
            out.append(word)
    return out


def list_jobs(schedule: Schedule) -> str:
    """One line a job: name, project, schedule, pool and the DAG file's verdict (schedule.job_problems)."""
    problems = job_problems(schedule)
    lines = []
    for name, problem in problems.items():
        job = schedule.jobs.get(name)
        if job is None:  # an entry that is no job at all (schedule.invalid)
            lines.append(f"{name:18} {'-':12} {'-':12} {'-':14} {problem}")
        else:
            lines.append(f"{name:18} {job.project:12} {str(job.schedule):12} {job.pool:14} {problem or 'ready'}")
    return "\n".join(lines)


def run_all(schedule: Schedule) -> int:
    """Every training job once, then the leaderboard. Scoring jobs (entry point predict) need a
    champion and their input table; sweeps (many trainings) run on their own schedule or with
    `mlrecipes run <job>`."""
    from mlrecipes import leaderboard

    jobs = [job for job in schedule.existing() if job.entry_point == "main"]
    # Data first: without it every job would build its environment (minutes) and then fail.
    check_data([(job, child_env(job)) for job in jobs])
    failed = []
    for job in jobs:
        print(f"[jobs] === {job.name} ===", flush=True)
        rc = launch(job)
        if rc == EXIT_TERMINATED:
            return rc
        if rc:
            failed.append(job.name)
    skipped = [j.name for j in schedule.jobs.values() if not j.exists]
    if skipped:
        print(f"[jobs] skipped (project not present): {', '.join(skipped)}", flush=True)
    others = [j.name for j in schedule.existing() if j.entry_point != "main"]
    if others:
        print(f"[jobs] not run here (scoring, sweeps: `mlrecipes run <job>`): {', '.join(others)}", flush=True)
    if jobs:
        leaderboard.show(child_env(jobs[0])["MLFLOW_TRACKING_URI"])
    if failed:
        print(f"error: failed job(s): {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


def reap_jobs(schedule: Schedule, older_than: str, job: str | None) -> int:
    """End FAILED the RUNNING runs (of `job`) older than `older_than` in every store the jobs use."""
    import mlflow

    max_age_s = parse_duration(older_than)
    if job is not None:
        schedule.job(job)  # an unknown name is an error, not "nothing to reap"
    uris = {child_env(j)["MLFLOW_TRACKING_URI"] for j in schedule.jobs.values()}
    for uri in sorted(uris):
        with store_init_lock(uri):
            client = mlflow.MlflowClient(uri)
        reaped = reap(client, max_age_s, job=job)
        print(f"[jobs] {uri}: {len(reaped)} stale run(s) ended FAILED", flush=True)
    return 0
