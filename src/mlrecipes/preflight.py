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
from mlrecipes.schedule import Job, project_params

_SQLITE = "sqlite:///"


def absolute_tracking_uri(uri: str, base: Path) -> str:
    """`sqlite:///rel.db` -> `sqlite:////<base>/rel.db`; every other URI is returned as is."""
    if not uri.startswith(_SQLITE):
        return uri
    path, sep, query = uri[len(_SQLITE):].partition("?")
    if not path or path == ":memory:" or path.startswith("/"):
        return uri
    return f"{_SQLITE}{(base / path).resolve()}{sep}{query}"


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
    """For (job, its environment) pairs: raise the recipe's one-line UserError if an MNIST job's
    files are missing, else return the directories checked. Missing files are downloaded here,
    once, when the data group allows (what the recipe would do in every job)."""
    from mlrecipes import data

    checked: dict[Path, object] = {}
    for job, env in jobs:
        cfg = data_config(job)
        if cfg.get("kind") != "mnist":
            continue  # tables and other sources are read (and checked) by the recipe itself
        if cfg.get("dir"):
            root = absolute_data_dir(cfg.dir, job.project_dir)  # relative to train.py's cwd
        else:
            root = env.get("MLRECIPES_DATA_DIR") or "~/.cache/mlrecipes"  # as data.cache_root does
        checked.setdefault(data.cache_root(root) / "mnist", cfg)
    for directory, cfg in checked.items():
        missing = [stem for stem in data.MNIST_FILES
                   if not any((directory / name).is_file() for name in (f"{stem}.gz", stem))]
        for stem in missing:
            if not cfg.download:
                raise UserError(_missing(directory, "download disabled"))
            try:
                data.download(stem, directory, list(cfg.mirrors), cfg.timeout, data.MNIST_FILES[stem])
            except UserError as exc:
                raise UserError(_missing(directory, str(exc))) from None
    return list(checked)


def _missing(directory: Path, why: str) -> str:
    # The recipe's wording (mlrecipes.data), so `make run` and a single run say the same thing.
    from mlrecipes.data import MNIST_FILES

    names = ", ".join(f"{stem}.gz" for stem in MNIST_FILES)
    return (f"MNIST not found in {directory} and could not be downloaded ({why}); "
            f"put {names} there or set MLRECIPES_DATA_DIR to a directory whose mnist/ holds them")

