"""The DAGs of dags/ under a real Airflow 3 (in child processes, see ``tests.support.airflow``):
a DagBag with no import errors and the promised shape, ``airflow dags reserialize`` clean,
``conveyor_reconcile`` by ``dag.test()`` writing the same report.json as ``conveyor reconcile``,
and ``conveyor_replay`` listing without changing anything in a dry run."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from tests.support.airflow import (
    BIN,
    TIMINGS,
    airflow_env,
    airflow_project,
    conveyor,
    last_json,
    run,
    run_python,
)
from tests.support.file_drop import move_rows, write_moves, write_project

__all__ = ["airflow_env", "airflow_project"]  # the session fixtures used here

SHAPE = """
import json, time
started = time.perf_counter()
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
bag = DagBag()
parsed = time.perf_counter()
dags = {}
for dag_id in bag.dag_ids:
    dag = bag.get_dag(dag_id)
    dags[dag_id] = {
        "schedule": str(dag.schedule if hasattr(dag, "schedule") else dag.timetable),
        "timetable": type(dag.timetable).__name__,
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tags": sorted(dag.tags),
        "doc_md": bool(dag.doc_md),
        "params": {k: dag.params.get_param(k).schema for k in dag.params},
        "param_defaults": {k: dag.params[k] for k in dag.params},
        "tasks": {t.task_id: {"retries": t.retries, "retry_delay": t.retry_delay.total_seconds()}
                  for t in dag.tasks},
    }
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags,
                  "import_s": imported - started, "dagbag_s": parsed - imported}, default=str))
"""


@pytest.fixture(scope="module")
def shape(airflow_project: tuple[Path, dict[str, str]]) -> dict:
    _, env = airflow_project
    return run_python(SHAPE, env)


def test_dagbag_has_no_import_errors_and_every_dag(shape: dict) -> None:
    print(f"Airflow import {shape['import_s']:.2f} s, DagBag of dags/ {shape['dagbag_s']:.2f} s")
    assert shape["errors"] == {}
    assert sorted(shape["dags"]) == [
        "conveyor_master_data",
        "conveyor_on_parked",
        "conveyor_poll_kingdee",
        "conveyor_poll_mes",
        "conveyor_poll_sap",
        "conveyor_poll_wms",
        "conveyor_reconcile",
        "conveyor_replay",
    ]
    for dag_id, dag in shape["dags"].items():
        assert dag["catchup"] is False, dag_id
        assert "conveyor" in dag["tags"], dag_id
        assert dag["doc_md"], dag_id
    for dag_id in (
        "conveyor_poll_sap",
        "conveyor_reconcile",
        "conveyor_replay",
        "conveyor_master_data",
    ):
        assert shape["dags"][dag_id]["max_active_runs"] == 1, dag_id


def test_tasks_that_call_systems_retry_with_a_delay(shape: dict) -> None:
    poll = shape["dags"]["conveyor_poll_sap"]
    assert poll["tasks"]["poll"] == {"retries": 3, "retry_delay": 60.0}
    assert shape["dags"]["conveyor_reconcile"]["tasks"]["reconcile"]["retries"] == 3
    assert poll["timetable"] == "DeltaTriggerTimetable"
    assert "0:05:00" in poll["schedule"]  # no poll_every in conveyor.yaml: every 300 s
    assert "0 2 * * *" in shape["dags"]["conveyor_reconcile"]["schedule"]


def test_replay_form_offers_the_targets_and_a_dry_run_by_default(shape: dict) -> None:
    replay = shape["dags"]["conveyor_replay"]
    assert replay["params"]["target"]["enum"] == ["mes", "sap", "wms"]
    assert replay["param_defaults"]["dry_run"] is True
    assert replay["params"]["ids"]["type"] == ["null", "string"]
    assert replay["params"]["reason_like"]["type"] == ["null", "string"]
    assert "AssetTriggeredTimetable" in shape["dags"]["conveyor_on_parked"]["timetable"]


def test_reserialize_is_clean(airflow_project: tuple[Path, dict[str, str]]) -> None:
    _, env = airflow_project
    airflow = str(BIN / "airflow")
    started = time.perf_counter()
    done = run([airflow, "dags", "reserialize"], env)
    TIMINGS["reserialize"] = time.perf_counter() - started
    print(f"airflow dags reserialize: {TIMINGS['reserialize']:.1f} s")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    errors = run([airflow, "dags", "list-import-errors", "-o", "json"], env)
    assert errors.returncode == 0, errors.stderr[-2000:]
    assert last_json(errors.stdout) == []
    listed = run([airflow, "dags", "list", "-o", "json"], env)
    ids = {d["dag_id"] for d in last_json(listed.stdout)}
    assert {"conveyor_on_parked", "conveyor_reconcile", "conveyor_replay"} <= ids
    assert "conveyor_master_data" in ids


DAG_TEST = """
import json, os, sqlite3, time
from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

def deliveries():
    ledger = os.environ["CONVEYOR_DB_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(ledger) as db:
        return dict(db.execute("select status, count(*) from deliveries group by status"))

dag = DagBag().get_dag({dag_id!r})
out = []
for conf in {confs!r}:
    started = time.perf_counter()
    run = dag.test(run_conf=conf)
    took = time.perf_counter() - started
    with create_session() as session:
        value = session.query(XComModel.value).filter_by(
            dag_id=dag.dag_id, run_id=run.run_id, task_id={task_id!r}, key="return_value"
        ).scalar()
    ti = run.get_task_instance({task_id!r})
    out.append({{"state": str(run.state), "xcom": value, "seconds": took, "task": str(ti.state),
                "tries": ti.try_number, "deliveries": deliveries()}})
print(json.dumps(out, default=str))
"""


def dag_test(env: dict[str, str], dag_id: str, task_id: str, *confs: dict) -> list[dict]:
    """``dag.test()`` of one DAG in a child process, once per conf (one run without): each run's
    state, its task's state, tries and XCom, the time it took, and the ledger's deliveries by
    status after it."""
    code = DAG_TEST.format(dag_id=dag_id, task_id=task_id, confs=list(confs) or [{}])
    out = run_python(code, env)
    for one in out:
        print(f"{dag_id}: dag.test() {one['seconds']:.1f} s")
    return list(out)


VOLATILE = ("run_id", "generated_at")


def test_reconcile_dag_writes_the_report_conveyor_reconcile_writes(
    airflow_project: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, env = airflow_project
    (out,) = dag_test(env, "conveyor_reconcile", "reconcile")
    assert out["state"] == "success"
    summary = out["xcom"]["summary"]
    assert (summary["lines"], summary["matched"], summary["quantity_mismatch"]) == (5, 3, 1)
    assert summary["accuracy_pct"] == 60.0
    assert summary["variance_value"] == "846.25"
    dag_report = json.loads((Path(out["xcom"]["out"]) / "report.json").read_text("utf-8"))
    assert Path(out["xcom"]["out"]).parent == root / "reports"

    snapshot = f"wms={root / 'samples' / 'wms_snapshot.json'}"
    done = conveyor(
        ["reconcile", "--systems", "hub,wms", "--snapshot", snapshot, "--runner", "airflow",
         "--out", str(tmp_path / "cli")],
        env,
        root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cli_report = json.loads((tmp_path / "cli" / "report.json").read_text("utf-8"))
    for key in VOLATILE:
        assert dag_report.pop(key) != cli_report.pop(key) or key == "generated_at"
    assert dag_report == cli_report


def _counts(ledger: Path) -> dict[str, int]:
    with sqlite3.connect(ledger) as db:
        return dict(db.execute("select status, count(*) from deliveries group by status"))


def test_replay_dry_run_lists_and_changes_nothing(
    airflow_project: tuple[Path, dict[str, str]],
) -> None:
    root, env = airflow_project
    ledger = root / "ledger.db"
    with sqlite3.connect(ledger) as db:  # two deliveries to sap refused by the target
        ids = [r[0] for r in db.execute("select id from deliveries where target='sap' limit 2")]
        db.execute(
            "update deliveries set status='parked', last_error='sap: material locked (M7 021)' "
            f"where id in ({','.join('?' * len(ids))})",
            ids,
        )
    before = _counts(ledger)
    assert before["parked"] == 2

    dry, real = dag_test(
        env,
        "conveyor_replay",
        "replay",
        {"target": "sap", "reason_like": "material locked", "dry_run": True},
        {"target": "sap", "dry_run": False},
    )
    assert dry["state"] == "success"
    assert dry["xcom"]["dry_run"] is True
    assert dry["xcom"]["selected"] == sorted(ids)
    assert {d["reason"] for d in dry["xcom"]["deliveries"]} == {"sap: material locked (M7 021)"}
    assert dry["deliveries"] == before  # nothing changed

    assert real["xcom"]["requeued"] == 2
    after = real["deliveries"]
    assert after == _counts(ledger)
    assert after.get("parked", 0) == 0
    assert after["pending"] == before["pending"] + 2


def test_a_broken_input_fails_the_reconciliation_at_once(
    airflow_project: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, env = airflow_project
    broken = tmp_path / "broken"
    shutil.copytree(root, broken, ignore=shutil.ignore_patterns("reports", ".conveyor", "*.db"))
    config = yaml.safe_load((broken / "conveyor.yaml").read_text(encoding="utf-8"))
    config["airflow"]["reconcile"]["snapshots"] = {"wms": "samples/missing.json"}
    (broken / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (out,) = dag_test({**env, "CONVEYOR_PROJECT": str(broken)}, "conveyor_reconcile", "reconcile")
    assert out["state"] == "failed"
    assert out["task"] == "failed"  # not up_for_retry: retrying cannot help
    assert out["tries"] == 1
    assert not (broken / "reports").exists()


def test_file_drops_dag_takes_in_the_inbox_and_parks_the_bad_row(
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    root = write_project(
        tmp_path / "wh_project",
        {"root": str(tmp_path / "drop"), "patterns": {"moves_*.csv": "stock_transfer"}},
    )
    (tmp_path / "drop" / "inbox").mkdir(parents=True)
    write_moves(tmp_path / "drop" / "inbox" / "moves_1.csv", move_rows(5, bad=[3]))
    env = {
        **airflow_env,
        "CONVEYOR_PROJECT": str(root),
        "CONVEYOR_DB_URL": f"sqlite:///{root / 'ledger.db'}",
    }
    assert conveyor(["db", "upgrade"], env, root).returncode == 0
    (out,) = dag_test(env, "conveyor_file_drops", "take_in")
    assert out["state"] == "success"
    (result,) = out["xcom"]
    assert (result["units"], result["acknowledged"], result["failed"]) == (1, 1, 0)
    assert (result["accepted"], result["parked"]) == (4, 1)
    assert not list((tmp_path / "drop" / "inbox").iterdir())
    assert [p.name for p in (tmp_path / "drop" / "archive").glob("moves_1.csv")] == ["moves_1.csv"]


def test_master_data_dag_stages_the_erp_materials_and_the_diff(
    airflow_project: tuple[Path, dict[str, str]], shape: dict
) -> None:
    from tests.support import kingdee as kd

    root, env = airflow_project
    dag = shape["dags"]["conveyor_master_data"]
    assert dag["tasks"] == {"pull_kingdee": {"retries": 3, "retry_delay": 60.0}}
    assert "0 5 * * *" in dag["schedule"]
    assert dag["params"]["since"]["type"] == ["null", "string"]
    master_data = {p.name: p.read_bytes() for p in (root / "master_data").iterdir()}
    with kd.serve() as server:
        kd.change_material_master(kd.simulator_of(server))
        connection = {"conn_type": "conveyor_kingdee", "host": server.url,
                      "login": kd.USERNAME, "password": kd.PASSWORD}  # fmt: skip
        full, partial = dag_test(
            {**env, "AIRFLOW_CONN_KINGDEE_K3": json.dumps(connection)},
            "conveyor_master_data",
            "pull_kingdee",
            {},
            {"since": "2999-01-01T00:00:00"},
        )
    assert (full["state"], full["task"]) == ("success", "success")
    counts = full["xcom"]["counts"]
    assert counts == {"pulled": 12, "new": 1, "changed": 2, "missing": 1, "unchanged": 9}
    staged = Path(full["xcom"]["folder"])
    assert staged.parent == root / ".conveyor" / "staging" / "master_data" / "kingdee"
    assert json.loads((staged / "diff.json").read_text("utf-8"))["counts"] == counts
    assert partial["xcom"]["counts"]["pulled"] == 0
    assert partial["xcom"]["since"] == "2999-01-01T00:00:00"
    assert {p.name: p.read_bytes() for p in (root / "master_data").iterdir()} == master_data
