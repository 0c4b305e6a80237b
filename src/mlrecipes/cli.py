"""`mlrecipes`: the one command for every daily task.

    mlrecipes run JOB [-P name=value ...]      one job of conf/schedule.yaml as an MLflow Project
    mlrecipes run --all                        every training job, then the leaderboard
    mlrecipes list                             the jobs, their schedule and whether they can run
    mlrecipes config JOB [-P ...]              the composed config JOB would run with; trains nothing
    mlrecipes score PROJECT|JOB [-P ...]       batch scoring (entry point `predict`)
    mlrecipes sweep PROJECT|JOB [-P ...]       an Optuna sweep (entry point `sweep`)
    mlrecipes promote MODEL VERSION            move @champion through the gate (--force --reason)
    mlrecipes rollback MODEL [--to VERSION]    the previous champion back
    mlrecipes history MODEL                    every move of @champion
    mlrecipes leaderboard                      champion and latest run of every registered model
    mlrecipes reap [--older-than 10m]          end FAILED the runs whose process is gone

Options that every verb takes, before or after it: --tracking-uri, --schedule, --profile.
One store rule for all of them (mlrecipes.store.tracking_uri): --tracking-uri, else
$MLFLOW_TRACKING_URI, else the repository's sqlite:///<repo>/mlflow.db. Errors: one `error:` line, exit 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from mlrecipes.errors import EXIT_TERMINATED, EXIT_USER_ERROR, UserError, exit_now, readable_output
from mlrecipes.lifecycle import Terminated

PROG = "mlrecipes"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line and exit 2, as every other error."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    return name, value


def _common() -> argparse.ArgumentParser:
    """The options every verb takes, in any position (SUPPRESS: a verb's copy never resets the top's)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tracking-uri", default=argparse.SUPPRESS, metavar="URI",
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db)")
    common.add_argument("--schedule", default=argparse.SUPPRESS, metavar="FILE",
                        help="schedule file (default: $MLRECIPES_SCHEDULE or conf/schedule.yaml)")
    common.add_argument("--profile", default=argparse.SUPPRESS,
                        help="profile of the schedule (default: $MLRECIPES_PROFILE or local)")
    return common


def _params(p: argparse.ArgumentParser) -> None:
    p.add_argument("-P", dest="params", action="append", type=_param, default=[], metavar="NAME=VALUE",
                   help="an MLproject parameter of the entry point (repeatable), e.g. -P data=ticks")


def _memory(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory-limit-mb", metavar="MB",
                   help="stop a run whose process tree's RSS passes MB (run FAILED, exit 2); default: the job's")


def parser() -> argparse.ArgumentParser:
    common = _common()
    top = _Parser(prog=PROG, parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                  description=__doc__.split("\n\n")[0],
                  epilog="Every verb answers --help.")
    sub = top.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    run = verb("run", "run one job of the schedule as an MLflow Project (in this process, through "
                      "mlflow.projects.run), or every training job with --all")
    run.add_argument("job", nargs="?", help="a job of conf/schedule.yaml (`mlrecipes list`)")
    run.add_argument("--all", action="store_true", help="every training job whose project exists, then the leaderboard")
    _params(run)
    _memory(run)
    run.add_argument("--receipt", metavar="FILE", help="write {run_id, experiment_id, url, status} as JSON here")

    verb("list", "the jobs, their schedule, pool and whether each can run (the DAG file's checks)")

    cfg = verb("config", "print the composed config a job would run with (Hydra's --cfg job); trains nothing")
    cfg.add_argument("job")
    _params(cfg)

    for name, entry, what in (("score", "predict", "batch scoring with a registered model (entry point predict)"),
                              ("sweep", "sweep", "an Optuna sweep: one parent run, a child run per trial "
                                                 "(entry point sweep)")):
        p = verb(name, what)
        p.add_argument("target", metavar="PROJECT|JOB",
                       help=f"a project under projects/ or a job of the schedule whose entry point is {entry}")
        _params(p)
        _memory(p)
        p.add_argument("--receipt", metavar="FILE", help="write {run_id, experiment_id, url, status} as JSON here")

    alias = argparse.ArgumentParser(add_help=False)
    alias.add_argument("--alias", default="champion", help="the alias to move (default: champion)")
    forced = argparse.ArgumentParser(add_help=False)
    forced.add_argument("--force", action="store_true", help="skip the gate / eligibility checks (needs --reason)")
    forced.add_argument("--reason", help="why: recorded on the version")
    pr = sub.add_parser("promote", help="move the alias to VERSION if it passes the gate (or --force)",
                        parents=[common, alias, forced])
    pr.add_argument("model")
    pr.add_argument("version")
    rb = sub.add_parser("rollback", help="move the alias back to the previous champion (or --to VERSION)",
                        parents=[common, alias, forced])
    rb.add_argument("model")
    rb.add_argument("--to", metavar="VERSION")
    hi = sub.add_parser("history", help="every move of the alias, newest first", parents=[common, alias])
    hi.add_argument("model")

    verb("leaderboard", "the champion and the latest run of every registered model")

    reap = verb("reap", "end FAILED the RUNNING runs whose heartbeat is older than --older-than")
    reap.add_argument("--older-than", default="10m", metavar="AGE", help="e.g. 90s, 10m, 2h, 1d (default 10m)")
    reap.add_argument("--job", help="only runs of this job (tag mlrecipes.job)")

    # For Airflow and the launcher itself, not for daily use.
    prep = verb("prepare-env", "check, repair or build a job's project environment")
    prep.add_argument("job")
    verb("pools", "the Airflow pools, one 'name<TAB>slots<TAB>description' a line")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser().parse_args(argv)
        _settle(args)
        return _dispatch(args, argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except (Terminated, KeyboardInterrupt):  # a signal before any child ran (launch.supervise)
        return EXIT_TERMINATED


def _settle(args) -> None:
    """Schedule, profile and store: set for this process and every child (prepare-env, the project)."""
    from mlrecipes import store

    if getattr(args, "schedule", None):
        os.environ["MLRECIPES_SCHEDULE"] = str(Path(args.schedule).resolve())
    if getattr(args, "profile", None):
        os.environ["MLRECIPES_PROFILE"] = args.profile
    if getattr(args, "tracking_uri", None):
        os.environ["MLFLOW_TRACKING_URI"] = store.tracking_uri(args.tracking_uri)


def _dispatch(args, argv: list[str]) -> int:
    verb = args.verb
    if verb in ("promote", "rollback", "history"):
        return _registry(args, argv)
    if verb == "leaderboard":
        return _leaderboard()

    from mlrecipes import launch
    from mlrecipes.schedule import load_schedule

    schedule = load_schedule()
    if getattr(args, "tracking_uri", None):  # the command line wins over the profile's store
        schedule = launch.with_tracking_uri(schedule, os.environ["MLFLOW_TRACKING_URI"])
    if getattr(args, "memory_limit_mb", None) is not None:
        schedule = launch.with_memory_limit(schedule, args.memory_limit_mb)
    if verb == "list":
        print(launch.list_jobs(schedule))
        return 0
    if verb == "pools":
        for name, pool in schedule.pools.items():
            print(f"{name}\t{pool.get('slots', 1)}\t{pool.get('description', '')}")
        return 0
    if verb == "prepare-env":
        path = launch.prepare_env(launch.job_named(schedule, args.job))
        print(f"[jobs] environment ready: {path or 'local (none)'}", flush=True)
        return 0
    if verb == "reap":
        return launch.reap_jobs(schedule, args.older_than, args.job)
    if verb == "config":
        print(launch.composed_config(schedule.job(args.job), dict(args.params)), end="")
        return 0
    if verb == "run":
        if args.all == bool(args.job):
            raise UserError("run: name one JOB or give --all")
        if args.all:
            if args.params:
                raise UserError("run --all takes no -P: each job runs with its own parameters")
            return launch.run_all(schedule)
        return launch.launch(schedule.job(args.job), dict(args.params), args.receipt)
    entry = {"score": "predict", "sweep": "sweep"}[verb]
    return launch.launch(launch.job_for(schedule, args.target, entry), dict(args.params), args.receipt)


def _registry(args, argv: list[str]) -> int:
    from mlrecipes import registry, store

    uri = store.tracking_uri(None)
    if args.verb == "history":
        store.require_store(uri)
    command = f"{PROG} {shlex.join(argv)}"
    return registry.command(args.verb, uri, model=args.model, version=getattr(args, "version", None),
                            to=getattr(args, "to", None), alias=args.alias, force=getattr(args, "force", False),
                            reason=getattr(args, "reason", None), command=command)


def _leaderboard() -> int:
    from mlrecipes import leaderboard, store

    uri = store.tracking_uri(None)
    store.require_store(uri)
    return leaderboard.show(uri)


def entry() -> None:
    """The console script."""
    readable_output()
    exit_now(main())


if __name__ == "__main__":
    entry()
