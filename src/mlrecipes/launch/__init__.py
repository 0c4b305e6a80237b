"""The launcher: how a job of conf/schedule.yaml becomes an MLflow Project run.

- `project`: launch one job (the run, its environment, mlflow.projects.run in-process, closing it)
- `envs`: the project environment's lock, check and rebuild
- `preflight`: paths and data settled before anything is built
- `supervise`: signals forwarded to the children, memory of the process tree, how a child died
- `reap`: runs lost with their process ended FAILED
- `verbs`: what the `mlrecipes` verbs do with the schedule (list, config, run --all, reap, ad-hoc jobs)
"""

from mlrecipes.launch.envs import environ_replaced, prepare_env
from mlrecipes.launch.project import child_env, launch
from mlrecipes.launch.verbs import (
    composed_config,
    job_for,
    job_named,
    list_jobs,
    reap_jobs,
    run_all,
    with_memory_limit,
    with_tracking_uri,
)

__all__ = ["child_env", "composed_config", "environ_replaced", "job_for", "job_named", "launch", "list_jobs",
           "prepare_env", "reap_jobs", "run_all", "with_memory_limit", "with_tracking_uri"]
