"""Bench ``routing``: end-to-end messages/s, accept → RabbitMQ → delivery worker → an HTTP target on
loopback, with the ledger on PostgreSQL; and p50/p99 latency from accept to target at a steady
500 messages/s (target p99 < 100 ms). Two paths are measured, each on a database of its own: the
batched one (the target takes ``send_batch``: a JSON array per call, ``batch_size`` documents)
— the figure judged — and one document per call, printed beside it.

Anchor, measured in the same run: the raw broker limit — a plain pika publisher with asynchronous
confirms (window 1,000) and a consumer with manual acks (prefetch 200) in two processes, same
message size, same queue type (quorum). Target: end-to-end >= 0.35 of the anchor.

The pipeline runs as it does in production: ``conveyor run`` worker processes (each with its outbox
relay) and the ``http-target`` simulator (``conveyor simulate http-target``) in its own process;
this process only accepts messages. The
transport packs up to 20 deliveries per broker message (its default ``pack``), so ``PREFETCH``
counts broker messages.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pika
import yaml
from sqlalchemy import text

from bench.common import result, table
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.messages import new_message
from conveyor.routing import Router
from conveyor.transport.base import Envelope

ADMIN_URL = os.environ.get(
    "CONVEYOR_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BROKER = os.environ.get("CONVEYOR_BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/%2F")
RATIO_TARGET = 0.35
P99_TARGET_MS = 100.0
STEADY_RATE = 500
ROUTES = [{"type": "production_output", "source": "mes", "targets": ["erp"]}]
BODY = Envelope(123456, "erp", "production_output", "mes").body()
BATCH_SIZE = 250
"""Jobs a delivery thread claims together (the pipeline's setting, not the anchor's)."""
PREFETCH = 2 * BATCH_SIZE
"""The pipeline consumers' prefetch: a batch for each of the two delivery threads. (The anchor's
consumer keeps prefetch 200.) Two processes × two threads × 250 measured 2,600 msg/s against
2,400 with × 100 / prefetch 200 and 2,100-2,200 with 4 or 8 threads per process: on two cores
more threads only take smaller batches and wait for the GIL."""


# ---------------------------------------------------------------------- anchor: raw pika
def _raw_publisher(queue: str, n: int, started: Any) -> None:
    """Publish ``n`` persistent messages with asynchronous confirms, window 1,000."""
    params = pika.URLParameters(BROKER)
    state = {"sent": 0, "acked": 0}
    window = 1000
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")

    def pump(channel: Any) -> None:
        while state["sent"] < n and state["sent"] - state["acked"] < window:
            channel.basic_publish("", queue, BODY, props)
            state["sent"] += 1

    def on_confirm(frame: Any) -> None:
        tag = frame.method.delivery_tag
        state["acked"] = tag if frame.method.multiple else max(state["acked"], tag)
        if state["acked"] >= n:
            connection.close()
            return
        pump(channel_holder[0])

    channel_holder: list[Any] = []

    def on_channel(channel: Any) -> None:
        channel_holder.append(channel)

        def confirmed(_frame: Any) -> None:
            started.value = time.time()
            pump(channel)

        channel.confirm_delivery(on_confirm, callback=confirmed)

    connection = pika.SelectConnection(
        params,
        on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
        on_close_callback=lambda c, r: c.ioloop.stop(),
    )
    connection.ioloop.start()


def _raw_consumer(queue: str, n: int, finished: Any, ready: Any) -> None:
    """Consume ``n`` messages with manual acks, prefetch 200."""
    connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=200)
    count = 0

    def on_message(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        nonlocal count
        ch.basic_ack(method.delivery_tag)
        count += 1
        if count >= n:
            finished.value = time.time()
            ch.stop_consuming()

    channel.basic_consume(queue, on_message, auto_ack=False)
    ready.set()
    channel.start_consuming()
    connection.close()


def raw_broker_rate(n: int) -> float:
    """Messages/s through a quorum queue, publisher and consumer running together."""
    queue = f"conveyor.bench.raw.{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    try:
        started, finished = mp.Value("d", 0.0), mp.Value("d", 0.0)
        ready = mp.Event()
        consumer = mp.Process(target=_raw_consumer, args=(queue, n, finished, ready))
        consumer.start()
        ready.wait(30)
        publisher = mp.Process(target=_raw_publisher, args=(queue, n, started))
        publisher.start()
        publisher.join(300)
        consumer.join(300)
        return float(n / (finished.value - started.value))
    finally:
        channel.queue_delete(queue)
        connection.close()


# ---------------------------------------------------------------------- the pipeline
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_polls: dict[str, http.client.HTTPConnection] = {}


def _get(url: str) -> Any:
    """GET a JSON answer from the target over one kept-alive connection (the bench polls it
    every 20 ms: a connection and a server thread per poll would load the machine it measures)."""
    parts = urlsplit(url)
    conn = _polls.get(parts.netloc)
    if conn is None:
        conn = _polls[parts.netloc] = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        return json.loads(response.read())
    except (OSError, http.client.HTTPException):
        conn.close()
        del _polls[parts.netloc]
        raise


def _wait_for(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _messages(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        new_message(
            "production_output",
            "mes",
            f"{prefix}-{i}/1",
            {
                "order_id": f"{prefix}-PO-{i}",
                "material": "M1",
                "quantity": "1.5",
                "uom": "KG",
                "location": "1000/FG",
            },
        )
        for i in range(n)
    ]


def _wait_documents(target: str, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _get(f"{target}/_sim/stats")["documents"] >= count:
            return time.time()
        time.sleep(0.02)
    raise RuntimeError(f"only {_get(f'{target}/_sim/stats')} of {count} arrived in {timeout} s")


def pipeline(
    db_url: str, n: int, steady_s: float, workers: int, concurrency: int, *, batched: bool
) -> dict[str, Any]:
    """Throughput and latency of the whole path, in worker processes (``batched``: the target
    takes batches of ``BATCH_SIZE`` documents per call, else one document per call)."""
    port = _free_port()
    target = f"http://127.0.0.1:{port}"
    prefix = f"conveyor.bench.{uuid.uuid4().hex[:8]}"
    broker_url = f"{BROKER}?prefix={prefix}&prefetch={PREFETCH}"
    root = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    config = {
        "systems": {
            "mes": {"connector": "fake"},
            "erp": {
                "connector": "rest",
                "settings": {
                    "url": f"{target}/documents",
                    "timeout_s": 10,
                    **({"batch_url": f"{target}/documents"} if batched else {}),
                },
                "batch_size": BATCH_SIZE,
            },
        },
        "routes": ROUTES,
        "transport": {"batch_size": BATCH_SIZE},
    }
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "CONVEYOR_DB_URL": db_url, "CONVEYOR_BROKER_URL": broker_url}
    repo = str(Path(__file__).resolve().parent.parent)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "conveyor", "simulate", "http-target", "--port", str(port)],
            cwd=repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    engine = make_engine(db_url)
    ledger = Ledger(engine, Router.from_config(ROUTES))
    try:
        _wait_for(f"{target}/_sim/stats")
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "conveyor",
                        "--project",
                        str(root),
                        "run",
                        "--concurrency",
                        str(concurrency),
                    ],
                    env=env,
                    cwd=repo,
                )
            )
        # warm up: topology, connections, first batches
        ledger.accept_batch(_messages("warm", 200))
        _wait_documents(target, 200, 60)

        # throughput: accept n in batches of 1,000 as fast as the ledger takes them
        batches = [_messages(f"t{b}", 1000) for b in range(n // 1000)]
        started = time.time()
        for batch in batches:
            ledger.accept_batch(batch)
        accepted = time.time()
        finished = _wait_documents(target, 200 + n, 600)
        rate = n / (finished - started)

        # latency at a steady 500 msg/s: 5 messages every 10 ms
        per_tick, tick = 5, 5 / STEADY_RATE
        sent_at: dict[str, float] = {}
        ticks = int(steady_s / tick)
        steady = _messages("s", ticks * per_tick)
        begin = time.monotonic()
        for k in range(ticks):
            wait = begin + k * tick - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            chunk = steady[k * per_tick : (k + 1) * per_tick]
            now = time.time()
            ledger.accept_batch(chunk)
            for m in chunk:
                sent_at[f"mes:{m['key']}"] = now
        _wait_documents(target, 200 + n + len(steady), 120)
        records = _get(f"{target}/_sim/records")
        latencies = sorted((records["first_seen"][k] - t) * 1000 for k, t in sent_at.items())
        stats = _get(f"{target}/_sim/stats")
        with engine.connect() as conn:
            stages = conn.execute(
                text(
                    "SELECT extract(epoch FROM o.published_at - m.accepted_at) * 1000,"
                    " extract(epoch FROM d.delivered_at - o.published_at) * 1000"
                    " FROM messages m JOIN deliveries d ON d.message_pk = m.id"
                    " JOIN outbox o ON o.delivery_id = d.id WHERE m.key LIKE 's-%'"
                )
            ).all()
        to_broker = sorted(float(a) for a, _ in stages)
        to_target = sorted(float(b) for _, b in stages)
        return {
            "relay_p50_ms": statistics.median(to_broker),
            "relay_p99_ms": to_broker[int(len(to_broker) * 0.99) - 1],
            "worker_p50_ms": statistics.median(to_target),
            "worker_p99_ms": to_target[int(len(to_target) * 0.99) - 1],
            "rate": rate,
            "accept_s": accepted - started,
            "total_s": finished - started,
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
            "steady_messages": len(latencies),
            "duplicates": stats["duplicates"],
            "documents": stats["documents"],
            "expected": 200 + n + len(steady),
        }
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        engine.dispose()
        from conveyor.transport.rabbitmq import RabbitMQTransport

        RabbitMQTransport(broker_url).delete(["erp"])


def _on_new_database(measure: Any) -> dict[str, Any]:
    """``measure(url)`` on a throwaway PostgreSQL database (exit 1 when it is unreachable)."""
    admin = make_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"conveyor_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL not reachable at {ADMIN_URL}: {exc}", file=sys.stderr)
        sys.exit(1)
    db_url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        Ledger(make_engine(db_url)).upgrade()
        measured: dict[str, Any] = measure(db_url)
        return measured
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    """Measure the anchor and the pipeline on throwaway names and database, print, clean up."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    n = 5_000 if args.quick else 30_000
    steady_s = 5.0 if args.quick else 20.0
    anchor_n = 20_000 if args.quick else 100_000
    try:
        pika.BlockingConnection(pika.URLParameters(BROKER)).close()
    except Exception as exc:
        print(f"RabbitMQ not reachable at {BROKER}: {exc}", file=sys.stderr)
        sys.exit(1)
    anchor = raw_broker_rate(anchor_n)
    measured = _on_new_database(
        lambda url: pipeline(url, n, steady_s, args.workers, args.concurrency, batched=True)
    )
    single = _on_new_database(
        lambda url: pipeline(url, n, steady_s, args.workers, args.concurrency, batched=False)
    )
    ratio = measured["rate"] / anchor
    complete = all(
        m["documents"] == m["expected"] and not m["duplicates"] for m in (measured, single)
    )
    table(
        [
            ["raw pika (async confirms + manual acks, quorum)", f"{anchor:,.0f} msg/s"],
            [
                f"end to end, batched ({BATCH_SIZE} per call)",
                f"{measured['rate']:,.0f} msg/s",
            ],
            ["ratio", f"{ratio:.2f} (target >= {RATIO_TARGET})"],
            [
                "end to end, one document per call",
                f"{single['rate']:,.0f} msg/s (ratio {single['rate'] / anchor:.2f})",
            ],
            [
                "  one per call: latency p50 / p99",
                f"{single['p50_ms']:.1f} / {single['p99_ms']:.1f} ms",
            ],
            [f"accept {n:,} (batches of 1,000)", f"{measured['accept_s']:.2f} s"],
            [f"latency p50 at {STEADY_RATE} msg/s", f"{measured['p50_ms']:.1f} ms"],
            [f"latency p99 at {STEADY_RATE} msg/s", f"{measured['p99_ms']:.1f} ms"],
            [
                "  accepted → published (relay) p50 / p99",
                f"{measured['relay_p50_ms']:.1f} / {measured['relay_p99_ms']:.1f} ms",
            ],
            [
                "  published → recorded delivered p50 / p99",
                f"{measured['worker_p50_ms']:.1f} / {measured['worker_p99_ms']:.1f} ms",
            ],
            ["documents at target / expected", f"{measured['documents']} / {measured['expected']}"],
            ["duplicate posts", str(measured["duplicates"])],
        ],
        ["measure", "value"],
    )
    result(
        "routing",
        "end_to_end_msgs_per_s",
        measured["rate"],
        "msg/s",
        "raw pika async confirms + manual acks",
        anchor,
        target=f">= {RATIO_TARGET} of anchor; p99 < {P99_TARGET_MS:g} ms at {STEADY_RATE} msg/s",
        meets_target=ratio >= RATIO_TARGET and measured["p99_ms"] < P99_TARGET_MS and complete,
        extra={
            "p50_ms": round(measured["p50_ms"], 1),
            "p99_ms": round(measured["p99_ms"], 1),
            "messages": n,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "duplicates": measured["duplicates"],
            "missing": measured["expected"] - measured["documents"],
            "batch_size": BATCH_SIZE,
            "one_per_call_msgs_per_s": round(single["rate"]),
            "one_per_call_ratio": round(single["rate"] / anchor, 3),
            "one_per_call_p99_ms": round(single["p99_ms"], 1),
            "one_per_call_duplicates": single["duplicates"],
        },
    )


if __name__ == "__main__":
    main()
