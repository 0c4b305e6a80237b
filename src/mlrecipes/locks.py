"""Locked environments: every package of an environment pinned, with hashes, compiled from its top-level list.

Each environment has a top-level list `<name>.in` (what we ask for, pinned: `mlflow==3.17.2`) and a
lock `<name>.lock` beside it that `uv pip compile` makes from it (every transitive package,
`==` and `--hash`), for Python 3.11 on linux x86_64 (manylinux 2.28):
- projects/<p>/requirements.in -> requirements.lock: what python_env.yaml installs (`-r requirements.lock`);
  MLflow names a cached environment by the hash of python_env.yaml *with the files it references
  expanded*, so a new lock gets a new environment, never a stale cached one;
- requirements/run.in, dev.in -> run.lock, dev.lock: the orchestration .venv (make run / make test).

The first line of a lock records the digest of its top-level list (comments and blank lines
left out), so `python -m mlrecipes.locks check` (no network) knows when a list changed and its
lock was not compiled again. `python -m mlrecipes.locks compile` (make lock) compiles every one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mlrecipes.paths import REPO_ROOT

# The target every lock is resolved for: the Python of python_env.yaml, the workers' platform.
PYTHON_VERSION = "3.11.7"  # python_env.yaml's and the .venv's
PLATFORM = "x86_64-manylinux_2_28"
HEADER = "# mlrecipes-lock: compiled from {source} sha256={digest}"
_HEADER_RE = re.compile(r"^# mlrecipes-lock: compiled from (\S+) sha256=([0-9a-f]{64})$")
# What running needs in the .venv besides pyproject.toml's dependencies (requirements/run.lock).
RUN_EXTRAS = ("airflow", "envs")
_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def norm(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _logical_lines(text: str) -> list[str]:
    """Requirement lines: continuations joined, comments and blank lines dropped."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            lines.append(" ".join(line.split()))
    return lines


def pins(text: str) -> dict[str, str]:
    """{normalised name: version} of every `name==version` line of a requirements text."""
    found = {}
    for line in _logical_lines(text):
        m = _PIN_RE.match(line)
        if m:
            found[norm(m.group(1))] = m.group(3)
    return found


@dataclass(frozen=True)
class Source:
    """A top-level list (a `.in` file, or pyproject.toml with extras) and the lock compiled from it."""

    path: Path
    lock: Path
    extras: tuple[str, ...] = ()
    constraints: tuple[Path, ...] = ()  # locks this one must agree with (dev.lock keeps run.lock's pins)

    def requirements(self) -> list[str]:
        if self.path.suffix != ".toml":
            return _logical_lines(self.path.read_text())
        import tomllib

        project = tomllib.loads(self.path.read_text())["project"]
        optional = project.get("optional-dependencies", {})
        return [*project.get("dependencies", []), *(r for extra in self.extras for r in optional[extra])]

    def digest(self) -> str:
        """sha256 of the requirement lines (and of the locks it is constrained by): comments need no new lock."""
        text = "\n".join([*self.requirements(), *(hashlib.sha256(c.read_bytes()).hexdigest()
                                                   for c in self.constraints if c.is_file())])
        return hashlib.sha256(text.encode()).hexdigest()


def sources(root: Path = REPO_ROOT) -> list[Source]:
    """Every environment's top-level list and lock: the projects' (python_env.yaml) and the .venv's.

    The .venv: run.lock (make run), then one lock per other extra of pyproject.toml (dev.lock for
    make test, ...), each holding run.lock's versions of what they share, so one installs over the other."""
    projects = [Source(p, p.with_suffix(".lock")) for p in sorted(root.glob("projects/*/requirements*.in"))]
    import tomllib

    pyproject = root / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"].get("optional-dependencies", {})
    run = root / "requirements" / "run.lock"
    venv = [Source(pyproject, run, RUN_EXTRAS)]
    venv += [Source(pyproject, root / "requirements" / f"{extra}.lock", (*RUN_EXTRAS, extra), (run,))
             for extra in sorted(extras) if extra not in RUN_EXTRAS]
    return projects + venv


def problems(source: Source) -> list[str]:
    """Why a lock does not match its top-level list (empty: it does). Reads files only, no network."""
    lock, name = source.lock, source.path.name
    if not lock.is_file():
        return [f"{lock} is missing: run `make lock`"]
    text = lock.read_text()
    first = text.splitlines()[0] if text else ""
    m = _HEADER_RE.match(first)
    out = []
    if not m or m.group(2) != source.digest():
        out.append(f"{lock} was not compiled from the current {name}: run `make lock`")
    locked = pins(text)
    for pkg, version in pins("\n".join(source.requirements())).items():
        if locked.get(pkg) != version:
            out.append(f"{lock}: {pkg} is {locked.get(pkg, 'missing')}, {name} asks for {version}")
    for line in _logical_lines(text):
        if line.startswith("-"):
            continue
        if not _PIN_RE.match(line):
            out.append(f"{lock}: not pinned with ==: {line[:80]}")
        elif "--hash=" not in line:
            out.append(f"{lock}: no hash: {line[:80]}")
    return out


def uv_binary() -> str:
    """The uv of this interpreter's environment (the `uv` package), else the one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise SystemExit("error: uv is not installed: `pip install uv` (make setup installs it)") from None
        return found


def compile_lock(source: Source, upgrade: bool = False) -> Path:
    """`uv pip compile` a top-level list into its lock (network: the package index), with our header line."""
    lock = source.lock
    argv = [uv_binary(), "pip", "compile", os.path.relpath(source.path, lock.parent), "--output-file", lock.name,
            "--quiet", "--generate-hashes", "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM,
            "--custom-compile-command", "make lock"]
    argv += [f"--extra={extra}" for extra in source.extras]
    argv += [f"--constraint={os.path.relpath(c, lock.parent)}" for c in source.constraints]
    if upgrade:
        argv.append("--upgrade")  # else uv keeps the versions the existing lock has
    # uv reads no pip.conf: the lock comes from the public index, not this machine's file indexes.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_INDEX", "UV_EXTRA_INDEX", "UV_FIND_LINKS"))}
    lock.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(argv, cwd=lock.parent, check=True, env=env)
    body = lock.read_text()
    if body.startswith("# mlrecipes-lock:"):
        body = body.split("\n", 1)[1]
    lock.write_text(HEADER.format(source=source.path.name, digest=source.digest()) + "\n" + body)
    return lock


def project_lock(project_dir: Path) -> Path | None:
    """The lock file a project's python_env.yaml installs (`-r <file>` in dependencies), if any."""
    env_file = project_dir / "python_env.yaml"
    if not env_file.is_file():
        return None
    import yaml

    deps = (yaml.safe_load(env_file.read_text()) or {}).get("dependencies") or []
    return next((path for dep in deps if (path := _referenced(dep, project_dir)) is not None), None)


def _referenced(dep: str, base_dir: Path) -> Path | None:
    parts = str(dep).split()
    if len(parts) == 2 and parts[0] in ("-r", "--requirement"):
        return base_dir / parts[1]
    return None


def expand(dependencies: list[str], base_dir: Path) -> list[str]:
    """python_env.yaml's dependencies with each `-r file` replaced by the file's requirement lines, without hashes."""
    out = []
    for dep in dependencies:
        path = _referenced(dep, base_dir)
        if path is None:
            out.append(re.sub(r"\s--hash=\S+", "", str(dep)).strip())
        else:
            out.extend(expand(_logical_lines(path.read_text()), path.parent))
    return out


def top_level(dependencies: list[str], base_dir: Path) -> list[str]:
    """The names asked for: a lock's top-level list (named in its first line), or the requirement itself."""
    names = []
    for dep in dependencies:
        path = _referenced(dep, base_dir)
        if path is None:
            m = _PIN_RE.match(str(dep)) or re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", str(dep))
            names += [m.group(1)] if m else []
            continue
        m = _HEADER_RE.match(path.read_text().split("\n", 1)[0])
        source = path.parent / m.group(1) if m else None
        if source is not None and source.is_file() and source.suffix == ".in":
            names += top_level(_logical_lines(source.read_text()), source.parent)
        else:  # a requirements file of one's own: every line of it is top-level
            names += top_level(_logical_lines(path.read_text()), path.parent)
    return names


def run_tags(project_dir: Path) -> dict[str, str]:
    """Which lock this run's environment was built from: its path and sha256 (empty without a lock)."""
    lock = project_lock(project_dir)
    if lock is None or not lock.is_file():
        return {}
    return {"mlrecipes.env.lock": lock.name,
            "mlrecipes.env.lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest()}


def main(argv: list[str]) -> int:
    verb = argv[0] if argv else "check"
    if verb == "check":
        found = [p for source in sources() for p in problems(source)]
        for problem in found:
            print(f"error: {problem}", file=sys.stderr)
        if not found:
            print(f"locks: {len(sources())} locks match their top-level lists")
        return 2 if found else 0
    if verb == "compile":
        upgrade = "--upgrade" in argv[1:]
        for source in sources():
            print(f"locks: {source.path.relative_to(REPO_ROOT)} -> {source.lock.relative_to(REPO_ROOT)}", flush=True)
            compile_lock(source, upgrade=upgrade)
        return 0
    print("error: usage: python -m mlrecipes.locks check | compile [--upgrade]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
