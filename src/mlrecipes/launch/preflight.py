"""What the launcher settles before it builds or runs anything: paths and data.

- Paths: `mlflow run` runs a project with the project directory as its working directory, so a
  relative `MLRECIPES_DATA_DIR` or `sqlite:///relative.db` would point inside
  `projects/<name>/`. The launcher makes them absolute against the directory it was started from.
- Data: `run-all` checks once, up front, that every MNIST job's files are where the recipe will
  look (downloading them once if the data group allows), so a machine without data fails in
  seconds with the recipe's own one-line error, not after building every project environment.
"""

from __future__ import annotations

from pathlib import Path

from mlrecipes.errors import UserError
from mlrecipes.paths import DEFAULT_DATA_DIR
from mlrecipes.schedule import Job, project_params


def absolute_data_dir(value: str, base: Path) -> str:
    """The data cache root as `mlrecipes.data.cache_root` reads it, relative to `base`, not the project."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def data_config(job: Job):
    """The data group the recipe will compose for this job: the project's default, its `data`
    parameter and any `data.*` of its `overrides` (the other parameters do not change where
    the data is)."""
    from mlrecipes.config import compose, parse_argv

    declared = project_params(job)
    overrides = []
    if "data" in declared:
        overrides.append(f"data={job.params.get('data', declared['data'].get('default'))}")
    text = str(job.params.get("overrides", ""))
    overrides += [o for o in parse_argv(["--overrides", text]) if o.lstrip("+~").startswith("data")]
    return compose(job.project_dir, overrides).data


def check_data(jobs: list[tuple[Job, dict[str, str]]]) -> list[Path]:
    """For (job, its environment) pairs: raise the recipe's one-line UserError if an image job's
    IDX files are missing, else return the directories checked. Missing files are downloaded
    here, once, when the data group allows (what the recipe would do in every job)."""
    from mlrecipes import data

    checked: dict[Path, object] = {}
    for job, env in jobs:
        cfg = data_config(job)
        if not data.is_image_set(cfg):
            continue  # tables and other sources are read (and checked) by the recipe itself
        if cfg.get("dir"):
            root = absolute_data_dir(cfg.dir, job.project_dir)  # relative to train.py's cwd
        else:
            root = env.get("MLRECIPES_DATA_DIR") or DEFAULT_DATA_DIR  # as data.cache_root does
        checked.setdefault(data.cache_root(root) / str(cfg.get("name", "mnist")), cfg)
    for directory, cfg in checked.items():
        for stem, sha256, _ in data.idx_files(cfg).values():
            if any((directory / name).is_file() for name in (f"{stem}.gz", stem)):
                continue
            if not cfg.download or not sha256:
                raise UserError(data.missing_message(directory, cfg, "download disabled"))
            try:
                data.download(stem, directory, list(cfg.mirrors), cfg.timeout, sha256)
            except UserError as exc:
                raise UserError(data.missing_message(directory, cfg, str(exc))) from None
    return list(checked)
