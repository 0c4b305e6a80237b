"""Process supervision: what runs under the launcher is stopped and waited for, and its run closed.

Signals: SIGTERM/SIGINT reach every process under the launcher, which then waits for them to
close their MLflow run (SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path


class Terminated(Exception):
    """SIGTERM/SIGINT arrived while no child was running."""


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
