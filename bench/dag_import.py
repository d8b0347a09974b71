"""``python -m bench dag_import [--quick]``: seconds Airflow takes to parse ``dags/`` for a project
of 20 systems (10 polling ERPs, 5 file drops, 5 REST targets), against Airflow's own import
(``airflow.sdk`` and the DagBag class) measured in the same child process.

Each repetition is a fresh Python process with a temporary ``AIRFLOW_HOME`` (examples off), so
nothing is cached between them; the DagBag is built over this repository's ``dags/`` with
``CONVEYOR_PROJECT`` pointing at the generated project. The figure is the median parse time
beyond the import; the target is < 1 s beyond it, with no import error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from bench.common import machine, result, table

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 1.0
CHILD = """
import json, time
started = time.perf_counter()
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
bag = DagBag()
parsed = time.perf_counter()
print(json.dumps({"import_s": imported - started, "parse_s": parsed - imported,
                  "dags": len(bag.dag_ids), "errors": len(bag.import_errors)}))
"""


def make_project(root: Path, systems: int = 20) -> None:
    """A copy of this repository's project with ``systems`` systems and routes between them."""
    for name in ("mappings", "master_data"):
        shutil.copytree(REPO / name, root / name)
    config = yaml.safe_load((REPO / "conveyor.yaml").read_text(encoding="utf-8"))
    erps, drops, rests = systems // 2, systems // 4, systems - systems // 2 - systems // 4
    for n in range(erps):
        config["systems"][f"kingdee_{n:02}"] = {
            "role": "erp",
            "connector": "kingdee",
            "connection": f"kingdee_{n:02}",
            "poll_every": 60,
            "settings": {"url": "http://127.0.0.1:9", "acct_id": "65a1b2c3d4e5f6", "org": "100"},
        }
    for n in range(drops):
        config["systems"][f"drop_{n:02}"] = {
            "role": "mes",
            "connector": "files",
            "connection": f"drop_{n:02}",
            "settings": {"root": f"drops/{n:02}", "patterns": {"*.csv": "material_consumption"}},
        }
    for n in range(rests):
        config["systems"][f"rest_{n:02}"] = {
            "role": "wms",
            "connector": "rest",
            "connection": f"rest_{n:02}",
            "settings": {"url": "http://127.0.0.1:9/{message_type}", "auth": "none"},
        }
    config["routes"].append(
        {
            "name": "bench fan-out",
            "type": "material_consumption",
            "source": "mes",
            "targets": [f"rest_{n:02}" for n in range(rests)],
        }
    )
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def parse_once(project: Path, home: Path) -> dict[str, Any]:
    """One fresh process: import Airflow, then parse ``dags/``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CONVEYOR_"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        "CONVEYOR_PROJECT": str(project),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    last: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return last


def main() -> None:
    """Parse the DAGs of a 20-system project several times; print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 7")
    args = parser.parse_args()
    try:
        import airflow  # noqa: F401
    except ImportError:
        print("dag_import needs Airflow: pip install -e '.[airflow]'", file=sys.stderr)
        sys.exit(1)
    runs = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-dags-") as tmp:
        project, home = Path(tmp) / "project", Path(tmp) / "airflow"
        project.mkdir()
        home.mkdir()
        make_project(project)
        for _ in range(3 if args.quick else 7):
            runs.append(parse_once(project, home))
    imports = statistics.median(r["import_s"] for r in runs)
    parse = statistics.median(r["parse_s"] for r in runs)
    dags, errors = runs[0]["dags"], max(r["errors"] for r in runs)
    table(
        [
            ["Airflow import (anchor)", f"{imports:.3f}"],
            ["parse dags/ beyond it", f"{parse:.3f}"],
            ["DAGs", dags],
            ["import errors", errors],
        ],
        ["20 systems, median of runs", "seconds"],
    )
    result(
        "dag_import",
        "parse_s_beyond_import",
        round(parse, 3),
        "s",
        "airflow_import_s",
        round(imports, 3),
        higher_is_better=False,
        target=f"< {TARGET_S} s beyond Airflow's import, 0 import errors",
        meets_target=parse < TARGET_S and errors == 0,
        extra={"dags": dags, "import_errors": errors, "runs": len(runs), **machine()},
    )


if __name__ == "__main__":
    main()
