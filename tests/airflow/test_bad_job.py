"""One bad job fails alone: the other jobs' DAGs load and stay scheduled, the bad one is named.

Airflow 3 keeps one import error per DAG file and marks every DAG of a file with one stale
(hidden, not scheduled), so the DAG folder's own DagBag and the metadata DB after a parse are
both checked here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlrecipes import cli, schedule

DAGS = Path(__file__).resolve().parents[2] / "airflow" / "dags"
BAD = {"project": "lightgbm", "params": {"data": "my_ticks"}, "schedule": "@daily"}
PROBLEM = "data 'my_ticks' is not a data group: no conf/data/my_ticks.yaml"


@pytest.fixture
def bad_schedule(schedule_file, monkeypatch):
    """The real schedule plus job `my_ticks` (a data group not in conf/data) and a job of a project
    not there yet, selected with $MLRECIPES_SCHEDULE; returns the path."""
    path = schedule_file()
    doc = yaml.safe_load(path.read_text())
    doc["jobs"]["my_ticks"] = BAD
    doc["jobs"]["not_yet"] = {"project": "no_such_project"}
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MLRECIPES_SCHEDULE", str(path))
    return path


def _good_dag_ids() -> set[str]:
    return {f"mlrecipes_{job.name}" for job in schedule.load_schedule(schedule.SCHEDULE_FILE).existing()}


def test_the_other_dags_load_and_the_import_error_names_the_bad_job(bad_schedule):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert set(bag.dags) == _good_dag_ids()  # every other job, and no half-built DAG of the bad one
    assert list(bag.import_errors) == [str(DAGS / "mlrecipes_schedule_check.py")]  # not the DAG file's
    error = bag.import_errors[str(DAGS / "mlrecipes_schedule_check.py")]
    assert f"1 job(s) without a DAG (every other job has its DAG):\njob my_ticks: {PROBLEM}" in error
    assert "not_yet" not in error  # a project not there yet is skipped, not an error


def test_airflow_keeps_scheduling_the_other_jobs(bad_schedule, airflow_db):
    """What the DAG processor stores after parsing the folder: the good DAGs active, one error."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models import DagModel
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    DagBundlesManager().sync_bundles_to_db()
    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS, bundle_name="dags-folder")
    try:
        sync_bag_to_db(bag, "dags-folder", None)
        with create_session() as session:
            active = {m.dag_id for m in session.scalars(select(DagModel).where(~DagModel.is_stale))}
            errors = {e.filename: e.stacktrace for e in session.scalars(select(ParseImportError))}
        assert _good_dag_ids() <= active and "mlrecipes_my_ticks" not in active
        assert list(errors) == ["mlrecipes_schedule_check.py"] and f"job my_ticks: {PROBLEM}" in errors[
            "mlrecipes_schedule_check.py"]
    finally:
        with create_session() as session:  # the session's DB is shared with the DAG-run tests
            session.execute(delete(ParseImportError))


def test_list_reports_the_same_problem(bad_schedule, capsys):
    assert cli.main(["list"]) == 0
    states = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    problems = schedule.job_problems(schedule.load_schedule(bad_schedule))
    assert problems["my_ticks"].startswith(PROBLEM)
    assert states["my_ticks"].endswith(problems["my_ticks"])
    assert states["not_yet"].endswith(schedule.SKIPPED)
    assert all(states[dag_id.removeprefix("mlrecipes_")].endswith(" ready") for dag_id in _good_dag_ids())
