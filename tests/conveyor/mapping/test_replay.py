"""Replay of parked records against a real ledger (SQLite and PostgreSQL): after the integrator adds
the missing row, the record is mapped and accepted; a record that still fails stays one parked
row."""

from __future__ import annotations

import json

from conveyor import messages as canonical
from conveyor.config import Project
from conveyor.ledger import Ledger, Origin
from conveyor.mapping import MappingEngine
from conveyor.mapping.ingest import ingest_records
from conveyor.mapping.readers import read_raw
from conveyor.mapping.replay import replay_parked

from .conftest import DATA, append_row, edit


def _ingest_mes(project: Project, ledger: Ledger) -> None:
    engine = MappingEngine.load(project)
    records = list(read_raw(DATA / "mes_consumption.csv"))
    counts = ingest_records(project, ledger, engine, "mes", "material_consumption", records)
    assert counts["parked"] == 1


def test_replay_after_the_row_is_added(project: Project, ledger: Ledger) -> None:
    _ingest_mes(project, ledger)
    (parked,) = ledger.parked_records()

    assert replay_parked(project, ledger) == {"replayed": 0, "still_parked": 1, "duplicate": 0}
    assert [p.id for p in ledger.parked_records()] == [parked.id]

    append_row(project.master_data_dir / "materials.csv", "RM-9999,new seal,PCS,raw,,,,,,P-9999,")
    assert replay_parked(project, ledger) == {"replayed": 1, "still_parked": 0, "duplicate": 0}
    assert ledger.parked_records() == []
    (resolved,) = ledger.parked_records(status="replayed")
    assert resolved.id == parked.id
    (message,) = ledger.trace("C-1002/2")["messages"]
    assert resolved.resolved_message_id == message["message_id"]
    assert message["payload"]["material"] == "RM-9999"
    assert message["mapping_version"] == MappingEngine.load(project).version("mes")

    assert replay_parked(project, ledger) == {"replayed": 0, "still_parked": 0, "duplicate": 0}
    assert len(ledger.trace("C-1002/2")["messages"]) == 1


def test_still_failing_record_keeps_one_row_with_the_new_reason(
    project: Project, ledger: Ledger
) -> None:
    _ingest_mes(project, ledger)
    # The material row is added, but for a unit MES does not use for it: the record now fails on
    # the conversion (pcs → BOX has no factor for this material), not on the material.
    append_row(project.master_data_dir / "materials.csv", "RM-9999,new seal,BAG,raw,,,,,,P-9999,")
    assert replay_parked(project, ledger) == {"replayed": 0, "still_parked": 1, "duplicate": 0}
    (parked,) = ledger.parked_records()
    assert "no conversion from PCS to BAG" in parked.reason
    assert json.loads(parked.problems)[0]["table"] == "unit_conversions"


def test_ledger_rejection_on_replay_is_not_parked_twice(project: Project, ledger: Ledger) -> None:
    engine = MappingEngine.load(project)
    record = {
        "doc_no": "O-9",
        "line_no": "1",
        "order_no": "MO-1",
        "part_no": "P-9999",
        "area": "FG",
        "qty": "-1",
        "unit": "pcs",
        "posted_at": "2026/11/21 16:00",
        "reverses": "O-404/1",
    }
    counts = ingest_records(project, ledger, engine, "mes", "production_output", [_raw(record)])
    assert counts["parked"] == 1
    append_row(project.master_data_dir / "materials.csv", "RM-9999,new seal,PCS,raw,,,,,,P-9999,")
    # Mapped now, but the receipt it reverses is unknown to the ledger.
    assert replay_parked(project, ledger) == {"replayed": 0, "still_parked": 1, "duplicate": 0}
    (parked,) = ledger.parked_records()
    assert parked.stage == "map"
    assert "reverses a message the ledger does not have" in parked.reason
    assert replay_parked(project, ledger)["still_parked"] == 1
    assert len(ledger.parked_records()) == 1


def test_replay_by_id_and_system_and_duplicates(project: Project, ledger: Ledger) -> None:
    _ingest_mes(project, ledger)
    (parked,) = ledger.parked_records()
    append_row(project.master_data_dir / "materials.csv", "RM-9999,new seal,PCS,raw,,,,,,P-9999,")
    assert replay_parked(project, ledger, system="wms")["replayed"] == 0
    assert replay_parked(project, ledger, ids=[parked.id + 100])["replayed"] == 0
    # Meanwhile the same record arrived again, fixed at the source: the replay finds a duplicate.
    engine = MappingEngine.load(project)
    record = json.loads(parked.record)
    ledger.accept(engine.map_inbound("mes", "material_consumption", record))
    assert replay_parked(project, ledger, ids=[parked.id]) == {
        "replayed": 0,
        "still_parked": 0,
        "duplicate": 1,
    }
    (resolved,) = ledger.parked_records(status="replayed")
    assert resolved.resolved_message_id == ledger.trace("C-1002/2")["messages"][0]["message_id"]


def test_canonical_records_parked_at_validate_are_offered_again(
    project: Project, ledger: Ledger
) -> None:
    message = canonical.new_message(
        "stock_adjustment",
        "mes",
        "ADJ-1",
        {"material": "RM-1001", "quantity": "5", "uom": "KG", "location": "1000/RM"},
    )
    (result,) = ledger.accept_batch([message], [Origin(file="adj.jsonl", line=1)])
    assert result.status == "rejected"  # no reason
    assert ledger.parked_records()[0].stage == "validate"
    assert replay_parked(project, ledger)["still_parked"] == 1
    assert len(ledger.parked_records()) == 1


def test_mapping_change_shows_in_trace(project: Project, ledger: Ledger) -> None:
    _ingest_mes(project, ledger)
    old = ledger.trace("C-1001/1")["messages"][0]["mapping_version"]
    edit(
        project.mappings_dir / "mes.yaml",
        "      key: [doc_no, line_no]\n      occurred_at: {path: posted_at, parse: {date: [",
        "      key: [doc_no, line_no, order_no]\n"
        "      occurred_at: {path: posted_at, parse: {date: [",
    )
    append_row(project.master_data_dir / "materials.csv", "RM-9999,new seal,PCS,raw,,,,,,P-9999,")
    assert replay_parked(project, ledger)["replayed"] == 1
    (message,) = ledger.trace("C-1002/2/MO-2611-002")["messages"]
    assert message["mapping_version"] != old
    assert message["mapping_version"] == MappingEngine.load(project).version("mes")


def _raw(data: dict[str, str]) -> object:
    from conveyor.connector import RawRecord

    return RawRecord(data, file="output.csv", line=2)


def test_parked_stock_row_is_replayed_as_a_one_row_snapshot(
    project: Project, ledger: Ledger
) -> None:
    from conveyor.connector import RawRecord

    engine = MappingEngine.load(project)
    rows = [
        RawRecord({"SKU": "SKU-1001", "LOC": "WH1-RM", "QTY": "5", "UOM": "KG"}, "onhand.csv", 2),
        RawRecord({"SKU": "SKU-7777", "LOC": "WH1-RM", "QTY": "3", "UOM": "EA"}, "onhand.csv", 3),
    ]
    counts = ingest_records(project, ledger, engine, "wms", "stock_snapshot", rows)
    assert counts == {"accepted": 1, "duplicate": 0, "rejected": 0, "parked": 1}
    append_row(project.master_data_dir / "materials.csv", "RM-7777,new,PCS,raw,,,,,,,SKU-7777")
    assert replay_parked(project, ledger) == {"replayed": 1, "still_parked": 0, "duplicate": 0}
    (resolved,) = ledger.parked_records(status="replayed")
    found = ledger.trace(resolved.resolved_message_id or "")["messages"]
    assert found[0]["type"] == "stock_snapshot"
    assert found[0]["key"].endswith("/onhand.csv/3")
    assert found[0]["payload"]["rows"] == [
        {"material": "RM-7777", "location": "1000/RM", "quantity": "3", "uom": "PCS"}
    ]
