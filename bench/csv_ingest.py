"""Bench ``csv_ingest``: a 1,000,000-row GBK CSV with Chinese headers dropped into a WMS's inbox
and taken in by ``conveyor watch --once`` into PostgreSQL — claimed, read as a stream, mapped
(two crosswalk lookups and a unit conversion per row), accepted in batches of 1,000 with the
file's cursor, archived. Measured: rows/s of the whole run of the ingesting process and its peak
RSS (target: >= 0.8 of the anchor, < 300 MB). Anchor, same run: ``Ledger.accept_batch`` of the
same canonical messages (mapped beforehand, untimed) in batches of 1,000 into a second fresh
database. Both databases are throwaway ones, created and dropped here.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from bench.common import result, table, throwaway_database

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.8
TARGET_RSS_MB = 300
BATCH = 1_000

MAPPING = """\
system: wms
description: WMS of warehouse WH1 — move confirmations as GBK CSV files (Chinese headers)
timezone: Asia/Shanghai
messages:
  stock_transfer:
    in:
      key: {column: 任务号}
      occurred_at: {column: 完成时间, parse: {date: "%Y-%m-%d %H:%M:%S"}}
      fields:
        material: {column: 物料编码, lookup: {table: materials, from: wms_sku, to: material}}
        from_location:
          {column: 源库位, lookup: {table: locations, from: wms_location, to: location}}
        to_location:
          {column: 目标库位, lookup: {table: locations, from: wms_location, to: location}}
        lot: {column: 批次, default: ""}
        quantity: {column: 数量, parse: decimal}
        uom: {column: 单位}
        order_id: {column: 工单号, default: ""}
      convert_to_base: true
"""
HEADER = ["任务号", "工单号", "物料编码", "源库位", "目标库位", "批次", "数量", "单位", "完成时间"]
SKUS = ["SKU-1001", "SKU-1002", "SKU-1003", "SKU-1004"]
MOVES = [("WH1-RM", "WH1-L1"), ("WH1-RM", "WH1-L2"), ("WH1-PK", "WH1-L2")]


def rows(n: int) -> Iterator[list[str]]:
    """``n`` move confirmations (grams of granulate, converted to the base unit kg)."""
    for i in range(n):
        source, target = MOVES[i % len(MOVES)]
        yield [
            f"MV{i:08d}",
            f"1000{i % 97:02d}",
            SKUS[i % len(SKUS)],
            source,
            target,
            f"L2611-{i % 13:02d}",
            f"{(i % 500) + 1}.5",
            "克",
            f"2026-11-21 {8 + i % 10:02d}:{i % 60:02d}:{(i // 60) % 60:02d}",
        ]


def project(folder: Path) -> Path:
    """A project with the WMS as a file drop and the shipped master data."""
    root = folder / "plant"
    (root / "mappings").mkdir(parents=True)
    (root / "mappings" / "wms.yaml").write_text(MAPPING, encoding="utf-8")
    shutil.copytree(REPO / "master_data", root / "master_data")
    config = {
        "systems": {
            "wms": {
                "connector": "files",
                "settings": {
                    "root": str(folder / "exchange"),
                    "patterns": {"moves_*.csv": "stock_transfer"},
                    "stable_seconds": 0,
                    "events": False,
                },
            },
            "sap": {"connector": "fake"},
        },
        "routes": [{"type": "stock_transfer", "source": "wms", "targets": ["sap"]}],
    }
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    return root


def write_file(path: Path, n: int) -> None:
    """The export, in GBK as the WMS writes it."""
    with open(path, "w", encoding="gbk", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows(n))


def ingest(root: Path, url: str) -> tuple[float, float, dict[str, int]]:
    """Run the watcher once in its own process: seconds, its peak RSS in MB, its counts."""
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_PROJECT"}
    env.update(CONVEYOR_DB_URL=url, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "conveyor", "--project", str(root), "watch", "--once", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        print(process.stderr[-3000:], file=sys.stderr)
        sys.exit(f"conveyor watch --once failed with exit code {process.returncode}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    (unit,) = json.loads(process.stdout)["passes"]
    return elapsed, rss, unit


def anchor(root: Path, url: str, path: Path, n: int) -> float:
    """``accept_batch`` of the same canonical messages (mapped untimed), batches of 1,000."""
    from conveyor.config import Project
    from conveyor.ledger import Ledger
    from conveyor.ledger.db import make_engine
    from conveyor.mapping import MappingEngine
    from conveyor.mapping.readers import read_csv

    project_ = Project.load(root)
    engine = make_engine(url)
    ledger = Ledger(engine, project_.router)
    ledger.upgrade()
    mapping = MappingEngine.load(project_)
    timed, accepted, batch = 0.0, 0, []
    for raw in read_csv(path):
        batch.append(mapping.map_inbound("wms", "stock_transfer", raw.data))
        if len(batch) == BATCH:
            start = time.perf_counter()
            accepted += sum(r.status == "accepted" for r in ledger.accept_batch(batch))
            timed += time.perf_counter() - start
            batch = []
    if batch:
        start = time.perf_counter()
        accepted += sum(r.status == "accepted" for r in ledger.accept_batch(batch))
        timed += time.perf_counter() - start
    engine.dispose()
    if accepted != n:
        sys.exit(f"anchor accepted {accepted} of {n}")
    return n / timed


def main() -> None:
    """Write the file, ingest it, measure the anchor, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50,000 rows instead of 1,000,000")
    parser.add_argument("--rows", type=int, help="another number of rows")
    args = parser.parse_args()
    n = args.rows or (50_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="conveyor-csv-ingest-") as tmp:
        folder = Path(tmp)
        root = project(folder)
        inbox = folder / "exchange" / "inbox"
        inbox.mkdir(parents=True)
        source = folder / "moves_export.csv"
        write_file(source, n)
        size_mb = source.stat().st_size / 1e6
        shutil.copy(source, folder / "exchange" / "moves_20261121.csv")
        os.rename(folder / "exchange" / "moves_20261121.csv", inbox / "moves_20261121.csv")

        with throwaway_database() as url:
            from conveyor.ledger import Ledger
            from conveyor.ledger.db import make_engine

            engine = make_engine(url)
            Ledger(engine).upgrade()
            engine.dispose()
            elapsed, rss, unit = ingest(root, url)
        if unit.get("accepted") != n:
            sys.exit(f"ingest accepted {unit.get('accepted')} of {n}: {unit}")
        archived = (folder / "exchange" / "archive" / "moves_20261121.csv.result.json").is_file()
        with throwaway_database() as url:
            anchor_rate = anchor(root, url, source, n)

    value = n / elapsed
    ratio = value / anchor_rate
    table(
        [
            (
                "conveyor watch --once (whole process)",
                f"{value:,.0f}",
                f"{elapsed:.1f}",
                round(rss),
            ),
            (
                "anchor: Ledger.accept_batch, 1,000",
                f"{anchor_rate:,.0f}",
                f"{n / anchor_rate:.1f}",
                "-",
            ),
        ],
        ["run", "rows/s", "seconds", "peak RSS MB"],
    )
    print(f"{n:,} rows, {size_mb:.1f} MB GBK; ratio {ratio:.2f}; archived with result: {archived}")
    result(
        "csv_ingest",
        "rows_per_s",
        value,
        "rows/s",
        "Ledger.accept_batch of the same canonical messages, batches of 1,000",
        anchor_rate,
        target=f">= {TARGET_RATIO} of anchor; peak RSS < {TARGET_RSS_MB} MB",
        meets_target=ratio >= TARGET_RATIO and rss < TARGET_RSS_MB and archived,
        extra={
            "rows": n,
            "file_mb": round(size_mb, 1),
            "peak_rss_mb": round(rss, 1),
            "seconds": round(elapsed, 2),
            "load": [round(x, 2) for x in os.getloadavg()],
        },
    )


if __name__ == "__main__":
    main()
