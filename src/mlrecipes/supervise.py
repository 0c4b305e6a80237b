"""Process supervision: what runs under the launcher is stopped and waited for, and its run closed.

- Signals: SIGTERM/SIGINT reach every process under the launcher, which then waits for them to
  close their MLflow run (SIGKILL after a grace period).
- Memory: the summed RSS of the process tree is sampled; past the job's limit the tree is killed.
- Exit status: a project killed by a signal (SIGKILL: the OOM killer) is told apart from one
  that failed on its own, so the launcher can close its run with the reason.
- Heartbeats: RUNNING runs whose process is gone (no heartbeat for a while) are ended FAILED.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from mlrecipes.errors import UserError


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


# ---------------------------------------------------------------- heartbeats and stale runs
#
# A run's heartbeat is its latest `system/*` metric (train.py logs MLflow's system metrics every
# few seconds), or its start time when it has none yet. A RUNNING run whose heartbeat is older
# than the allowed age lost its process (host gone, launcher SIGKILLed too): it is ended FAILED.

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '2h', '1d' -> seconds (> 0); anything else is a UserError."""
    match = _DURATION.match(str(text))
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)] if match else 0
    if seconds <= 0:
        raise UserError(f"age {text!r} is not a duration: use e.g. 90s, 10m, 2h or 1d")
    return seconds


def heartbeat_ms(client, run) -> int:
    """Milliseconds since the epoch of the run's latest `system/*` metric, else its start time."""
    beats = [m.timestamp for key in run.data.metrics if key.startswith("system/")
             for m in client.get_metric_history(run.info.run_id, key)]
    return max(beats, default=run.info.start_time or 0)


def reap(client, max_age_s: float, experiment_ids: list[str] | None = None, job: str | None = None,
         say=print) -> list[str]:
    """End FAILED every RUNNING run (of `job`, when given) whose heartbeat is older than max_age_s."""
    now_ms = int(time.time() * 1000)
    limit_ms = now_ms - int(max_age_s * 1000)
    ids = experiment_ids or [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    reaped = []
    for run in client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        if job is not None and run.data.tags.get("mlrecipes.job") != job:
            continue
        if (run.info.start_time or 0) > limit_ms:
            continue  # started within the age: fresh whatever its metrics say (cheap: no history)
        beat = heartbeat_ms(client, run)
        if beat > limit_ms:
            continue
        since = datetime.fromtimestamp(beat / 1000, tz=UTC).isoformat(timespec="seconds")
        client.set_tag(run.info.run_id, "mlrecipes.error", f"lost: no heartbeat since {since}")
        client.set_terminated(run.info.run_id, "FAILED")
        say(f"[jobs] reaped run {run.info.run_id} ({run.data.tags.get('mlrecipes.job', '-')}): "
            f"no heartbeat since {since}")
        reaped.append(run.info.run_id)
    return reaped


def reap_superseded(client, experiment_id: str, context: dict[str, str], say=print) -> list[str]:
    """End FAILED the RUNNING runs of earlier tries of this Airflow task instance.

    Airflow starts try N only after it gave up on try N-1 (its worker was lost, its heartbeat
    timed out), so a run of an earlier try that is still RUNNING has no process left to close it:
    its launcher died with its worker. `context` is the run's `airflow.*` tags (airflow_tags()).
    """
    keys = ("airflow.dag_id", "airflow.dag_run_id", "airflow.task_id")
    current = context.get("airflow.try_number", "")
    if not current.isdigit() or not all(context.get(k) for k in keys):
        return []
    dag_id = context["airflow.dag_id"].replace("'", "")
    runs = client.search_runs([experiment_id], max_results=1000,
                              filter_string=f"attributes.status = 'RUNNING' and tags.`airflow.dag_id` = '{dag_id}'")
    reaped = []
    for run in runs:
        tags = run.data.tags
        earlier = tags.get("airflow.try_number", "")
        if any(tags.get(k) != context[k] for k in keys) or not earlier.isdigit() or int(earlier) >= int(current):
            continue
        why = f"lost: try {earlier} was given up by Airflow, retried as try {current}"
        client.set_tag(run.info.run_id, "mlrecipes.error", why)
        client.set_terminated(run.info.run_id, "FAILED")
        say(f"[jobs] closed run {run.info.run_id} of try {earlier}: {why}")
        reaped.append(run.info.run_id)
    return reaped
