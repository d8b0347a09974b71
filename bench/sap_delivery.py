"""Bench ``sap_delivery``: goods movements posted per second to the SAP simulator (50 ms latency
on every call; each posting is ``BAPI_GOODSMVT_CREATE`` + ``BAPI_TRANSACTION_COMMIT``) by 8
concurrent sessions, against one session posting in sequence in the same run (target: >= 6x).

Also printed: the client's CPU per SOAP call (zeep + requests, this process only: the simulator
runs in its own process, ``conveyor simulate sap``) and the WSDL load time cold (fetched and
parsed), from zeep's disk cache (parsed, not fetched) and from the process cache. Every posting
is checked committed in the simulator afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import result, table
from connectors.sap import SapConnector
from connectors.soap import forget_wsdls
from conveyor.config import Project
from conveyor.mapping import MappingEngine
from conveyor.messages import new_message

REPO = Path(__file__).resolve().parent.parent
SESSIONS = 8
LATENCY_MS = 50
TARGET = 6.0
WSDL = "/sap/bc/srt/wsdl/zconveyor"


def documents(n: int, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """``n`` goods issues mapped by ``mappings/sap.yaml``, with their hub keys."""
    engine = MappingEngine.load(Project.load(REPO))
    out = []
    for i in range(n):
        message = new_message(
            "material_consumption",
            "mes",
            f"{prefix}-{i}/1",
            {"order_id": "1000123", "material": "RM-1001", "location": "1000/RM", "lot": "",
             "quantity": "1.5", "uom": "KG"},
        )  # fmt: skip
        out.append((f"mes:{prefix}-{i}/1", engine.map_outbound("sap", dict(message))))
    return out


def connector(url: str, cache: str) -> SapConnector:
    return SapConnector("sap", {"wsdl": url + WSDL, "wsdl_cache": cache, "timeout_s": 10})


def post_all(url: str, cache: str, items: list[tuple[str, dict[str, Any]]], sessions: int) -> float:
    """Post ``items`` with ``sessions`` threads (one connector each, as the worker does);
    returns the elapsed seconds."""
    chunks = [items[i::sessions] for i in range(sessions)]
    errors: list[BaseException] = []

    def run(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        sap = connector(url, cache)
        try:
            for key, document in chunk:
                sap.send(document, message_type="material_consumption", key=key)
        except BaseException as exc:
            errors.append(exc)
        finally:
            sap.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "simulate", "sap", "--latency-ms", str(LATENCY_MS)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise SystemExit(f"the SAP simulator did not start: {url!r}")
    return process, url


def wsdl_loads(url: str, tmp: str) -> dict[str, float]:
    """Milliseconds to a usable client: cold, from the disk cache, from the process cache."""
    cache = str(Path(tmp) / "cold.db")
    times = {}
    for label in ("cold", "disk_cache", "process_cache"):
        if label != "process_cache":
            forget_wsdls()
        started = time.perf_counter()
        sap = connector(url, cache)
        sap.operation_name("BAPI_GOODSMVT_CREATE")
        times[label] = (time.perf_counter() - started) * 1000
        sap.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sequential_n, concurrent_n = (16, 96) if args.quick else (50, 400)
    process, url = start_simulator()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            loads = wsdl_loads(url, tmp)
            cache = str(Path(tmp) / "cold.db")
            warm = documents(2, "WARM")
            post_all(url, cache, warm, 1)
            sequential = documents(sequential_n, "SEQ")
            cpu0 = time.process_time()
            seq_s = post_all(url, cache, sequential, 1)
            cpu_per_call_ms = (time.process_time() - cpu0) / (2 * sequential_n) * 1000
            concurrent = documents(concurrent_n, "PAR")
            par_s = post_all(url, cache, concurrent, SESSIONS)
        with urllib.request.urlopen(url + "/_sim/documents", timeout=10) as answer:  # noqa: S310
            state = json.loads(answer.read())
    finally:
        process.terminate()
        process.wait(10)
    total = 2 + sequential_n + concurrent_n
    committed = len(state["committed"])
    seq_rate = sequential_n / seq_s
    par_rate = concurrent_n / par_s
    table(
        [
            ("1 session in sequence (anchor)", sequential_n, f"{seq_rate:,.1f}"),
            (f"{SESSIONS} concurrent sessions", concurrent_n, f"{par_rate:,.1f}"),
        ],
        ["postings (create + commit), 50 ms latency per call", "postings", "postings/s"],
    )
    print(f"client CPU per SOAP call (zeep + requests): {cpu_per_call_ms:.2f} ms")
    print(
        "WSDL load: cold {cold:.1f} ms, from zeep's disk cache {disk_cache:.1f} ms, "
        "from the process cache {process_cache:.2f} ms".format(**loads)
    )
    print(
        f"committed in the simulator: {committed} of {total}, uncommitted: {state['uncommitted']}"
    )
    ratio = par_rate / seq_rate
    result(
        "sap_delivery",
        "postings_per_s",
        par_rate,
        "postings/s",
        "one session posting in sequence",
        seq_rate,
        target=f">= {TARGET:g}x the sequential rate",
        meets_target=ratio >= TARGET and committed == total and state["uncommitted"] == 0,
        extra={
            "sessions": SESSIONS,
            "latency_ms": LATENCY_MS,
            "client_cpu_ms_per_call": round(cpu_per_call_ms, 3),
            "wsdl_load_ms": {k: round(v, 2) for k, v in loads.items()},
            "committed": committed,
            "posted": total,
            "uncommitted": state["uncommitted"],
        },
    )


if __name__ == "__main__":
    main()
