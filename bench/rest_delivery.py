"""rest_delivery: postings per second to the Kingdee simulator (100 ms latency per call) through
the real delivery path — SQLite ledger, outbound mapping, the delivery worker with concurrency and
``BatchSave`` — against one call per document in sequence, measured in the same run (target:
at least 20× the sequential rate). Also prints the client's CPU time per posted document.

The simulator runs in its own process (``python -m simulators.kingdee``), so the client's CPU is
the hub's alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import result, table

REPO = Path(__file__).resolve().parent.parent
LATENCY_MS = 100
TARGET = 20.0
CREDENTIALS = {"USERNAME": "integ_user", "PASSWORD": "integ_pass"}


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    """The Kingdee simulator in a child process; its base URL (its first line)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators.kingdee",
            "--port",
            "0",
            "--latency-ms",
            str(LATENCY_MS),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        print("the Kingdee simulator did not start", file=sys.stderr)
        sys.exit(1)
    return process, url


def make_project(root: Path, url: str, batch: int) -> Path:
    """A project posting consumptions from ``mes`` to ``kingdee`` (the simulator)."""
    import yaml

    shutil.copytree(REPO / "mappings", root / "mappings")
    shutil.copytree(REPO / "master_data", root / "master_data")
    config = {
        "systems": {
            "kingdee": {
                "connector": "kingdee",
                "batch_size": batch,
                "settings": {
                    "url": url,
                    "acct_id": "65a1b2c3d4e5f6",
                    "auto_submit_audit": True,
                    "batch_size": batch,
                    "timeout_s": 30,
                },
            }
        },
        "routes": [{"type": "material_consumption", "source": "mes", "targets": ["kingdee"]}],
    }
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


def consumption(n: int, run: str) -> dict[str, Any]:
    from conveyor.messages import new_message

    payload = {
        "order_id": f"MO{n:06d}",
        "material": "RM-1001",
        "location": "1000/RM",
        "quantity": "1.5",
        "uom": "KG",
    }
    return new_message("material_consumption", "mes", f"{run}-{n}/1", payload)


def batched(root: Path, count: int, batch: int, concurrency: int) -> tuple[float, float, int]:
    """Deliver ``count`` consumptions with the worker: (seconds, client CPU seconds, delivered)."""
    from conveyor.config import Project, RetryPolicy
    from conveyor.delivery.worker import Worker, WorkerOptions
    from conveyor.ledger import Ledger
    from conveyor.ledger.db import make_engine

    project = Project.load(root)
    engine = make_engine(f"sqlite:///{root / 'ledger.db'}")
    ledger = Ledger(engine, project.router)
    ledger.upgrade()
    for start in range(0, count, 1000):
        ledger.accept_batch([consumption(n, "B") for n in range(start, min(count, start + 1000))])
    worker = Worker(
        engine,
        targets=["kingdee"],
        project=project,
        policy=RetryPolicy(max_attempts=5, base_delay_s=0.05, max_delay_s=0.5),
        options=WorkerOptions(
            concurrency=concurrency, batch_size=batch, heartbeat_s=1.0, stale_after_s=60
        ),
    )
    cpu, wall = time.process_time(), time.perf_counter()
    run = worker.run(until_idle=True, timeout=600)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    delivered = int(run.counters.get("delivered", 0))
    engine.dispose()
    return wall, cpu, delivered


def sequential(root: Path, count: int) -> tuple[float, int]:
    """One ``send`` (one call) per document, in sequence, mapped the same way."""
    from conveyor.config import Project
    from conveyor.mapping import MappingEngine
    from conveyor.runtime import registry

    project = Project.load(root)
    mapping = MappingEngine.load(project)
    connector = registry.create(project.system("kingdee"))
    messages = [consumption(n, "S") for n in range(count)]
    documents = [mapping.map_outbound("kingdee", m) for m in messages]
    connector.check()  # log in outside the timing, as the batched path's first call does inside
    start = time.perf_counter()
    posted = 0
    for message, document in zip(messages, documents, strict=True):
        sent = connector.send(
            document, message_type="material_consumption", key=f"mes:{message['key']}"
        )
        posted += sent.external_ref is not None
    seconds = time.perf_counter() - start
    connector.close()
    return seconds, posted


def main() -> None:
    """Run both paths against one simulator and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, anchor_count = (1000, 20) if args.quick else (5000, 50)
    batch, concurrency = 100, 8
    for name, value in CREDENTIALS.items():
        os.environ[f"CONVEYOR_KINGDEE_{name}"] = value
    process, url = start_simulator()
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = make_project(Path(folder), url, batch)
            seq_s, seq_posted = sequential(root, anchor_count)
            wall, cpu, delivered = batched(root, count, batch, concurrency)
    finally:
        process.terminate()
        process.wait(timeout=10)
    if delivered != count or seq_posted != anchor_count:
        print(f"not every document was posted: {delivered}/{count}, {seq_posted}", file=sys.stderr)
        sys.exit(1)
    rate, anchor = delivered / wall, seq_posted / seq_s
    cpu_ms = cpu * 1000 / delivered
    table(
        [
            ["one call per document, in sequence", seq_posted, f"{seq_s:.2f}", f"{anchor:.1f}"],
            [
                f"worker: BatchSave of {batch}, concurrency {concurrency}",
                delivered,
                f"{wall:.2f}",
                f"{rate:.1f}",
            ],
        ],
        ["path (Kingdee simulator, 100 ms per call)", "documents", "seconds", "docs/s"],
    )
    print(f"client CPU per posted document: {cpu_ms:.3f} ms (ledger, mapping, worker, HTTP)")
    ratio = rate / anchor
    result(
        "rest_delivery",
        "postings_per_s",
        rate,
        "docs/s",
        "one call per document in sequence",
        anchor,
        target=f">= {TARGET:g}x anchor",
        meets_target=ratio >= TARGET,
        extra={
            "latency_ms": LATENCY_MS,
            "batch_size": batch,
            "concurrency": concurrency,
            "documents": delivered,
            "client_cpu_ms_per_doc": round(cpu_ms, 3),
        },
    )


if __name__ == "__main__":
    main()
