"""Real Airflow for tests, always in child processes: importing Airflow into the test process
would make the rest of the suite "inside Airflow" (``conveyor.runtime.secrets.in_airflow``).

``airflow_env`` is a temporary ``AIRFLOW_HOME`` with its database migrated once per session;
``airflow_project`` a copy of this repository's project (config, mappings, master data, samples)
with its own SQLite ledger holding the README's day of plant 1000; ``run_python`` runs a snippet
under that environment and returns the JSON its last output line holds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TIMINGS: dict[str, float] = {}
"""Seconds each step took (printed by the tests that measure them)."""


def require_airflow() -> None:
    """Skip without Airflow, except on CI, where it must be installed (``.ci/run`` does)."""
    if importlib.util.find_spec("airflow") is None:
        if os.environ.get("CI"):
            pytest.fail("Airflow is not installed: CI installs the airflow extra")
        pytest.skip("Airflow not installed (pip install -e '.[dev,airflow]')")


def run(
    args: list[str], env: dict[str, str], *, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command under ``env``; the output is kept for the assertion message."""
    return subprocess.run(
        args, env=env, cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def run_python(code: str, env: dict[str, str], *, timeout: float = 300) -> Any:
    """Run ``code`` in a fresh interpreter under ``env``; its last output line is JSON."""
    done = run([sys.executable, "-c", textwrap.dedent(code)], env, timeout=timeout)
    assert done.returncode == 0, (
        f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    )
    return last_json(done.stdout)


def last_json(output: str) -> Any:
    """The last line of ``output`` that is JSON (Airflow prints its warnings to stdout too)."""
    for line in reversed(output.splitlines()):
        if line.startswith(("{", "[")):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise AssertionError(f"no JSON line in the output:\n{output[-4000:]}")


def make_airflow_env(home: Path) -> dict[str, str]:
    """The environment of every Airflow child process of the session (no examples, SQLite)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CONVEYOR_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def migrate(env: dict[str, str]) -> None:
    """``airflow db migrate`` (timed)."""
    started = time.perf_counter()
    done = run([str(BIN / "airflow"), "db", "migrate"], env, timeout=600)
    TIMINGS["db migrate"] = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-4000:]


def make_project(root: Path, broker: str | None) -> dict[str, str]:
    """A copy of this repository's project under ``root`` with the Airflow settings the tests
    use, its ledger created and the README's day accepted; returns the ``CONVEYOR_*``
    environment that points at it."""
    for name in ("mappings", "master_data", "samples"):
        shutil.copytree(REPO / name, root / name)
    config = yaml.safe_load((REPO / "conveyor.yaml").read_text(encoding="utf-8"))
    config["systems"]["kingdee"] = {  # an ERP with a material master; its URL and user come
        "role": "erp",  # from the Airflow Connection kingdee_k3 the test sets
        "connector": "kingdee",
        "connection": "kingdee_k3",
        "settings": {"acct_id": "65a1b2c3d4e5f6", "org": "100", "timeout_s": 5},
    }
    config["airflow"] = {
        "reconcile": {
            "systems": ["hub", "wms"],
            "snapshots": {"wms": "samples/wms_snapshot.json"},
            "out": "reports",
        },
        "on_parked": {"notifier": "tests.support.airflow:record_notification", "poll_s": 0.2},
    }
    suffix = uuid.uuid4().hex[:10]
    config["events"] = {
        "exchange": f"conveyor.test.{suffix}.events",
        "queue": f"conveyor.test.{suffix}.parked",
    }
    if broker:
        config["events"]["broker"] = broker
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    env = {
        "CONVEYOR_PROJECT": str(root),
        "CONVEYOR_DB_URL": f"sqlite:///{root / 'ledger.db'}",
        "CONVEYOR_NOTIFY_FILE": str(root / "notified.jsonl"),
    }
    return env


def conveyor(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The ``conveyor`` command under ``env``."""
    return run([str(BIN / "conveyor"), *args], env, cwd=cwd, timeout=300)


def record_notification(events: list[dict[str, Any]]) -> None:
    """A notifier for ``conveyor_on_parked`` in tests: appends the events to
    ``CONVEYOR_NOTIFY_FILE``."""
    with open(os.environ["CONVEYOR_NOTIFY_FILE"], "a", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event) + "\n")


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated temporary ``AIRFLOW_HOME`` and the environment that uses it (once a session)."""
    require_airflow()
    env = make_airflow_env(tmp_path_factory.mktemp("airflow_home"))
    migrate(env)
    return env


@pytest.fixture(scope="session")
def airflow_project(
    tmp_path_factory: pytest.TempPathFactory, airflow_env: dict[str, str]
) -> tuple[Path, dict[str, str]]:
    """The test project (see ``make_project``) with its ledger holding the README's day (the
    MES's afternoon file parks one record), and the environment of Airflow pointed at it."""
    from tests.support.broker import BROKER

    root = tmp_path_factory.mktemp("project")
    env = {**airflow_env, **make_project(root, BROKER)}
    for args in (
        ["db", "upgrade"],
        ["accept", "samples/messages.jsonl"],
        ["ingest", "--system", "mes", "--type", "material_consumption",
         "samples/mes_consumption.csv"],
    ):  # fmt: skip
        done = conveyor(args, env, root)
        assert done.returncode in (0, 1), f"{args}: {done.stdout}\n{done.stderr}"
    return root, env
