"""The mapping engine: inbound, outbound and snapshot rows of every shipped mapping; versions;
reload; precise reasons for records that cannot be mapped."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from typing import Any

import pytest

from conveyor import messages as canonical
from conveyor.config import Project
from conveyor.errors import ConfigError, MappingError
from conveyor.mapping import MappedRow, MappingEngine
from conveyor.mapping.readers import read_raw

from .conftest import DATA, append_row, edit


def mes_rows() -> list[dict[str, Any]]:
    return [r.data for r in read_raw(DATA / "mes_consumption.csv")]


def test_mes_consumption_csv(mapping_engine: MappingEngine) -> None:
    rows = mes_rows()
    first = mapping_engine.map_inbound("mes", "material_consumption", rows[0], file="c.csv", line=2)
    assert first["type"] == "material_consumption"
    assert first["source"] == "mes"
    assert first["key"] == "C-1001/1"
    assert first["occurred_at"] == "2026-11-21T08:30:00+08:00"
    assert first["mapping_version"] == mapping_engine.version("mes")
    assert first["payload"] == {
        "order_id": "MO-2611-001",
        "material": "RM-1001",
        "location": "1000/WIP-MOLD",
        "lot": "L2611A",
        "quantity": Decimal("1250.5"),
        "uom": "KG",
        "operation": "0010",
    }
    assert canonical.validate(first)["payload"]["quantity"] == Decimal("1250.5")
    grams = mapping_engine.map_inbound("mes", "material_consumption", rows[1])
    assert (grams["payload"]["quantity"], grams["payload"]["uom"]) == (Decimal("1.5"), "KG")
    boxes = mapping_engine.map_inbound("mes", "material_consumption", rows[2])
    assert (boxes["payload"]["quantity"], boxes["payload"]["uom"]) == (Decimal(24), "PCS")
    full_width = mapping_engine.map_inbound("mes", "material_consumption", rows[4])
    assert full_width["payload"]["quantity"] == Decimal(300)


def test_unknown_material_names_the_code(mapping_engine: MappingEngine) -> None:
    record = mes_rows()[3]
    with pytest.raises(MappingError) as caught:
        mapping_engine.map_inbound("mes", "material_consumption", record, file="c.csv", line=5)
    (problem,) = caught.value.problems
    assert problem.field == "material"
    assert problem.value == "P-9999"
    assert problem.rule == "lookup"
    assert (problem.file, problem.line) == ("c.csv", 5)
    assert problem.extra["system"] == "mes"
    assert problem.extra["mapping_file"] == "mappings/mes.yaml"
    assert problem.extra["table"] == "materials"
    assert problem.extra["column"] == "mes_part"
    assert problem.extra["code"] == "P-9999"
    assert problem.extra["mapping_line"] == 20
    reason = str(caught.value)
    assert "P-9999" in reason
    assert "materials.csv" in reason
    assert "mappings/mes.yaml:20" in reason


def test_every_problem_of_a_record_is_reported(mapping_engine: MappingEngine) -> None:
    record = {**mes_rows()[0], "part_no": "P-0", "area": "NOWHERE", "unit": "crate", "qty": "x"}
    with pytest.raises(MappingError) as caught:
        mapping_engine.map_inbound("mes", "material_consumption", record)
    assert {p.field: p.rule for p in caught.value.problems} == {
        "material": "lookup",
        "location": "lookup",
        "quantity": "parse.decimal",
        "uom": "unit",
    }


def test_bad_date_is_parked_with_the_formats(mapping_engine: MappingEngine) -> None:
    record = {**mes_rows()[0], "posted_at": "21.11.2026"}
    with pytest.raises(MappingError) as caught:
        mapping_engine.map_inbound("mes", "material_consumption", record)
    (problem,) = caught.value.problems
    assert problem.field == "occurred_at"
    assert problem.rule == "parse.date"
    assert "%Y/%m/%d %H:%M" in problem.message


def test_negative_output_becomes_a_reversal(mapping_engine: MappingEngine) -> None:
    base = {
        "doc_no": "O-1",
        "line_no": "1",
        "order_no": "MO-1",
        "part_no": "P-5001",
        "area": "FG",
        "qty": "12",
        "unit": "pcs",
        "posted_at": "2026/11/21 16:00",
    }
    receipt = mapping_engine.map_inbound("mes", "production_output", base)
    assert "reversal_of" not in receipt["payload"]
    reversal = mapping_engine.map_inbound(
        "mes", "production_output", {**base, "doc_no": "O-2", "qty": "-1", "reverses": "O-1/1"}
    )
    assert reversal["payload"]["reversal_of"] == "O-1/1"
    assert reversal["payload"]["quantity"] == Decimal(1)
    with pytest.raises(MappingError) as caught:
        mapping_engine.map_inbound("mes", "production_output", {**base, "qty": "-1"})
    assert caught.value.problems[0].field == "reversal_of"


def test_sap_mseg_movement_types(mapping_engine: MappingEngine) -> None:
    rows = [r.data for r in read_raw(DATA / "sap_mseg.csv", mapping_engine.mapping("sap").csv)]
    issue = mapping_engine.map_inbound("sap", "material_consumption", rows[0])
    assert issue["key"] == "4900001001/2026/0001"
    assert issue["payload"]["material"] == "RM-1001"  # MATNR 10001001 padded to 18 digits
    assert issue["payload"]["quantity"] == Decimal("1250.5")  # 1.250,500
    assert issue["payload"]["location"] == "1000/WIP-MOLD"
    assert issue["payload"]["attributes"] == {"movement": "issue_to_order"}
    cartons = mapping_engine.map_inbound("sap", "material_consumption", rows[1])
    assert (cartons["payload"]["quantity"], cartons["payload"]["uom"]) == (Decimal(2000), "PCS")
    cancel = mapping_engine.map_inbound("sap", "material_consumption", rows[2])
    assert cancel["payload"]["reversal_of"] == "4900001001/2026/0001"
    assert cancel["payload"]["quantity"] == Decimal("250.5")
    ret = mapping_engine.map_inbound("sap", "material_consumption", rows[3])
    assert ret["payload"]["quantity"] == Decimal(-10)
    assert "reversal_of" not in ret["payload"]
    with pytest.raises(MappingError) as caught:
        mapping_engine.map_inbound("sap", "material_consumption", rows[4])  # a 101
    assert caught.value.problems[0].rule == "when"
    receipt = mapping_engine.map_inbound("sap", "production_output", rows[4])
    assert receipt["payload"]["material"] == "FG-5001"


def test_sap_order_with_components(mapping_engine: MappingEngine) -> None:
    (order,) = json.loads((DATA / "sap_orders.json").read_text())
    message = mapping_engine.map_inbound("sap", "production_order", order)
    payload = message["payload"]
    assert payload["status"] == "released"
    assert payload["scheduled_start"] == "2026-11-21T00:00:00+08:00"
    assert payload["components"] == [
        {
            "line": "0010",
            "material": "SF-4001",
            "quantity": Decimal(100),
            "uom": "PCS",
            "location": "1000/WIP-ASSY",
            "backflush": True,
        },
        {
            "line": "0020",
            "material": "RM-1004",
            "quantity": Decimal("0.5"),
            "uom": "KG",
            "location": "1000/WIP-ASSY",
            "backflush": False,
        },
    ]
    order["RESB"][1]["MATNR"] = "99999999"
    with pytest.raises(MappingError) as caught:
        mapping_engine.map_inbound("sap", "production_order", order)
    problem = caught.value.problems[0]
    assert problem.field == "components[1].material"
    assert problem.extra["code"] == "000000000099999999"


def test_yonyou_gbk_export(mapping_engine: MappingEngine) -> None:
    rows = [r.data for r in read_raw(DATA / "yonyou_materialout_gbk.csv")]
    first = mapping_engine.map_inbound("yonyou", "material_consumption", rows[0])
    assert first["payload"]["quantity"] == Decimal("1250.50")
    assert first["payload"]["uom"] == "KG"
    assert first["occurred_at"] == "2026-11-21T00:00:00+08:00"
    second = mapping_engine.map_inbound("yonyou", "material_consumption", rows[1])
    assert second["payload"]["quantity"] == Decimal(240)
    assert second["occurred_at"].startswith("2026-11-21")
    red = mapping_engine.map_inbound("yonyou", "material_consumption", rows[2])
    assert red["payload"]["quantity"] == Decimal("-12.5")
    assert red["payload"]["attributes"] == {"movement": "return_from_order"}
    with pytest.raises(MappingError, match="0199999"):
        mapping_engine.map_inbound("yonyou", "material_consumption", rows[3])


def test_kingdee_entry_and_outbound_model(mapping_engine: MappingEngine) -> None:
    record = {
        "FormId": "PRD_PickMtrl",
        "FBillNo": "SCLL000123",
        "FDate": "2026-11-21T08:30:00",
        "FStockOrgId": {"FNumber": "100"},
        "FEntity": {
            "FSeq": 1,
            "FMoBillNo": "MO000045",
            "FMaterialId": {"FNumber": "1.01.002"},
            "FStockId": {"FNumber": "CK010"},
            "FActualQty": 25.5,
            "FUnitID": {"FNumber": "kg"},
            "FLot": {"FNumber": "L9"},
        },
    }
    message = mapping_engine.map_inbound("kingdee", "material_consumption", record)
    assert message["key"] == "SCLL000123/1"
    assert message["payload"]["location"] == "1000/WIP-MOLD"
    assert message["payload"]["quantity"] == Decimal("25.5")
    document = mapping_engine.map_outbound("kingdee", message)
    assert document["FormId"] == "PRD_PickMtrl"
    model = document["Model"]
    assert model["FStockOrgId"] == {"FNumber": "100"}
    assert model["FDate"] == "2026-11-21 08:30:00"
    (entry,) = model["FEntity"]
    assert entry["FMaterialId"] == {"FNumber": "1.01.002"}
    assert entry["FStockId"] == {"FNumber": "CK010"}
    assert entry["FUnitID"] == {"FNumber": "kg"}
    assert entry["FActualQty"] == Decimal("25.5")
    returned = {**message, "payload": {**message["payload"], "quantity": Decimal("-2")}}
    document = mapping_engine.map_outbound("kingdee", returned)
    assert document["FormId"] == "PRD_ReturnMtrl"
    assert document["Model"]["FEntity"][0]["FQty"] == Decimal(2)


def test_sap_outbound_item_table(mapping_engine: MappingEngine) -> None:
    message = canonical.new_message(
        "material_consumption",
        "mes",
        "C-1/1",
        {
            "order_id": "1000123",
            "material": "RM-1001",
            "quantity": "-3.5",
            "uom": "KG",
            "location": "1000/WIP-MOLD",
        },
        occurred_at="2026-11-21T17:30:00+00:00",
    )
    document = mapping_engine.map_outbound("sap", message)
    assert document["GOODSMVT_HEADER"]["PSTNG_DATE"] == "20261122"  # 01:30 in Shanghai
    assert document["GOODSMVT_ITEM"] == [
        {
            "MATERIAL": "000000000010001001",
            "PLANT": "1000",
            "STGE_LOC": "0010",
            "MOVE_TYPE": "262",
            "MVT_IND": "F",
            "ENTRY_QNT": "3.5",
            "ENTRY_UOM": "KGM",
            "ORDERID": "000001000123",
        }
    ]


def test_outbound_unmapped_code(mapping_engine: MappingEngine) -> None:
    message = canonical.new_message(
        "stock_transfer",
        "wms",
        "T-1",
        {
            "material": "RM-1001",
            "quantity": "1",
            "uom": "T",
            "from_location": "1000/RM",
            "to_location": "1000/FG",
        },
    )
    with pytest.raises(MappingError) as caught:
        mapping_engine.map_outbound("wms", message)
    (problem,) = caught.value.problems
    assert problem.field == "uom"
    assert problem.extra["table"] == "unit_codes"
    assert problem.extra["system"] == "wms"
    with pytest.raises(MappingError):
        mapping_engine.map_outbound("wms", {"type": "stock_transfer", "payload": {}})
    with pytest.raises(ConfigError):
        mapping_engine.map_outbound("wms", {**message, "type": "production_order"})


def test_snapshot_rows(mapping_engine: MappingEngine) -> None:
    rows = list(read_raw(DATA / "kingdee_stock_gbk.csv"))
    mapped = [mapping_engine.map_snapshot_row("kingdee", r.data) for r in rows]
    assert mapped == [
        MappedRow("RM-1001", "1000/RM", "L2611A", Decimal("12500.000"), "KG"),
        MappedRow("RM-2001", "1000/WIP-ASSY", "", Decimal(4000), "PCS"),
        MappedRow("FG-5001", "1000/FG", "", Decimal(144), "PCS"),
    ]
    assert mapping_engine.snapshot_as_of("kingdee", rows[0].data) == "2026-11-21T00:00:00+08:00"
    wms = mapping_engine.map_snapshot_row(
        "wms", {"SKU": "SKU-1003", "LOC": "WH1-RM", "LOT": "", "QTY": "2,500", "UOM": "KG"}
    )
    assert wms == MappedRow("RM-1003", "1000/RM", "", Decimal(2500), "KG")
    with pytest.raises(MappingError) as caught:
        mapping_engine.map_snapshot_row("wms", {"SKU": "SKU-0", "LOC": "WH1-RM", "QTY": "1"})
    assert {p.field for p in caught.value.problems} == {"material", "uom"}
    message = mapping_engine.map_inbound("kingdee", "stock_snapshot", rows[0].data, line=2)
    assert message["payload"]["rows"][0]["quantity"] == Decimal("12500.000")


def test_directions(mapping_engine: MappingEngine) -> None:
    assert mapping_engine.has_direction("sap", "material_consumption", "in")
    assert mapping_engine.has_direction("sap", "material_consumption", "out")
    assert not mapping_engine.has_direction("kingdee", "stock_transfer", "in")
    assert mapping_engine.has_direction("kingdee", "stock_transfer", "out")
    assert not mapping_engine.has_direction("nobody", "stock_transfer", "out")
    with pytest.raises(ConfigError, match="no mapping for system"):
        mapping_engine.map_inbound("nobody", "stock_transfer", {})


def test_wms_json_condition_and_number_function(mapping_engine: MappingEngine) -> None:
    rows = [r.data for r in read_raw(DATA / "wms_moves.jsonl")][:3]
    move = mapping_engine.map_inbound("wms", "stock_transfer", rows[1])
    assert (move["payload"]["quantity"], move["payload"]["uom"]) == (Decimal(36), "PCS")
    with pytest.raises(MappingError, match="WH1-XX"):
        mapping_engine.map_inbound("wms", "stock_transfer", rows[2])
    with pytest.raises(MappingError, match="when"):
        mapping_engine.map_inbound("wms", "stock_transfer", {**rows[1], "type": "PICK"})
    count = {
        "taskId": "CNT-1",
        "sku": "SKU-2001",
        "loc": "WH1-L2",
        "diff": "-1,000",
        "uom": "EA",
        "reason": "cycle count",
        "doneAt": "2026-11-21T18:00:00+08:00",
    }
    loss = mapping_engine.map_inbound("wms", "stock_adjustment", count)
    assert (loss["payload"]["reason"], loss["payload"]["quantity"]) == (
        "count_loss",
        Decimal(-1000),
    )
    gain = mapping_engine.map_inbound("wms", "stock_adjustment", {**count, "diff": "５"})
    assert gain["payload"]["reason"] == "count_gain"


def test_version_changes_with_the_mapping_and_its_tables(project: Project) -> None:
    engine = MappingEngine.load(project)
    before = {s: engine.version(s) for s in engine.systems}
    edit(project.mappings_dir / "mes.yaml", "operation: operation", "operation: {path: operation}")
    append_row(project.master_data_dir / "movement_types.csv", "count,stock_adjustment,1,c,,,,,")
    reloaded = MappingEngine.load(project)
    after = {s: reloaded.version(s) for s in reloaded.systems}
    assert after["mes"] != before["mes"]  # its file changed
    assert after["sap"] != before["sap"]  # it looks movement types up
    assert after["wms"] == before["wms"]  # neither its file nor its tables changed


def test_reload_when_files_change(project: Project) -> None:
    engine = MappingEngine.load(project)
    record = mes_rows()[3]
    with pytest.raises(MappingError):
        engine.map_inbound("mes", "material_consumption", record)
    assert engine.reload_if_changed() is False
    old = engine.version("mes")
    append_row(
        project.master_data_dir / "materials.csv",
        "RM-9999,new part,PCS,raw,,,,,,P-9999,",
    )
    _touch_later(project.master_data_dir / "materials.csv")
    assert engine.reload_if_changed() is True
    message = engine.map_inbound("mes", "material_consumption", record)
    assert message["payload"]["material"] == "RM-9999"
    assert message["mapping_version"] == engine.version("mes") != old


def test_broken_edit_keeps_the_last_good_state(project: Project) -> None:
    engine = MappingEngine.load(project)
    version = engine.version("mes")
    path = project.mappings_dir / "mes.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "  oops: [\n", encoding="utf-8")
    _touch_later(path)
    assert engine.reload_if_changed() is False
    assert engine.last_reload_error is not None
    assert "mes.yaml" in engine.last_reload_error
    assert engine.version("mes") == version
    assert engine.map_inbound("mes", "material_consumption", mes_rows()[0])["key"] == "C-1001/1"


def test_system_alias_from_conveyor_yaml(project: Project) -> None:
    (project.root / "conveyor.yaml").write_text(
        "systems:\n  erp:\n    connector: fake\n    mapping: mappings/sap.yaml\n", encoding="utf-8"
    )
    engine = MappingEngine.load(Project.load(project.root))
    rows = [r.data for r in read_raw(DATA / "sap_mseg.csv", engine.mapping("erp").csv)]
    message = engine.map_inbound("erp", "material_consumption", rows[0])
    assert message["source"] == "erp"
    assert engine.version("erp") == engine.version("sap")


def _touch_later(path: os.PathLike[str]) -> None:
    """Move the modification time forward, as a later save would."""
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


SAMPLE_PAYLOADS: dict[str, dict[str, Any]] = {
    "material_consumption": {
        "order_id": "MO-1",
        "material": "RM-1001",
        "quantity": "12.5",
        "uom": "KG",
        "location": "1000/WIP-MOLD",
        "lot": "L1",
    },
    "production_output": {
        "order_id": "MO-1",
        "material": "FG-5001",
        "quantity": "24",
        "uom": "PCS",
        "location": "1000/FG",
    },
    "stock_transfer": {
        "material": "RM-2001",
        "quantity": "1000",
        "uom": "PCS",
        "from_location": "1000/RM",
        "to_location": "1000/WIP-ASSY",
    },
    "stock_adjustment": {
        "material": "RM-1002",
        "quantity": "-2",
        "uom": "KG",
        "location": "1000/RM",
        "reason": "scrap",
    },
    "material_request": {
        "order_id": "MO-1",
        "material": "RM-2002",
        "quantity": "500",
        "uom": "PCS",
        "to_location": "1000/WIP-ASSY",
        "needed_by": "2026-11-21T10:00:00+08:00",
    },
    "production_order": {
        "order_id": "MO-1",
        "material": "FG-5002",
        "quantity": "60",
        "uom": "PCS",
        "location": "1000/FG",
        "status": "released",
        "components": [{"line": "10", "material": "SF-4001", "quantity": "60", "uom": "PCS"}],
    },
}


def test_every_shipped_outbound_mapping(mapping_engine: MappingEngine) -> None:
    mapped = {}
    for system in mapping_engine.systems:
        for message_type, payload in SAMPLE_PAYLOADS.items():
            if mapping_engine.has_direction(system, message_type, "out"):
                message = canonical.new_message(
                    message_type, "hub", "K-1", payload, occurred_at="2026-11-21T08:00:00+08:00"
                )
                mapped[(system, message_type)] = mapping_engine.map_outbound(system, message)
    assert len(mapped) == 19  # yonbip: material out, product in, transfer; mes_b2mml: schedule
    assert mapped[("mes_b2mml", "production_order")]["MaterialRequirement"] == [
        {"ID": "10", "MaterialDefinitionID": "P-4001", "Quantity": "60", "UnitOfMeasure": "pcs"}
    ]
    kingdee = mapped[("kingdee", "stock_transfer")]["Model"]["FBillEntry"][0]
    assert kingdee["FSrcStockId"] == {"FNumber": "CK001"}
    assert "FLot" not in kingdee  # no lot: no empty {"FNumber": …} reference
    assert mapped[("kingdee", "stock_adjustment")]["FormId"] == "STK_MisDelivery"
    assert mapped[("sap", "stock_adjustment")]["GOODSMVT_ITEM"][0]["MOVE_TYPE"] == "551"
    assert mapped[("sap", "production_output")]["GOODSMVT_ITEM"][0]["ENTRY_UOM"] == "ST"
    assert mapped[("mes", "production_order")]["bom"] == [
        {"line": "10", "partNo": "P-4001", "qty": "60", "unit": "pcs", "backflush": False}
    ]
    assert mapped[("wms", "material_request")]["dueAt"] == "2026-11-21T10:00:00+0800"
    assert mapped[("yonyou", "stock_transfer")]["transvouch"]["header"]["iwhcode"] == "11"
