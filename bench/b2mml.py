"""Bench ``b2mml``: B2MML performance documents read (streamed), validated against the official
XSD and mapped to canonical messages per second, against lxml parsing and validating the same
documents with the same compiled schema in the same run (``etree.fromstring`` +
``XMLSchema.validate``); and the peak RSS of a child process that reads, validates and maps one
document of 200 MB (generated at run time, never held whole).

Documents: V0600 ``ProcessProductionPerformance`` of plant 1000 (``connectors.b2mml.samples``),
one segment response each as a molding machine reports it: 3 material actuals (2 consumed, 1
produced, with their properties) beside process data, operators and equipment counters — about
6.5 KB. Each actual is mapped by ``mappings/mes_b2mml.yaml`` (two lookups, a unit conversion,
the canonical schema check). The ratio depends on the shape: the less a document carries besides
material actuals, the more the per-actual Python work weighs against lxml's C parse and
validation, so the same measure on lean documents (actuals only) is printed beside.
The process is single-threaded; rates are per second of its CPU time
(what one core does), wall-clock rates beside. The schemas come from ``--xsd-dir`` (default
``../shared/b2mml`` beside the project); without them the bench says so and exits 1.
Targets: >= 0.3 of the anchor; the 200 MB document's peak RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import result, table

REPO = Path(__file__).resolve().parent.parent
SYSTEM = "mes_b2mml"
ACTUALS = 3
RATIO_TARGET = 0.3
RSS_TARGET_MB = 150


@dataclass
class Rate:
    cpu: float
    wall: float


def rate(work: Callable[[bytes], object], corpus: list[bytes], seconds: float) -> Rate:
    """Documents per CPU-second and per wall-second, over whole passes of ``corpus``."""
    done = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while True:
        for body in corpus:
            work(body)
        done += len(corpus)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if wall >= seconds:
            return Rate(done / cpu, done / wall)


def engine() -> object:
    from conveyor.config import Project
    from conveyor.mapping import MappingEngine

    return MappingEngine.load(Project.load(REPO))


def ours(mapping: object, settings: dict[str, str]) -> Callable[[bytes], int]:
    """Read + validate + map one document; the number of messages made."""
    from connectors.b2mml.reader import read

    map_inbound = mapping.map_inbound  # type: ignore[attr-defined]

    def work(body: bytes) -> int:
        made = 0
        for raw in read(io.BytesIO(body), name="bench.xml", settings=settings):
            map_inbound(SYSTEM, raw.message_type, raw.data, file=raw.file, line=raw.line)
            made += 1
        return made

    return work


def child(path: str, xsd_dir: str) -> None:
    """In the child process: read, validate and map the document at ``path``; print a JSON line
    with the messages made and the peak RSS."""
    from connectors.b2mml.reader import read

    mapping = engine()
    made = 0
    with open(path, "rb") as stream:
        settings = {"xsd_dir": xsd_dir, "max_document_bytes": 1 << 40}
        for raw in read(stream, name=path, settings=settings):
            mapping.map_inbound(  # type: ignore[attr-defined]
                SYSTEM, raw.message_type, raw.data, file=raw.file, line=raw.line
            )
            made += 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"messages": made, "peak_rss_mb": round(peak, 1)}))


def big_document(path: Path, megabytes: int) -> int:
    """Write a document of about ``megabytes`` MB to ``path``; returns its size."""
    from connectors.b2mml.samples import chunks, document

    per_actual = len(document(1, 1001, "V0600")) - len(document(1, 1, "V0600"))
    actuals = megabytes * 1_000_000 * 1000 // per_actual
    with path.open("wb") as out:
        for chunk in chunks(1, actuals, "V0600"):
            out.write(chunk)
    return path.stat().st_size


def main() -> None:
    """Measure and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="under a minute (a 40 MB document)")
    parser.add_argument("--xsd-dir", default=str(REPO.parent / "shared" / "b2mml"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.xsd_dir)
        return
    xsd_dir = Path(args.xsd_dir)
    if not (xsd_dir / "V0600").is_dir():
        print(f"the official B2MML schemas are not at {xsd_dir} (--xsd-dir)", file=sys.stderr)
        sys.exit(1)

    from lxml import etree

    from connectors.b2mml.samples import document
    from connectors.b2mml.xml import V0600, safe_parser, schema_for

    seconds = 3.0 if args.quick else 15.0
    settings = {"xsd_dir": str(xsd_dir)}
    schema = schema_for(settings, V0600, "ProductionPerformance")
    assert schema is not None
    parser_ = safe_parser()
    corpus = [document(n, ACTUALS, "V0600", detail=True) for n in range(200)]
    lean = [document(n, ACTUALS, "V0600") for n in range(200)]
    work = ours(engine(), settings)

    def anchor_work(body: bytes) -> bool:
        valid: bool = schema.validate(etree.fromstring(body, parser_))
        return valid

    # the same documents are valid for both, and ours makes one message per actual
    assert all(anchor_work(body) for body in corpus[:20])
    assert work(corpus[0]) == ACTUALS
    gc.collect()
    gc.freeze()
    anchor = rate(anchor_work, corpus, seconds / 2)
    value = rate(work, corpus, seconds)
    ratio = value.cpu / anchor.cpu
    lean_anchor = rate(anchor_work, lean, seconds / 4)
    lean_value = rate(work, lean, seconds / 2)

    megabytes = 40 if args.quick else 200
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-b2mml-") as tmp:
        path = Path(tmp) / "big.xml"
        size = big_document(path, megabytes)
        started = time.perf_counter()
        run = subprocess.run(
            [sys.executable, __file__, "--child", str(path), "--xsd-dir", str(xsd_dir)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        big_s = time.perf_counter() - started
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        sys.exit(1)
    big = json.loads(run.stdout.strip().splitlines()[-1])
    table(
        [
            ("lxml parse + XSD validate (anchor)", f"{anchor.cpu:,.0f}", f"{anchor.wall:,.0f}"),
            ("b2mml read + validate + map", f"{value.cpu:,.0f}", f"{value.wall:,.0f}"),
            ("ratio", f"{ratio:.2f}", f"{value.wall / anchor.wall:.2f}"),
            ("lean documents (actuals only): anchor", f"{lean_anchor.cpu:,.0f}", ""),
            ("lean documents: b2mml", f"{lean_value.cpu:,.0f}", ""),
            ("lean ratio", f"{lean_value.cpu / lean_anchor.cpu:.2f}", ""),
        ],
        ["implementation", "documents/CPU-s", "documents/wall-s"],
    )
    print()
    table(
        [
            (
                f"{size / 1e6:,.0f} MB document",
                f"{big['messages']:,}",
                f"{big_s:,.1f}",
                f"{big['peak_rss_mb']:,.1f}",
            )
        ],
        ["streamed in a child process", "messages", "seconds", "peak RSS MB"],
    )
    rss_ok = big["peak_rss_mb"] < RSS_TARGET_MB
    result(
        "b2mml",
        "documents_per_cpu_s",
        value.cpu,
        "documents/s",
        "lxml parse + validation with the same compiled schema",
        anchor.cpu,
        target=f">= {RATIO_TARGET} of anchor; {megabytes} MB document RSS < {RSS_TARGET_MB} MB",
        meets_target=ratio >= RATIO_TARGET and rss_ok,
        extra={
            "clock": "process CPU time (single thread: one core); wall-clock figures beside",
            "wall_documents_per_s": round(value.wall, 1),
            "wall_anchor_documents_per_s": round(anchor.wall, 1),
            "actuals_per_document": ACTUALS,
            "document_bytes": len(corpus[0]),
            "lean_document_bytes": len(lean[0]),
            "lean_ratio": round(lean_value.cpu / lean_anchor.cpu, 3),
            "messages_per_cpu_s": round(value.cpu * ACTUALS),
            "big_document_mb": round(size / 1e6, 1),
            "big_document_messages": big["messages"],
            "big_document_s": round(big_s, 1),
            "peak_rss_mb": big["peak_rss_mb"],
            "rss_target_met": rss_ok,
            "load_1m": round(os.getloadavg()[0], 2),
        },
    )


if __name__ == "__main__":
    main()
