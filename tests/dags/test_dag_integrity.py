"""Every DAG imports without error and carries what operators rely on."""

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS_DIR))


def test_dags_import_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert {"beteiligte_sync"} <= set(dagbag.dag_ids)


def test_every_dag_has_owner_tags_retries_and_docs(dagbag: DagBag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 100, dag_id
        assert dag.max_active_runs == 1, dag_id
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id}"
            if task.task_id != "fail_if_a_task_failed":  # retrying it only delays the verdict
                assert task.retries >= 1, f"{dag_id}.{task.task_id}"


def test_sync_dag_has_the_documented_tasks(dagbag: DagBag) -> None:
    dag = dagbag.dags["beteiligte_sync"]
    assert {t.task_id for t in dag.tasks} >= {
        "reset_permanently_failed",
        "fetch_candidates",
        "sync",
        "validate",
        "report",
    }
    assert dag.task_dict["sync"].pool == "advoware_api"


def test_only_dag_files_are_parsed_as_dags(dagbag: DagBag) -> None:
    """The helper modules are imported by the DAG files, not parsed as DAGs (.airflowignore)."""
    parsed = {Path(path).name for path in dagbag.file_last_changed}
    assert parsed == {"beteiligte_sync.py", "beteiligte_backfill.py"}, parsed
