"""Airflow DAG: the scheduler's retrain steps, each one a ``streamrec`` command.

The tasks run the CLI on an Airflow worker that has streamrec installed and the ``STREAMREC_*``
settings of the deployment in its environment (the same ones ``streamrec worker`` and
``streamrec api`` read). The file imports nothing from streamrec, so Airflow can parse it in
an environment of its own (``make test`` checks it in ``.venv-airflow``).

    check_data ─► replay ─► train ─► evaluate ─► promote ─► verify_deployment ─► alerts

- ``check_data`` exits 99 when there are too few new events: the run is skipped, not failed;
  a DLQ-rate or schema problem fails it.
- ``train`` prints the run directory on its last line, which Airflow keeps as its XCom.
- ``promote`` compares the run's policy with the serving one on the shared holdout; a refusal
  (exit 1) skips the deployment check instead of failing the DAG run.
- ``alerts`` runs the monitor once whatever happened before it (``streamrec monitor --once``:
  raises and resolves alerts; an open alert does not fail the DAG run, it is reported).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

SKIP = 99  # BashOperator's skip_on_exit_code: the step has nothing to do, which is no failure
RUN = "{{ ti.xcom_pull(task_ids='train') }}"

with DAG(
    dag_id="streamrec_retrain",
    description="streamrec: check data, replay, train, evaluate, promote through the gate, verify serving",
    schedule=timedelta(hours=6),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two retrains at once would race for the snapshot
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
    params={
        "min_new_events": Param(1000, type="integer", minimum=1),
        "max_dlq_rate": Param(0.05, type="number", minimum=0, maximum=1),
        "api_url": Param("http://127.0.0.1:8000", type="string"),
    },
    tags=["streamrec"],
) as dag:
    check_data = BashOperator(
        task_id="check_data",
        bash_command=("streamrec check-data --min-new-events {{ params.min_new_events }} "
                      "--max-dlq-rate {{ params.max_dlq_rate }}"),
        skip_on_exit_code=SKIP,
    )
    replay = BashOperator(task_id="replay", bash_command="streamrec replay --no-progress")
    train = BashOperator(
        task_id="train",
        bash_command="streamrec train --no-progress --tag airflow",
        do_xcom_push=True,  # the last line: the run directory
        execution_timeout=timedelta(hours=2),
    )
    evaluate = BashOperator(task_id="evaluate", bash_command=f"streamrec verify {RUN}")
    promote = BashOperator(
        task_id="promote",
        bash_command=f"streamrec promote {RUN}; rc=$?; if [ $rc -eq 1 ]; then exit {SKIP}; fi; exit $rc",
        skip_on_exit_code=SKIP,
    )
    verify_deployment = BashOperator(
        task_id="verify_deployment",
        bash_command=f"streamrec verify {RUN} --api {{{{ params.api_url }}}} --wait 60",
    )

    alerts = BashOperator(
        task_id="alerts",
        bash_command="streamrec monitor --once; rc=$?; if [ $rc -le 1 ]; then exit 0; fi; exit $rc",
        trigger_rule="all_done",  # after a failure or a skip too: that is when alerts matter
    )

    check_data >> replay >> train >> evaluate >> promote >> verify_deployment >> alerts
