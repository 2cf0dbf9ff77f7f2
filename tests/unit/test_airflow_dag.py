"""The Airflow DAG (infra/airflow/) loads in Airflow's DagBag and runs the retrain steps in order.

Airflow does not share streamrec's environment (its pins clash with the API's), so ``make test``
installs it in ``.venv-airflow`` and the DAG is parsed there, in a subprocess."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"

LOAD = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder="infra/airflow")
dag = bag.dags.get("streamrec_retrain")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "graph": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} if dag else {},
    "commands": {t.task_id: t.bash_command for t in dag.tasks} if dag else {},
    "skip": {t.task_id: list(t.skip_on_exit_code or []) for t in dag.tasks} if dag else {},
    "trigger": {t.task_id: str(t.trigger_rule) for t in dag.tasks} if dag else {},
}))
"""


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    if not AIRFLOW_PYTHON.exists():
        pytest.skip("Airflow is not installed in .venv-airflow: `make test` installs it (apache-airflow 3.3)")
    home = tmp_path_factory.mktemp("airflow-home")
    out = subprocess.run([str(AIRFLOW_PYTHON), "-c", LOAD], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={"AIRFLOW_HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_dag_loads_without_import_errors(dagbag):
    assert dagbag["errors"] == {}
    assert dagbag["dags"] == ["streamrec_retrain"]


def test_the_task_graph_is_the_scheduler_steps_in_order(dagbag):
    assert dagbag["graph"] == {
        "check_data": ["replay"],
        "replay": ["train"],
        "train": ["evaluate"],
        "evaluate": ["promote"],
        "promote": ["verify_deployment"],
        "verify_deployment": ["alerts"],
        "alerts": [],
    }


def test_each_task_runs_a_real_streamrec_command(dagbag):
    import typer.main

    from infra.cli import app

    known = set(typer.main.get_command(app).commands)
    for task, command in dagbag["commands"].items():
        assert command.startswith("streamrec "), task
        assert command.split()[1] in known, f"{task} runs an unknown command: {command}"
    # too little data and a refused promotion skip the run; they do not fail it
    assert dagbag["skip"]["check_data"] == [99] and dagbag["skip"]["promote"] == [99]
    assert "--api" in dagbag["commands"]["verify_deployment"]
    assert dagbag["trigger"]["alerts"].lower().endswith("all_done")  # alerts are looked at whatever happened
