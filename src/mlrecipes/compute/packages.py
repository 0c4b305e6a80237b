"""What the workers must have: the project's packages, and this checkout's mlrecipes.

A cluster someone else runs (an address, a Kubernetes cluster) has the image its owner built. Before
any work is sent, every worker imports the packages the run needs; one that is missing is named
in one line (with the workers that lack it), not found out as a pickling traceback mid training.
Versions that differ from the driver's are printed: a model trained by one xgboost and saved by
another usually loads, but the run should say so.

The workers run the driver's copy of mlrecipes: a remote cluster gets it uploaded as a zip
(a worker plugin, which also reaches workers that join later), so the code that reads and
splits a table on the workers is the code of the run, never a stale install. An embedded
LocalCluster's workers import it from the same paths as the driver.
"""

from __future__ import annotations

import io
import sys
import tempfile
import zipfile
from pathlib import Path

from mlrecipes.errors import UserError, require

# Imported on every worker by every run on a cluster (the project adds its framework).
BASE = ("mlrecipes", "numpy", "pandas", "pyarrow", "dask", "distributed")


def _versions_of(modules: list[str]) -> dict[str, str | None]:
    """{module: version ('' when it has none), None when it cannot be imported}: runs on each worker.

    Nested on purpose: a nested function travels by value, so this check runs on a worker that
    lacks mlrecipes itself and can say so."""

    def report(names):
        import importlib as lib

        out = {}
        for name in names:
            try:
                module = lib.import_module(name)
            except Exception:  # ImportError, or a package whose import fails on that worker
                out[name] = None
                continue
            out[name] = str(getattr(module, "__version__", ""))
        return out

    return report


def driver_versions(modules) -> dict[str, str | None]:
    return _versions_of(list(modules))(list(modules))


def check_workers(client, modules=()) -> dict[str, str]:
    """Every worker imports BASE + `modules`; UserError naming what is missing and where.
    Returns {module: version} of the workers (what the run logs as compute.version.<module>)."""
    names = list(dict.fromkeys([*BASE, *modules]))
    reports = client.run(_versions_of(names), names)
    require(bool(reports), "the Dask cluster has no workers")
    missing: dict[str, list[str]] = {}
    for worker, found in reports.items():
        for name, version in found.items():
            if version is None:
                missing.setdefault(name, []).append(worker)
    if missing:
        where = "; ".join(f"{name} on {_workers(addrs, len(reports))}" for name, addrs in missing.items())
        raise UserError(f"the Dask workers cannot import {', '.join(missing)} ({where}): install the project's "
                        "requirements.lock in the workers' environment")
    mine = driver_versions(names)
    workers = next(iter(reports.values()))
    differ = [f"{n} {workers[n]} (driver {mine[n]})" for n in names
              if n != "mlrecipes" and mine.get(n) and workers.get(n) and mine[n] != workers[n]]
    if differ:
        print(f"warning: the Dask workers run other versions than this process: {', '.join(differ)}",
              file=sys.stderr, flush=True)
    return {n: workers[n] for n in names if workers.get(n)}


def _workers(addresses: list[str], total: int) -> str:
    if len(addresses) == total:
        return f"all {total} workers" if total > 1 else addresses[0]
    shown = ", ".join(addresses[:2])
    return shown + (f" and {len(addresses) - 2} more" if len(addresses) > 2 else "")


def ship_mlrecipes(client) -> None:
    """Upload this process's mlrecipes package to every worker (present and future) as a zip."""
    import mlrecipes

    root = Path(mlrecipes.__file__).resolve().parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".yaml", ".json"):
                archive.write(path, Path("mlrecipes") / path.relative_to(root))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlrecipes.zip"
        path.write_bytes(buffer.getvalue())
        try:
            from distributed.diagnostics.plugin import UploadFile

            # The workers only (a worker plugin reaches those that join later too): Client.upload_file
            # would also load it into the scheduler, which for an in-process scheduler is this process.
            client.register_plugin(UploadFile(str(path), load=True), name="mlrecipes-code")
        except Exception as exc:  # a worker that cannot write its local directory
            raise UserError(f"cannot send mlrecipes to the Dask workers: {type(exc).__name__}: {exc}") from None
    # A worker that already imported an older mlrecipes keeps it: say so instead of running it.
    stale = {w: v for w, v in client.run(_imported_from).items() if v and not v.endswith("mlrecipes.zip")}
    if stale:
        print(f"warning: {len(stale)} Dask worker(s) had mlrecipes imported already ({next(iter(stale.values()))}); "
              "restart them to run this checkout's code", file=sys.stderr, flush=True)


def _imported_from() -> str:
    module = sys.modules.get("mlrecipes")
    return str(Path(module.__file__).parent.parent) if module is not None and module.__file__ else ""


def prepare(client, modules=(), *, local: bool) -> dict[str, str]:
    """Before any work: the driver's mlrecipes on a remote cluster's workers, then every package
    checked. `local`: an embedded LocalCluster, whose workers share the driver's paths."""
    if not local:
        ship_mlrecipes(client)
    return check_workers(client, modules)
