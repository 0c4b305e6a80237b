"""Run one DAG of the DAG folder with `dag.test()` and print what happened as one JSON line.

    python tests/airflow/run_dag.py <dag_id> '<json conf>' [<logical date, ISO 8601>]

Run as its own process by the tests: AIRFLOW_HOME and the schedule come from the environment,
and the task's SIGTERM handler (the one that calls on_kill in production) stays out of pytest.
"""

import json
import sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

DAGS = Path(__file__).resolve().parents[2] / "airflow" / "dags"


def main(dag_id: str, conf: str, logical_date: str | None = None) -> None:
    bag = DagBag(dag_folder=str(DAGS))
    if bag.import_errors:
        sys.exit(f"import errors: {bag.import_errors}")
    dag = bag.dags[dag_id]
    if logical_date:  # the data interval follows from it (a scoring DAG scores that interval)
        from datetime import datetime

        dr = dag.test(run_conf=json.loads(conf), logical_date=datetime.fromisoformat(logical_date))
    else:
        dr = dag.test(run_conf=json.loads(conf))
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = {ti.task_id: ti.state for ti in dr.get_task_instances(session=session)}
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=dr.run_id).all()
        xcom = {row.key: XComModel.deserialize_value(row) for row in rows}
    print("RESULT " + json.dumps({"dag_run_id": dr.run_id, "state": str(dr.state),
                                  "tasks": {k: str(v) for k, v in tis.items()}, "xcom": xcom}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}", sys.argv[3] if len(sys.argv) > 3 else None)
