"""Process supervision: what runs under the launcher is stopped and waited for, and its run closed.

- Signals: SIGTERM/SIGINT reach every process under the launcher, which then waits for them to
  close their MLflow run (SIGKILL after a grace period).
- Memory: the summed RSS of the process tree is sampled; past the job's limit the tree is killed.
- Exit status: a project killed by a signal (SIGKILL: the OOM killer) is told apart from one
  that failed on its own, so the launcher can close its run with the reason.

Runs whose process is gone are ended by `mlrecipes.launch.reap`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from mlrecipes.lifecycle import Terminated  # SIGTERM/SIGINT while no child runs: the launcher stops where it is


class Children:
    """Forwards SIGTERM/SIGINT to whatever runs under us, then waits for it to close its run.

    Two kinds of children: `prepare-env` runs as a child in its own process group (the signal
    goes to the group: its pip installs stop too); the project runs in-process under
    `mlflow.projects.run`, which starts `bash -c "source activate && python train.py"` in our
    group, so the signal goes to every descendant (bash dies at once; train.py closes its run
    KILLED). Either way we wait until they are gone, SIGKILL after the grace period, so the
    run is closed before we report.
    """

    def __init__(self, grace_seconds: float):
        self.grace = grace_seconds
        self.child: subprocess.Popen | None = None
        self.in_project = False
        self.stopping: list = []  # psutil processes we signalled, waited for after the project
        self.signaled = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        first = not self.signaled
        self.signaled = True
        sig = signal.SIGTERM if first else signal.SIGKILL
        if self.child is not None:
            self._kill(sig)
        elif not (self.in_project and self._signal_descendants(sig)) and first:
            raise Terminated()  # nothing running yet: stop where we are

    def _kill(self, sig) -> None:
        try:
            os.killpg(self.child.pid, sig)
        except ProcessLookupError:
            pass

    def _signal_descendants(self, sig) -> bool:
        import psutil

        procs = psutil.Process().children(recursive=True)
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        self.stopping += procs
        return bool(procs)

    def run(self, argv: list[str], env: dict, cwd: Path) -> int:
        self.child = subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True)
        if self.signaled:
            self._kill(signal.SIGTERM)
        try:
            rc = self.child.wait()
            self._wait_group_gone()
            return rc
        finally:
            self.child = None

    @contextmanager
    def project(self):
        """Around `mlflow.projects.run`: signals reach the processes it starts."""
        if self.signaled:
            raise Terminated()
        self.in_project = True
        try:
            yield
        finally:
            self.in_project = False
            self._wait_stopping_gone()

    def _wait_stopping_gone(self) -> None:
        import psutil

        # bash is gone at once; train.py (reparented) may still be closing its run.
        _, alive = psutil.wait_procs(self.stopping, timeout=self.grace)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass

    def _wait_group_gone(self) -> None:
        deadline = None
        while True:
            try:
                os.killpg(self.child.pid, 0)
            except ProcessLookupError:
                return
            if self.signaled:  # members still closing their run after SIGTERM: give them grace
                deadline = deadline or time.monotonic() + self.grace
                if time.monotonic() > deadline:
                    self._kill(signal.SIGKILL)
            elif deadline is None:
                deadline = time.monotonic() + self.grace  # leftover of a finished run
            elif time.monotonic() > deadline:
                self._kill(signal.SIGKILL)
            time.sleep(0.2)


# ---------------------------------------------------------------- memory


class TreeMemory:
    """Samples the summed RSS of every process under us; past the limit, SIGKILLs them all.

    SIGKILL, not SIGTERM: a training past its limit must not keep growing during a grace period,
    and train.py's SIGTERM handler would close the run KILLED, which reads as "someone stopped
    it" instead of "it needed more memory". The launcher closes the run FAILED with the reason.
    """

    def __init__(self, limit_mb: float | None, interval_s: float = 0.25):
        self.limit_mb = limit_mb
        self.interval = interval_s
        self.peak_mb = 0.0
        self.exceeded = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mlrecipes-memory", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.interval):
            procs = me.children(recursive=True)
            total = 0
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:  # ended between the listing and the sample
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)
            if self.limit_mb and self.peak_mb > self.limit_mb and not self.exceeded:
                self.exceeded = True
                for proc in procs:
                    try:
                        proc.kill()
                    except psutil.Error:
                        pass


def death_signal(returncode: int | None) -> int | None:
    """The signal that ended the project's command: Popen's -N, or bash's 128+N (when bash did
    not exec train.py), else None."""
    if returncode is None:
        return None
    if returncode < 0:
        return -returncode
    if 128 < returncode < 160:
        return returncode - 128
    return None


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


@contextmanager
def project_exit_status(projects_module):
    """Records the exit status of the command `mlflow.projects.run` waits for.

    `run()` raises a bare ExecutionException on failure and keeps the Popen to itself; its
    `_wait_for(submitted_run)` is the one place the process is reachable, so it is wrapped for
    the duration (one launch per launcher process).
    """
    status: dict = {}
    original = projects_module._wait_for

    def _wait_for(submitted_run):
        try:
            return original(submitted_run)
        finally:
            proc = getattr(submitted_run, "command_proc", None)
            status["returncode"] = proc.poll() if proc is not None else None

    projects_module._wait_for = _wait_for
    try:
        yield status
    finally:
        projects_module._wait_for = original
