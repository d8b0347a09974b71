"""The one compare engine reads a canonical CSV by whole columns to the same result as the file's
rows fed to it in chunks by its source's row reader, to the last decimal and line order: every
scenario here is compared both ways (``compare_snapshots`` with reading by columns refused, and
as it chooses), on canonical CSV files written for the test."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conveyor.config import Project
from conveyor.errors import UnreadableFileError
from conveyor.ledger import Ledger
from conveyor.reconcile import compare, service
from conveyor.reconcile.compare import Comparison, read_canonical_csv
from conveyor.reconcile.lines import Line, Result, Transit, join_key
from conveyor.reconcile.reference import Reference
from conveyor.reconcile.runs import RunStore
from conveyor.reconcile.service import RunOptions, RunOutcome, run_reconciliation
from conveyor.reconcile.sources import CanonicalCsvSnapshot, Chunk
from conveyor.reconcile.tolerance import Tolerance

from .masterdata import Costs as _Costs
from .masterdata import Material
from .scenario import DATA

HEADER = ["material", "location", "lot", "quantity", "uom", "description"]
Row = tuple[str, ...]


class Costs(_Costs):
    """Master data only, and grams convert to kilograms."""

    divisors: ClassVar[dict[tuple[str, str], int]] = {("G", "KG"): 1000}


def write(path: Path, rows: list[Row], header: list[str] | None = None, **kw: Any) -> Path:
    """A CSV file of ``rows`` under ``header`` (canonical by default)."""
    with path.open("w", encoding=kw.pop("encoding", "utf-8"), newline="") as fh:
        writer = csv.writer(fh, lineterminator=kw.pop("lineterminator", "\n"))
        writer.writerow(header or HEADER)
        writer.writerows(rows)
    return path


def files(tmp_path: Path, data: dict[str, list[Row]]) -> dict[str, Path]:
    """One canonical CSV per system."""
    return {s: write(tmp_path / f"{s}.csv", rows) for s, rows in data.items()}


def run(
    paths: dict[str, Path],
    *,
    engine: str,
    reference: Any = None,
    tolerance: Tolerance | None = None,
    tracks_lots: dict[str, bool] | None = None,
    transit: Callable[[datetime, dict[str, datetime]], Transit] | None = None,
) -> tuple[Result, list[CanonicalCsvSnapshot]]:
    """``compare_snapshots`` of the files, every row through its source's row reader
    (``rows``) or by columns where the file allows it (``auto``)."""
    snapshots = [
        CanonicalCsvSnapshot(
            system, path, reference=reference, tracks_lots=(tracks_lots or {}).get(system)
        )
        for system, path in paths.items()
    ]
    original = Comparison.add_file
    if engine == "rows":
        Comparison.add_file = _by_rows  # type: ignore[method-assign]
    try:
        result, _ = service.compare_snapshots(
            snapshots,
            systems=list(paths),
            tolerance=tolerance or Tolerance(),
            reference=reference,
            transit=transit,
        )
    finally:
        Comparison.add_file = original  # type: ignore[method-assign]
    return result, snapshots


def _by_rows(self: Comparison, snapshot: CanonicalCsvSnapshot, *args: Any) -> bool:
    """``Comparison.add_file`` refusing every file: its rows come through the row reader."""
    return False


def line_facts(result: Result) -> list[dict[str, Any]]:
    """Every difference with every field, decimals with their exponent (``repr``)."""
    return [{k: repr(v) for k, v in fields_of(line).items()} for line in result.exceptions]


def fields_of(line: Line) -> dict[str, Any]:
    """Every field of a line."""
    return {f.name: getattr(line, f.name) for f in dataclasses.fields(line)}


def same_both_ways(paths: dict[str, Path], **kwargs: Any) -> Result:
    """Read both ways; assert they agree on everything a report or a stored run shows."""
    rows, rows_snapshots = run(paths, engine="rows", **kwargs)
    cols, cols_snapshots = run(paths, engine="auto", **kwargs)
    assert cols.summary.as_dict() == rows.summary.as_dict()
    assert [s.as_dict() for s in cols.by_location] == [s.as_dict() for s in rows.by_location]
    assert line_facts(cols) == line_facts(rows)
    exact_rows = [(*r[:5], repr(r.quantity), r.costed) for r in rows.exact_rows()]
    exact_cols = [(*r[:5], repr(r.quantity), r.costed) for r in cols.exact_rows()]
    assert exact_cols == exact_rows
    assert sorted(cols.exact_keys) == sorted(rows.exact_keys)
    assert [u.as_dict() for u in cols.unmapped] == [u.as_dict() for u in rows.unmapped]
    for a, b in zip(rows_snapshots, cols_snapshots, strict=True):
        assert {**b.info(), "as_of": None} == {**a.info(), "as_of": None}
    assert cols.lot_level == rows.lot_level
    return cols


@pytest.fixture
def fast_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the engine read by columns (not through the row reader)."""
    taken: list[str] = []
    original = Comparison.add_file

    def spy(self: Comparison, snapshot: CanonicalCsvSnapshot, *args: Any) -> bool:
        took = original(self, snapshot, *args)
        if took:
            taken.append(snapshot.system)
        return took

    monkeypatch.setattr(Comparison, "add_file", spy)
    return taken


# ------------------------------------------------------------------------------ scenarios
def test_matches_differences_and_missing_rows(tmp_path: Path, fast_reads: list[str]) -> None:
    result = same_both_ways(
        files(
            tmp_path,
            {
                "erp": [
                    ("M1", "L1", "A", "10", "KG", "Steel"),
                    ("M2", "L1", "", "5.5", "KG", ""),
                    ("M3", "L1", "", "7", "KG", ""),
                    ("M5", "L2", "B", "1.000", "KG", ""),
                    ("M6", "L2", "", "0", "KG", ""),
                    ("M7", "L2", "", "-3.25", "KG", ""),
                    ("M8", "L3", "", "-0", "KG", ""),
                ],
                "wms": [
                    ("M1", "L1", "A", "10", "KG", ""),
                    ("M2", "L1", "", "6", "KG", ""),
                    ("M4", "L1", "", "3", "KG", "Copper"),
                    ("M5", "L2", "B", "1", "KG", ""),
                    ("M7", "L2", "", "-3.25", "KG", ""),
                    ("M8", "L3", "", "0", "KG", ""),
                ],
                "mes": [
                    ("M1", "L1", "A", "10", "KG", "Steel bar"),
                    ("M2", "L1", "", "5.5", "KG", ""),
                    ("M3", "L1", "", "7", "KG", ""),
                    ("M5", "L2", "B", "1.0", "KG", ""),
                    ("M6", "L2", "", "0.00", "KG", ""),
                    ("M7", "L2", "", "-3.250", "KG", ""),
                    ("M8", "L3", "", "0", "KG", ""),
                ],
            },
        )
    )
    assert fast_reads == ["erp", "wms", "mes"]
    status = {line.material: line.status for line in result.lines()}
    assert status["M2"] == "quantity_mismatch"
    assert status["M4"] == "missing_in:erp,mes"
    assert status["M6"] == "match"  # zero where another system has no row
    assert result.exact_keys == [join_key("M1", "L1", "A")]  # the same text in every system
    assert result.summary.exact == 5  # and M5, M6, M7, M8: equal, written differently
    assert {line.description for line in result.lines() if line.material == "M1"} == {"Steel"}


def test_several_rows_of_a_key_are_summed_exactly(tmp_path: Path, fast_reads: list[str]) -> None:
    result = same_both_ways(
        files(
            tmp_path,
            {
                "erp": [
                    ("M1", "L1", "", "0.1", "KG", ""),
                    ("M1", "L1", "", "0.2", "KG", ""),
                    ("M2", "L1", "", "1", "KG", ""),
                    ("M3", "L1", "", "2", "KG", ""),
                    ("M3", "L1", "", "3", "KG", ""),
                ],
                "wms": [
                    ("M1", "L1", "", "0.30", "KG", ""),
                    ("M2", "L1", "", "0.5", "KG", ""),
                    ("M2", "L1", "", "0.5", "KG", ""),
                    ("M3", "L1", "", "4", "KG", ""),
                    ("M3", "L1", "", "1.0", "KG", ""),
                ],
            },
        )
    )
    assert fast_reads == ["erp", "wms"]
    assert result.summary.aggregated_rows == {"erp": 2, "wms": 2}
    assert result.exact_keys == [join_key("M3", "L1")]  # 5 = 5.0, both summed
    assert result.summary.exact == 3  # and M1 (0.1 + 0.2 = 0.30), M2 (1 = 0.5 + 0.5)
    (m1,) = [line for line in result.lines() if line.material == "M1"]
    assert m1.quantities == {"erp": Decimal("0.3"), "wms": Decimal("0.3")}


def test_lotless_system_joins_at_material_and_location(tmp_path: Path) -> None:
    paths = files(
        tmp_path,
        {
            "erp": [("M1", "L1", "", "12", "KG", ""), ("M2", "L1", "", "4", "KG", "")],
            "wms": [
                ("M1", "L1", "A", "5", "KG", ""),
                ("M1", "L1", "B", "7", "KG", ""),
                ("M2", "L1", "A", "4", "KG", ""),
                ("M3", "L1", "A", "1", "KG", ""),
                ("M3", "L1", "A", "1", "KG", ""),
            ],
        },
    )
    result = same_both_ways(paths)
    assert not result.lot_level
    assert result.summary.aggregated_rows == {"erp": 0, "wms": 1}
    declared = same_both_ways(paths, tracks_lots={"erp": False})
    assert declared.summary.aggregated_rows == {"erp": 0, "wms": 2}


def test_lotless_file_without_a_lot_column(tmp_path: Path, fast_reads: list[str]) -> None:
    header = ["Material", "UOM", "Quantity", "Location"]
    erp = write(tmp_path / "erp.csv", [("M1", "KG", "3", "L1"), ("M2", "KG", "1", "L1")], header)
    wms = write(
        tmp_path / "wms.csv", [("M1", "L1", "A", "3", "KG", "x"), ("M2", "L1", "A", "2", "KG", "")]
    )
    same_both_ways({"erp": erp, "wms": wms})
    assert fast_reads == ["erp", "wms"]


def test_files_with_rows_to_reject_go_through_the_row_reader(
    tmp_path: Path, fast_reads: list[str]
) -> None:
    good = [("M1", "L1", "", "1", "KG", ""), ("M2", "L1", "", "2.5", "KG", "")]
    paths = {
        "erp": write(tmp_path / "erp.csv", good),
        "wms": write(
            tmp_path / "wms.csv",
            [*good, ("M3", "L1", "", "1,234.5", "KG", ""), ("M4", "L1", "", "abc", "KG", "")],
        ),
        "mes": write(tmp_path / "mes.csv", [*good, ("", "L1", "", "1", "KG", "")]),
        "hub": write(tmp_path / "hub.csv", [*good, ("M5", "L1", "", "1")]),
        "mrp": write(tmp_path / "mrp.csv", [*good, ("M6", "L" * 101, "", "1", "KG", "")]),
    }
    result = same_both_ways(paths)
    assert fast_reads == ["erp"]
    assert result.summary.unmapped == 4  # abc, empty material, short row, long location
    # a chunk that had a bad row holds Decimals, the fast file text: equal, not the same token
    assert result.exact_keys == []
    assert result.summary.matched == result.summary.exact == 2


def test_units_the_run_does_not_know_are_listed(tmp_path: Path, fast_reads: list[str]) -> None:
    paths = files(
        tmp_path,
        {
            "erp": [("M1", "L1", "", "1", "KG", ""), ("M2", "L1", "", "2", "PCS", "")],
            "wms": [("M1", "L1", "", "1000", "G", ""), ("M2", "L1", "", "2", "PCS", "")],
            "mes": [("M1", "L1", "", "1", "KG", ""), ("M2", "L1", "", "2", "PCS", "")],
        },
    )
    result = same_both_ways(paths)
    assert fast_reads == ["erp", "mes"]  # the WMS file went through the row reader
    assert [u.stage for u in result.unmapped] == ["uom"]
    converted = same_both_ways(paths, reference=Costs(Material("M1", "KG")))
    assert converted.summary.unmapped == 0


def test_a_file_with_two_units_for_one_material(tmp_path: Path, fast_reads: list[str]) -> None:
    paths = files(
        tmp_path,
        {
            "erp": [("M1", "L1", "", "1", "KG", ""), ("M1", "L2", "", "2", "KG", "")],
            "wms": [("M1", "L1", "", "1", "KG", ""), ("M1", "L2", "", "2", "G", "")],
        },
    )
    result = same_both_ways(paths)
    assert fast_reads == ["erp"]
    assert result.summary.unmapped == 1


def test_tolerance_value_and_in_transit(tmp_path: Path) -> None:
    reference = Costs(
        Material("M1", "KG", unit_cost=Decimal("2.5"), group="RAW"),
        Material("M2", "KG", description="From master data", unit_cost=Decimal("10")),
        Material("M3", "KG"),
    )
    tolerance = Tolerance.from_dict({"absolute": "0.5", "groups": {"RAW": {"relative": "10%"}}})

    def transit(as_of: datetime, times: dict[str, datetime]) -> Transit:
        moving = Transit()
        moving.add(join_key("M3", "L1"), "wms", Decimal("3"), "order-7")
        return moving

    result = same_both_ways(
        files(
            tmp_path,
            {
                "erp": [
                    ("M1", "L1", "", "100", "KG", ""),
                    ("M2", "L1", "", "10", "KG", ""),
                    ("M3", "L1", "", "5", "KG", ""),
                ],
                "wms": [
                    ("M1", "L1", "", "95", "KG", ""),
                    ("M2", "L1", "", "10.4", "KG", ""),
                    ("M3", "L1", "", "2", "KG", ""),
                ],
            },
        ),
        reference=reference,
        tolerance=tolerance,
        transit=transit,
    )
    assert result.summary.within_tolerance == 2
    assert result.summary.explained_in_transit == 1
    assert result.summary.variance_value == Decimal("16.5")


def test_csv_dialect_details(tmp_path: Path, fast_reads: list[str]) -> None:
    header = ["Description", "LOT", "uom", "Quantity", "Location", "Material", "Extra"]
    rows = [
        ("Steel, cold rolled", "A", "KG", "1.5", "L1", "M1", "x"),
        ('Said "hi"', "", "KG", "2", "L1", "M2", ""),
        ("Line\nbreak", "", "KG", "3", "L1", "M3", ""),
        ("", "", "KG", "4", "L1", "=M4", ""),
        ("中文", "批次", "千克", "5", "仓库", "物料", ""),
        ("", "", "KG", "6", "L1", "M\t2", ""),  # sorts before "M" in the key string
        ("", "", "KG", "7", "L1", "M", ""),
        ("", "", "KG", "8", "L1\t", "M", ""),
    ]
    erp = write(tmp_path / "erp.csv", rows, header, encoding="utf-8-sig", lineterminator="\r\n")
    wms = write(tmp_path / "wms.csv", [(r[5], r[4], r[1], r[3], r[2], "") for r in rows])
    same_both_ways({"erp": erp, "wms": wms})
    assert fast_reads == ["erp", "wms"]


def test_a_header_only_file_and_a_blank_line(tmp_path: Path) -> None:
    erp = write(tmp_path / "erp.csv", [])
    wms = tmp_path / "wms.csv"
    wms.write_text("material,location,lot,quantity,uom\nM1,L1,,1,KG\n\nM2,L1,,2,KG\n")
    same_both_ways({"erp": erp, "wms": wms})


def test_random_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare, "BATCH", 100)  # exact matches come sorted in many batches
    rng = random.Random(7)
    systems = ["erp", "wms", "mes", "hub"]
    data: dict[str, list[Row]] = {s: [] for s in systems}
    for i in range(3000):
        material, location = f"M{i % 97}", f"L{i % 7}"
        lot = rng.choice(["", "A", "B", "C"])
        value = Decimal(rng.randint(-50, 5000)) / rng.choice([1, 10, 1000])
        for system in systems:
            if rng.random() < 0.06:
                continue
            quantity = value
            if rng.random() < 0.05:
                quantity += rng.choice([1, Decimal("0.001"), -2])
            text = str(quantity)
            if rng.random() < 0.05:
                text += ".0" if "." not in text else "0"
            data[system].append((material, location, lot, text, "KG", f"D{i % 97}"))
            if rng.random() < 0.02:  # a second row of the same key
                data[system].append((material, location, lot, "1", "KG", ""))
    for rows in data.values():
        rng.shuffle(rows)
    paths = files(tmp_path, data)
    result = same_both_ways(paths)
    assert result.summary.lines > 1000
    assert 0 < len(result.exceptions) < result.summary.lines
    same_both_ways(paths, tracks_lots={"hub": False})


def random_run(tmp_path: Path, seed: int) -> None:
    """A random run: 2 to 4 systems, missing and extra rows, quantities written differently,
    rows the row reader must explain, units to convert or refuse, master data, tolerances, a
    lot-less system, movements in transit — compared both ways."""
    rng = random.Random(seed)
    systems = [f"s{i}" for i in range(rng.choice([2, 3, 4]))]
    materials = rng.choice([3, 10, 40])
    data: dict[str, list[Row]] = {s: [] for s in systems}
    odd = rng.choice([*systems, None, None, None])
    for _ in range(rng.choice([20, 200, 800])):
        material = f"M{rng.randrange(materials)}"
        location, lot = rng.choice(["L1", "L2", "L\t3", "Z"]), rng.choice(["", "", "A", "B"])
        base = Decimal(rng.randint(-20, 200)) / rng.choice([1, 10, 100, 1000])
        uom = "KG" if int(material[1:]) % 3 else "PCS"
        for system in systems:
            if rng.random() < 0.15:
                continue
            quantity = base + (rng.choice([Decimal("0.001"), 1, -1]) if rng.random() < 0.1 else 0)
            text = str(quantity)
            if rng.random() < 0.1:
                text += "0" if "." in text else ".00"
            unit = uom
            if system == odd and rng.random() < 0.04:
                unit = rng.choice(["G", uom])
                text = rng.choice(["1,000", "abc", " 1", "1e2", "", text])
            description = rng.choice(["", "", f"D{material}", f"E{material}"])
            data[system].append((material, location, lot, text, unit, description))
            if rng.random() < 0.05:
                data[system].append((material, location, lot, str(rng.randint(0, 9)), unit, ""))
    for rows in data.values():
        rng.shuffle(rows)
    kwargs: dict[str, Any] = {}
    if rng.random() < 0.5:
        kwargs["reference"] = Costs(
            *(
                Material(
                    f"M{i}",
                    "KG" if i % 3 else "PCS",
                    unit_cost=Decimal(rng.randint(1, 50)) / 10 if rng.random() < 0.7 else None,
                    group=rng.choice([None, "RAW"]),
                )
                for i in range(materials)
            )
        )
    if rng.random() < 0.5:
        kwargs["tolerance"] = Tolerance.from_dict(
            {"absolute": rng.choice(["0", "0.5", "1"]), "groups": {"RAW": {"relative": "5%"}}}
        )
    if rng.random() < 0.3:
        kwargs["tracks_lots"] = {systems[-1]: False}
    if rng.random() < 0.4:

        def transit(as_of: datetime, times: dict[str, datetime]) -> Transit:
            moving, pick = Transit(), random.Random(seed)
            for _ in range(10):
                key = join_key(f"M{pick.randrange(materials)}", pick.choice(["L1", "L2"]))
                moving.add(key, pick.choice(systems), Decimal(pick.randint(-3, 3)), "ref")
            return moving

        kwargs["transit"] = transit
    paths = {s: write(tmp_path / f"{s}.csv", rows) for s, rows in data.items()}
    same_both_ways(paths, **kwargs)


@pytest.mark.parametrize("seed", range(6))
def test_random_runs(tmp_path: Path, seed: int) -> None:
    random_run(tmp_path, seed)


@pytest.mark.slow
def test_random_runs_soak(tmp_path: Path) -> None:
    for seed in range(6, 400):
        folder = tmp_path / str(seed)
        folder.mkdir()
        random_run(folder, seed)


# ------------------------------------------------------------------------------ a whole run
def plant_files(folder: Path, *, clean_wms: bool) -> dict[str, Path]:
    """Canonical CSV snapshots of the seeded plant: SAP and MES hold what the hub accepted (the
    movement still in transit to the WMS included), the WMS what its own snapshot holds."""
    movements = [
        json.loads(line)
        for line in (DATA / "hub_movements.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    book = [
        (m["material"], m["location"], m.get("lot", ""), m["quantity"], m["uom"], "")
        for m in movements
    ]
    message = json.loads((DATA / "wms_snapshot.json").read_text(encoding="utf-8"))
    wms: list[Row] = [
        (r["material"], r["location"], r.get("lot", ""), r["quantity"], r["uom"], "")
        for r in message["payload"]["rows"]
    ]
    if clean_wms:  # no row to convert or reject: every file is read by columns
        wms = [r if r[4] != "G" else (*r[:3], "300", "KG", "") for r in wms if r[3] != "abc"]
    mes = [r if r[0] != "RM-1003" else (*r[:3], "50.000", *r[4:]) for r in book if r[2] != "L3"]
    return {
        "sap": write(folder / "sap.csv", book),
        "wms": write(folder / "wms.csv", wms),
        "mes": write(folder / "mes.csv", mes),
    }


@pytest.mark.parametrize("clean_wms", [True, False], ids=["all-columns", "wms-rows"])
def test_a_whole_run_writes_and_stores_the_same(
    plant: Project,
    hub: Ledger,
    reference: Reference,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fast_reads: list[str],
    clean_wms: bool,
) -> None:
    paths = plant_files(tmp_path, clean_wms=clean_wms)
    as_of = datetime.now(UTC) + timedelta(days=2)
    outcomes: dict[str, RunOutcome] = {}
    for engine in ("rows", "auto"):
        with monkeypatch.context() as patch:
            if engine == "rows":
                patch.setattr(Comparison, "add_file", _by_rows)
            options = RunOptions(
                systems=["sap", "wms", "mes"],
                out=tmp_path / engine,
                snapshots=paths,
                as_of=as_of,
                runner="alice",
                alerts=False,
            )
            outcomes[engine] = run_reconciliation(plant, hub, options, reference=reference)
    rows, cols = outcomes["rows"], outcomes["auto"]
    assert fast_reads == (["sap", "wms", "mes"] if clean_wms else ["sap", "mes"])
    assert cols.result.summary.explained_in_transit == 1
    assert cols.result.summary.aggregated_rows["sap"] == 2  # lot-less; and the one in transit
    assert cols.result.summary.unmapped == (0 if clean_wms else 1)

    def text(engine: str, name: str) -> str:
        return (tmp_path / engine / name).read_text(encoding="utf-8")

    assert text("auto", "report.csv") == text("rows", "report.csv")
    generated = {"generated_at": None, "run_id": None}
    assert {**json.loads(text("auto", "report.json")), **generated} == {
        **json.loads(text("rows", "report.json")),
        **generated,
    }
    store = RunStore(hub.engine)
    stored = [store.lines(store.get(o.run_id)) for o in (rows, cols)]
    assert [fields_of(line) for line in stored[1]] == [fields_of(line) for line in stored[0]]
    assert len(stored[1]) == len(cols.result.exceptions)
    assert store.inputs(store.get(cols.run_id)) == store.inputs(store.get(rows.run_id))


# ------------------------------------------------------------------------------ pieces
def test_reader_refuses_what_the_row_reader_must_explain(tmp_path: Path) -> None:
    assert read_canonical_csv(write(tmp_path / "ok.csv", [("M1", "L1", "", "1", "KG", "")]))
    bad_rows = {
        "exponent": ("M1", "L1", "", "1e3", "KG", ""),
        "plus": ("M1", "L1", "", "+1", "KG", ""),
        "space": ("M1", "L1", "", " 1", "KG", ""),
        "decimals": ("M1", "L1", "", "1.0000000000001", "KG", ""),
        "separator": ("M1\x1f", "L1", "", "1", "KG", ""),
        "no location": ("M1", "", "", "1", "KG", ""),
        "long unit": ("M1", "L1", "", "1", "K" * 21, ""),
        "line break": ("M1", "L\n1", "", "1", "KG", ""),
    }
    for name, row in bad_rows.items():
        path = write(tmp_path / f"{name}.csv", [("M0", "L1", "", "1", "KG", ""), row])
        assert read_canonical_csv(path) is None, name
    (tmp_path / "latin1.csv").write_bytes(b"material,location,quantity,uom\nM\xe9,L1,1,KG\n")
    # a short Latin-1 file: no encoding can be told with confidence, refused with a clear message
    with pytest.raises(UnreadableFileError, match="cannot tell its encoding"):
        read_canonical_csv(tmp_path / "latin1.csv")
    assert read_canonical_csv(write(tmp_path / "x.csv", [("M1",)], ["material", "x"])) is None


def test_reader_reports_units_descriptions_and_lots(tmp_path: Path) -> None:
    path = write(
        tmp_path / "erp.csv",
        [
            ("M1", "L1", "", "1", "KG", ""),
            ("M1", "L2", "", "1", "KG", "first"),
            ("M2", "L1", "A", "1", "PCS", "only"),
            ("M1", "L3", "", "1", "KG", "second"),
        ],
    )
    columns = read_canonical_csv(path)
    assert columns is not None
    assert sorted(columns.units) == [("M1", "KG"), ("M2", "PCS")]
    assert columns.descriptions == {"M1": "first", "M2": "only"}
    assert columns.lots
    assert columns.rows == 4
    master = Costs(Material("M2", "EA"))
    assert read_canonical_csv(path, reference=master) is None  # PCS → EA: rows to convert


def test_chunks_and_columns_mix_in_one_comparison(tmp_path: Path) -> None:
    rows: list[Row] = [("M1", "L1", "", "1.5", "KG", ""), ("M2", "L1", "", "2", "KG", "")]
    columns = read_canonical_csv(write(tmp_path / "erp.csv", rows))
    assert columns is not None
    mixed = Comparison(["erp", "wms", "hub"])
    assert mixed.add_columns("erp", columns)
    plain = Comparison(["erp", "wms", "hub"])
    plain.add("erp", Chunk(list(rows)))
    for engine in (mixed, plain):
        engine.add(
            "wms", Chunk([("M1", "L1", "", "1.5", "KG", ""), ("M2", "L1", "", "1,500", "KG", "")])
        )
        engine.add("hub", Chunk([("M1", "L1", "", Decimal("1.5"), "KG", "")]))
    a, b = mixed.result(), plain.result()
    assert line_facts(a) == line_facts(b)
    assert a.summary.as_dict() == b.summary.as_dict()


def test_quantity_text_past_32_bit_offsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare, "LARGE_TEXT", 0)
    paths = files(
        tmp_path,
        {
            "erp": [("M1", "L1", "", "1.5", "KG", ""), ("M2", "L1", "", "2", "KG", "")],
            "wms": [("M1", "L1", "", "1.5", "KG", ""), ("M2", "L1", "", "3", "KG", "")],
        },
    )
    result = same_both_ways(paths)
    assert result.summary.quantity_mismatch == 1
    assert isinstance(result.comparison, Comparison)
    again = result.comparison.result()  # a second time, from the columns it kept
    assert again.summary.as_dict() == result.summary.as_dict()


def test_nothing_added_gives_an_empty_result() -> None:
    result = Comparison(["a", "b"]).result()
    assert result.summary.lines == 0
    assert list(result.lines()) == []


def test_no_rows_after_collapsing_lots() -> None:
    comparison = Comparison(["a", "b"])
    comparison.collapse_lots()
    with pytest.raises(ValueError, match="before collapse_lots"):
        comparison.add("a", Chunk([("M1", "L1", "", "1", "KG", "")]))


def test_the_engine_does_not_load_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas for ``pa.array`` and Python scalars: a third of a second and tens
    of MB in the middle of a run. The engine builds its arrays without them."""
    for system in ("erp", "wms"):
        write(
            tmp_path / f"{system}.csv",
            [("M1", "L1", "", "1", "KG", ""), ("M2", "L", "", "2", "KG", "")],
        )
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from conveyor.reconcile.compare import Comparison\n"
        "from conveyor.reconcile.sources import CanonicalCsvSnapshot\n"
        f"folder = Path({str(tmp_path)!r})\n"
        "c = Comparison(['erp', 'wms'])\n"
        "for s in ('erp', 'wms'):\n"
        "    assert c.add_file(CanonicalCsvSnapshot(s, folder / f'{s}.csv'))\n"
        "r = c.result()\n"
        "list(r.exact_rows())\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
