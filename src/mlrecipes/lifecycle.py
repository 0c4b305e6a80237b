"""One run lifecycle for every process that owns an MLflow run (training, scoring, a sweep):
signals, exit codes, and closing the run so it never stays RUNNING.

    signals = lifecycle.install()                      # SIGTERM / SIGINT raise Terminated
    ...start or attach to the run...
    outcome = lifecycle.guarded(body, what="scoring run", run_id=run_id)
    return lifecycle.close_run(run_id, outcome)

`guarded` turns what the body raised into an Outcome (status, exit code, error): a UserError is
one `error:` line and exit 2 (a retry cannot help); a signal is KILLED, exit 143; an unreachable
tracking server exits 1 (Airflow retries). The launcher (`mlrecipes.launch`) forwards signals to its
children instead of raising, but shares Terminated and the exit codes.
"""

from __future__ import annotations

import gc
import signal
import sys
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from mlrecipes.errors import EXIT_TERMINATED, EXIT_USER_ERROR, UserError, one_line, tracking_failure


class Terminated(BaseException):
    """SIGTERM / SIGINT: raised where it is safe, remembered where it is not."""


class Signals:
    """The process's one SIGTERM / SIGINT handler: raises Terminated, except

    - while `deferred()` (native code that calls back into Python, XGBoost's QuantileDMatrix
      iterating the data through a ctypes callback: an exception raised there unwinds through C++
      and corrupts the heap, seen as "corrupted size vs. prev_size"): raised once the native call
      has returned;
    - while `held()` (a commit that must complete: the Parquet swap, a writer thread): only
      remembered; the holder checks `received` when it is done.

    `received` also tells a Terminated that a library turned into its own error (raised inside a
    generator that Arrow or delta-rs consumes) from a real failure. One signal is enough: Airflow's
    kill reaches a run both directly and through the launcher, and a second one must not interrupt
    the closing of the run.
    """

    def __init__(self):
        self.received = False
        self._held = 0
        self._deferred = 0
        self._pending = False

    def install(self) -> Signals:
        self.received, self._held, self._deferred, self._pending = False, 0, 0, False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, frame):
        first = not self.received
        self.received = True
        if not first or self._held:
            return
        if self._deferred:
            self._pending = True  # raised when the native call returns
            return
        raise Terminated()

    @contextmanager
    def deferred(self):
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
        if self._pending and not self._deferred:
            self._pending = False
            raise Terminated()

    @contextmanager
    def held(self):
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    @property
    def is_held(self) -> bool:
        return bool(self._held)


SIGNALS = Signals()  # the process's handler; `install()` puts it in place


def install() -> Signals:
    """SIGTERM / SIGINT raise Terminated from now on (see Signals)."""
    return SIGNALS.install()


def signals_deferred():
    """Around a native call that calls back into Python (see Signals.deferred)."""
    return SIGNALS.deferred()


@dataclass(frozen=True)
class Outcome:
    status: str  # FINISHED | FAILED | KILLED
    exit_code: int
    error: str | None = None
    tracking_lost: bool = False  # the tracking server is gone: nothing can be recorded any more


FINISHED = Outcome("FINISHED", 0)


def guarded(body: Callable[[], Outcome | None], *, what: str, run_id: Callable[[], str | None] | str | None,
            killed_note: str = "") -> Outcome:
    """Runs `body`; returns how it ended. Prints the one `error:` line (or the traceback of a bug).

    `what` names the run in the line ("run", "scoring run", "sweep run"); `run_id` is the run's id
    or a callable giving it (a run may be started inside the body); `killed_note` is appended to the
    line of a terminated run ("; the output is unchanged").
    """
    import mlflow

    def rid() -> str:
        value = run_id() if callable(run_id) else run_id
        return value or "(none)"

    def killed() -> Outcome:
        print(f"error: {what} {rid()} terminated{killed_note}", file=sys.stderr, flush=True)
        return Outcome("KILLED", EXIT_TERMINATED, "terminated by a signal")

    try:
        return body() or FINISHED
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return Outcome("FAILED", EXIT_USER_ERROR, str(exc))
    except (Terminated, KeyboardInterrupt):
        return killed()
    except Exception as exc:
        if SIGNALS.received:  # a Terminated that Arrow or delta-rs turned into their own error
            return killed()
        failure = tracking_failure(exc, mlflow.get_tracking_uri())
        if failure is None:
            traceback.print_exc()
            return Outcome("FAILED", 1, f"{type(exc).__name__}: {exc}")
        print(f"error: {failure[0]}", file=sys.stderr, flush=True)
        # Unreachable (exit 1): nothing can be recorded now; a login or permission problem can.
        return Outcome("FAILED", failure[1], failure[0], tracking_lost=failure[1] != EXIT_USER_ERROR)


def close_run(run_id: str, outcome: Outcome) -> int:
    """Ends the run with the outcome's status, tagging why it failed; returns the exit code.

    Called after the handlers, never inside them: a signal can interrupt a write to the store, and
    the frames of the exception's traceback then hold its connection, mid-transaction, with
    SQLite's lock (every later write waited 20 s and failed: the run lost its exit status). Those
    frames are freed by then, their cycles by the gc.collect() below.
    """
    import mlflow

    if outcome.tracking_lost:  # every call would wait another retry budget; the reaper ends it
        return outcome.exit_code
    # Shield the bookkeeping from a second signal so the run never stays RUNNING.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    if outcome.status != "FINISHED":  # an interrupted write's connection rolls back and lets go of the store
        gc.collect()  # (0.2-0.4 s with a framework loaded: not for a run that raised nothing)
    if outcome.exit_code:
        # Why it ended, in the UI; the launcher exits with the code (2: Airflow does not retry).
        # By id, not the fluent API, which tags whatever run is active (and starts one if none is);
        # a failure here must not keep the run from being closed.
        from mlflow.entities import RunTag

        try:
            mlflow.MlflowClient().log_batch(run_id, tags=[
                RunTag("mlrecipes.exit_code", str(outcome.exit_code)),
                RunTag("mlrecipes.error", one_line(outcome.error or "")[:1000])])
        except Exception as exc:  # noqa: BLE001 - the launcher still reads the exit status
            print(f"warning: could not tag run {run_id} with its exit status: {one_line(str(exc))}",
                  file=sys.stderr, flush=True)
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(outcome.status)  # also stops the system-metrics thread
    else:
        mlflow.MlflowClient().set_terminated(run_id, outcome.status)
    return outcome.exit_code
