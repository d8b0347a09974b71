"""Benchmark ``reconcile``: three systems × N stock rows compared by Conveyor's engine, against
``datacompy`` (pandas) comparing just two of those systems, on the same machine in the same run.

The three snapshots are canonical CSV files (``material,location,lot,quantity,uom,description``)
with seeded differences (quantity mismatches, rows missing on each side, quantities written
differently but equal). Each side runs in its own subprocess so its peak RSS is its own:

- Conveyor: read the three files, aggregate, classify every line (``CanonicalCsvSnapshot`` +
  ``compare_snapshots``: the code ``conveyor reconcile`` runs — its one engine: Arrow's CSV
  reader, exact matches found by whole columns, every other line classified with exact
  decimals);
- datacompy: ``pandas.read_csv`` of two files (the compared columns) + ``PandasCompare`` on
  material × location × lot, counting matches, mismatches and rows unique to each side.

Time runs from before the first file is opened to the classified result; imports are not timed.
Both sides' counts are checked against the seeded ones. Writing Conveyor's reports (JSON, CSV,
HTML) is timed separately and reported under ``extra``.

    python bench/reconcile.py            # 1,000,000 rows per system
    python bench/reconcile.py --quick    # 100,000 rows per system
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SYSTEMS = ("erp", "wms", "mes")
COLUMNS = ["material", "location", "lot", "quantity", "uom", "description"]


# ---------------------------------------------------------------------------------- data
def generate(folder: Path, rows: int, seed: int = 20261121) -> dict[str, Any]:
    """Write erp.csv, wms.csv, mes.csv; return the seeded counts."""
    rng = random.Random(seed)
    files = {s: (folder / f"{s}.csv").open("w", encoding="utf-8", newline="") for s in SYSTEMS}
    writers = {s: csv.writer(fh) for s, fh in files.items()}
    for writer in writers.values():
        writer.writerow(COLUMNS)
    expected = {
        "lines": 0,
        "matched": 0,
        "quantity_mismatch": 0,
        "missing": dict.fromkeys(SYSTEMS, 0),
        "pair": {"matched": 0, "mismatched": 0, "only_erp": 0, "only_wms": 0},
    }
    pair = expected["pair"]
    for i in range(rows):
        material = f"M{i // 40:07d}"
        location = f"1000/L{i % 40:02d}"
        lot = f"LOT{(i * 7) % 13}" if i % 3 else ""
        uom = "KG" if (i // 40) % 2 else "PCS"
        description = f"Material {i // 40}"
        whole, fraction = rng.randint(0, 99_999), rng.randint(0, 999)
        quantity = f"{whole}.{fraction:03d}" if uom == "KG" else str(whole)
        q = {s: quantity for s in SYSTEMS}
        present = dict.fromkeys(SYSTEMS, True)
        kind = i % 200
        if kind in (1, 101):
            q["wms"] = f"{whole + 2}.{fraction:03d}" if uom == "KG" else str(whole + 2)
        elif kind in (2, 102):
            q["mes"] = f"{whole + 1}.{fraction:03d}" if uom == "KG" else str(whole + 1)
        elif kind == 3:
            present["wms"] = False
        elif kind == 5:
            present["mes"] = False
        elif kind == 7:
            present["erp"] = False
        elif kind in (9, 109):  # written differently, the same quantity
            q["wms"] = quantity + ("00" if uom == "KG" else ".000")
        if whole == 0 and fraction == 0 and not all(present.values()):
            whole = 1  # keep zero-versus-absent (a match by rule) out of the seeded counts
            q = {s: (v if v != quantity else "1") for s, v in q.items()}
            quantity = "1"
        for system in SYSTEMS:
            if present[system]:
                writers[system].writerow([material, location, lot, q[system], uom, description])
        expected["lines"] += 1
        missing = [s for s in SYSTEMS if not present[s]]
        if missing:
            for s in missing:
                expected["missing"][s] += 1
        elif len({q[s] for s in SYSTEMS}) == 1 or kind in (9, 109):
            expected["matched"] += 1
        else:
            expected["quantity_mismatch"] += 1
        # erp versus wms, as datacompy sees them
        if present["erp"] and present["wms"]:
            if q["erp"] == q["wms"] or kind in (9, 109):
                pair["matched"] += 1
            else:
                pair["mismatched"] += 1
        elif present["erp"]:
            pair["only_erp"] += 1
        elif present["wms"]:
            pair["only_wms"] += 1
    for fh in files.values():
        fh.close()
    return expected


# ---------------------------------------------------------------------------------- sides
def run_conveyor(folder: Path) -> dict[str, Any]:
    """Conveyor's three-way compare (in this process: call it in a subprocess)."""
    # the engine compare_snapshots uses (imports are not timed)
    import conveyor.reconcile.compare  # noqa: F401
    from conveyor.reconcile.reference import NoReference
    from conveyor.reconcile.service import compare_snapshots
    from conveyor.reconcile.sources import CanonicalCsvSnapshot
    from conveyor.reconcile.tolerance import Tolerance

    reference = NoReference()
    start = time.perf_counter()
    snapshots = [CanonicalCsvSnapshot(s, folder / f"{s}.csv", reference=reference) for s in SYSTEMS]
    result, as_of = compare_snapshots(
        snapshots, systems=list(SYSTEMS), tolerance=Tolerance(), reference=reference
    )
    seconds = time.perf_counter() - start
    peak = _peak_mb()
    summary = result.summary.as_dict()

    from datetime import UTC, datetime

    from conveyor.reconcile.reports import report_from_result, write_reports

    start = time.perf_counter()
    report = report_from_result(
        result,
        run_id="bench",
        as_of=as_of,
        inputs=[s.info() for s in snapshots],
        generated_at=datetime.now(UTC),
    )
    write_reports(report, folder / "out", formats=("json", "csv", "html"))
    reports = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "summary": summary,
        "reports_seconds": reports,
        "peak_mb_with_reports": _peak_mb(),
    }


def run_datacompy(folder: Path) -> dict[str, Any]:
    """datacompy comparing erp and wms (in this process: call it in a subprocess)."""
    import datacompy
    import pandas as pd

    dtypes = {"material": str, "location": str, "lot": str, "uom": str}
    usecols = ["material", "location", "lot", "quantity", "uom"]
    start = time.perf_counter()
    erp = pd.read_csv(folder / "erp.csv", usecols=usecols, dtype=dtypes, keep_default_na=False)
    wms = pd.read_csv(folder / "wms.csv", usecols=usecols, dtype=dtypes, keep_default_na=False)
    read = time.perf_counter() - start
    compare = datacompy.PandasCompare(
        erp, wms, join_columns=["material", "location", "lot"], df1_name="erp", df2_name="wms"
    )
    mismatched = len(compare.all_mismatch())
    counts = {
        "matched": int(compare.count_matching_rows()),
        "mismatched": mismatched,
        "only_erp": len(compare.df1_unq_rows),
        "only_wms": len(compare.df2_unq_rows),
    }
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "read_seconds": read, "peak_mb": _peak_mb(), "counts": counts}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(side: str, folder: Path) -> dict[str, Any]:
    """Run one side in a fresh interpreter; its last stdout line is its JSON result."""
    completed = subprocess.run(
        [sys.executable, __file__, "--side", side, "--folder", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"{side} side failed (exit {completed.returncode})")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows per system")
    parser.add_argument("--rows", type=int, help="rows per system (default 1,000,000)")
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    parser.add_argument("--side", choices=["conveyor", "datacompy"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side = run_conveyor if args.side == "conveyor" else run_datacompy
        print(json.dumps(side(args.folder)))
        return
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        expected = generate(folder, rows)
        print(f"generated 3 × {rows:,} rows in {time.perf_counter() - started:.1f} s ({folder})")
        ours = _child("conveyor", folder)
        anchor = _child("datacompy", folder)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    summary = ours["summary"]
    ours_ok = (
        summary["lines"] == expected["lines"]
        and summary["matched"] == expected["matched"]
        and summary["quantity_mismatch"] == expected["quantity_mismatch"]
        and summary["missing"] == expected["missing"]
    )
    anchor_ok = anchor["counts"] == expected["pair"]
    table = [
        ("", "Conveyor, 3 systems", "datacompy, 2 systems"),
        ("rows compared", f"{3 * rows:,}", f"{2 * rows:,}"),
        ("time (s)", f"{ours['seconds']:.2f}", f"{anchor['seconds']:.2f}"),
        ("peak RSS (MB)", f"{ours['peak_mb']:.0f}", f"{anchor['peak_mb']:.0f}"),
        ("counts as seeded", "yes" if ours_ok else "NO", "yes" if anchor_ok else "NO"),
        (
            "lines / matched",
            f"{summary['lines']:,} / {summary['matched']:,}",
            f"{sum(anchor['counts'].values()):,} / {anchor['counts']['matched']:,}",
        ),
        ("reports json+csv+html (s)", f"{ours['reports_seconds']:.2f}", "-"),
    ]
    width = max(len(r[0]) for r in table)
    for label, a, b in table:
        print(f"{label:<{width}}  {a:>22}  {b:>22}")
    time_ok = ours["seconds"] <= anchor["seconds"]
    memory_ok = ours["peak_mb"] <= anchor["peak_mb"]
    print(
        json.dumps(
            {
                "bench": "reconcile",
                "metric": "three_way_seconds",
                "value": round(ours["seconds"], 3),
                "unit": "s",
                "anchor": {
                    "name": "datacompy PandasCompare of 2 of the 3 systems (read_csv included)",
                    "value": round(anchor["seconds"], 3),
                },
                "ratio": round(anchor["seconds"] / ours["seconds"], 3),
                "target": "3-way time <= datacompy 2-way time and peak RSS <= datacompy's",
                "meets_target": bool(time_ok and memory_ok and ours_ok and anchor_ok),
                "extra": {
                    "rows_per_system": rows,
                    "peak_rss_mb": round(ours["peak_mb"], 1),
                    "anchor_peak_rss_mb": round(anchor["peak_mb"], 1),
                    "rss_ratio": round(anchor["peak_mb"] / ours["peak_mb"], 3),
                    "counts_as_seeded": ours_ok,
                    "anchor_counts_as_seeded": anchor_ok,
                    "lines": summary["lines"],
                    "quantity_mismatch": summary["quantity_mismatch"],
                    "missing": summary["missing"],
                    "anchor_read_csv_seconds": round(anchor["read_seconds"], 3),
                    "reports_seconds": round(ours["reports_seconds"], 2),
                    "peak_rss_mb_with_reports": round(ours["peak_mb_with_reports"], 1),
                },
                "machine": {"cpus": os.cpu_count()},
            }
        )
    )


if __name__ == "__main__":
    main()
