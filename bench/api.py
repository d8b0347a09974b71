"""Bench ``api``: messages per second accepted through ``POST /v1/messages`` in batches of 100 on
PostgreSQL (``conveyor serve`` in its own process, two clients posting), against
``Ledger.accept_batch`` of the same kind of messages in batches of 100 in the same run (target:
>= 0.7 of it); then single-message posts at 200 requests/s, open loop (target: p99 < 25 ms).
A throwaway database is created and dropped."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.common import result, table, throwaway_database
from conveyor.api.tokens import TokenStore
from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine

BATCH = 100
CLIENTS = 2
RATE = 200
SENDERS = 32
RATIO_TARGET = 0.7
P99_TARGET_MS = 25.0
CONFIG = """
systems:
  mes: {connector: fake, role: mes}
  erp: {connector: fake, role: erp}
  wms: {connector: fake, role: wms}
routes:
  - type: [material_consumption, production_output]
    source: mes
    targets: [erp, wms]
alerts: {on_accept: false}
"""


def message(run: str, n: int) -> dict[str, Any]:
    """A production output of the MES (``run`` keeps keys apart between the two measurements)."""
    return {
        "message_id": str(uuid.uuid4()),
        "type": "production_output",
        "source": "mes",
        "key": f"GR-{run}/{n}",
        "occurred_at": "2026-11-21T19:55:00+08:00",
        "schema_version": "1.0",
        "payload": {
            "order_id": f"1000{n % 50}",
            "material": f"FG-{n % 200}",
            "quantity": "1.25",
            "uom": "PCS",
            "location": "1000/FG",
            "lot": f"L{n % 20}",
        },
    }


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def anchor(ledger: Ledger, n: int) -> float:
    """``Ledger.accept_batch`` in batches of 100: messages per second."""
    run = uuid.uuid4().hex[:8]
    items = [message(run, i) for i in range(n)]
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        results = ledger.accept_batch(items[start : start + BATCH])
        assert all(r.status == "accepted" for r in results)
    return n / (time.perf_counter() - started)


def through_api(url: str, token: str, n: int) -> float:
    """``POST /v1/messages`` in batches of 100 from ``CLIENTS`` clients: messages per second."""
    run = uuid.uuid4().hex[:8]
    bodies = [
        json.dumps([message(run, i) for i in range(start, min(n, start + BATCH))]).encode()
        for start in range(0, n, BATCH)
    ]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    lock = threading.Lock()

    def post(share: list[bytes]) -> None:
        with httpx.Client(timeout=60) as client:
            for body in share:
                answer = client.post(f"{url}/v1/messages", content=body, headers=headers)
                if answer.status_code != 202:
                    with lock:
                        raise SystemExit(f"POST answered {answer.status_code}: {answer.text[:300]}")

    shares = [bodies[i::CLIENTS] for i in range(CLIENTS)]
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for done in [pool.submit(post, share) for share in shares]:
            done.result()
    return n / (time.perf_counter() - started)


def single_posts(url: str, token: str, seconds: float) -> list[float]:
    """One message per request at ``RATE`` requests/s, open loop: each request's latency in ms
    from its scheduled start (a server that falls behind is not flattered). The client is the
    standard library's ``http.client`` on ``SENDERS`` threads with a kept-alive connection each:
    on two shared cores a heavier client would measure itself."""
    run = uuid.uuid4().hex[:8]
    count = int(RATE * seconds)
    bodies = [json.dumps(message(run, i)).encode() for i in range(count)]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    lock = threading.Lock()
    tickets = iter(range(count))
    begin = time.perf_counter() + 0.2

    def sender() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        while True:
            with lock:
                index = next(tickets, None)
            if index is None:
                connection.close()
                return
            due = begin + index / RATE
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            connection.request("POST", "/v1/messages", body=bodies[index], headers=headers)
            answer = connection.getresponse()
            text = answer.read()
            spent = (time.perf_counter() - due) * 1000
            if answer.status != 202:
                raise SystemExit(f"POST answered {answer.status}: {text[:300]!r}")
            with lock:
                latencies.append(spent)

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(latencies)


def percentile(values: list[float], share: float) -> float:
    """The ``share`` percentile of sorted ``values``."""
    return values[min(len(values) - 1, int(share * len(values)))]


def main() -> None:
    """Create a throwaway database and a project, serve the API, measure, print, clean up."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 5_000 if args.quick else 30_000
    seconds = 5.0 if args.quick else 20.0
    with throwaway_database() as url, tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "conveyor.yaml").write_text(CONFIG, encoding="utf-8")
        project = Project.load(root)
        engine = make_engine(url)
        ledger = Ledger(engine, project.router)
        ledger.upgrade()
        token = TokenStore.of_project(root).add("bench", "ingest")
        port = _port()
        env = {**os.environ, "CONVEYOR_DB_URL": url}
        env.pop("CONVEYOR_BROKER_URL", None)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "--project",
                str(root),
                "serve",
                "--port",
                str(port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(base, server)
            anchor(ledger, 1_000)  # warm both sides up before measuring
            through_api(base, token, 1_000)
            anchor_rate = anchor(ledger, n)
            api_rate = through_api(base, token, n)
            latencies = single_posts(base, token, seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
            engine.dispose()
    ratio = api_rate / anchor_rate
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    table(
        [
            ("Ledger.accept_batch (100 per batch)", f"{anchor_rate:,.0f} msg/s", ""),
            (
                f"POST /v1/messages (100 per body, {CLIENTS} clients)",
                f"{api_rate:,.0f} msg/s",
                f"{ratio:.2f}",
            ),
            (f"single posts at {RATE}/s: p50", f"{p50:.1f} ms", ""),
            (f"single posts at {RATE}/s: p99", f"{p99:.1f} ms", ""),
        ],
        ["measure", "value", "ratio"],
    )
    meets = ratio >= RATIO_TARGET and p99 < P99_TARGET_MS
    result(
        "api",
        "post_messages_msgs_per_s",
        api_rate,
        "msg/s",
        "Ledger.accept_batch of the same messages (batches of 100)",
        anchor_rate,
        target=f">= {RATIO_TARGET} of anchor; single-post p99 < {P99_TARGET_MS:g} ms at {RATE}/s",
        meets_target=meets,
        extra={
            "messages": n,
            "single_posts": len(latencies),
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
    )


def _wait(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("conveyor serve ended before it was ready")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("conveyor serve did not get ready in 60 s")


if __name__ == "__main__":
    main()
