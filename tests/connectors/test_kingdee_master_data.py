"""The Kingdee connector's material master (``master_data``: ``BD_MATERIAL`` by
``ExecuteBillQuery``): paged with ``StartRow``/``Limit`` over real loopback HTTP against the
simulator, the ``since`` filter on ``FModifyDate``, and the query as sent (``responses``)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import responses

from connectors.kingdee import MATERIAL_FIELDS, KingdeeConnector
from conveyor.errors import ConfigError
from simulators._erp import SimServer
from tests.support import kingdee as kd
from tests.support.kingdee import sim, simulator_of

__all__ = ["sim"]  # the fixture used here

BASE = "http://k3.example"
STUB = f"{BASE}/k3cloud/Kingdee.BOS.WebApi.ServicesStub"
LOGIN = f"{STUB}.AuthService.ValidateUser.common.kdsvc"
QUERY = f"{STUB}.DynamicFormService.ExecuteBillQuery.common.kdsvc"


def connector(url: str, monkeypatch: pytest.MonkeyPatch, **more: object) -> KingdeeConnector:
    kd.plant_secrets(monkeypatch)
    return KingdeeConnector("kingdee", kd.settings(url, **more))


def test_declares_master_data_and_maps_its_fields_to_materials_csv() -> None:
    assert "master_data" in KingdeeConnector.capabilities
    assert KingdeeConnector.material_key == "FNumber"
    assert KingdeeConnector.material_columns == {
        "FNumber": "kingdee_number",
        "FName": "description",
        "FBaseUnitId.FNumber": "base_uom",
    }


def test_material_master_reads_every_page(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with connector(sim.url, monkeypatch, page_size=5) as kingdee:
        rows = list(kingdee.material_master(None))
    assert simulator_of(sim).calls["ExecuteBillQuery"] == 3  # 5 + 5 + 2
    assert len(rows) == 12
    assert [r["FNumber"] for r in rows] == sorted(r["FNumber"] for r in rows)
    assert rows[0] == {
        "FNumber": "1.01.001",
        "FName": "聚丙烯颗粒 PP granulate",
        "FSpecification": "",
        "FBaseUnitId.FNumber": "kg",
        "FMaterialGroup.FNumber": "raw",
        "FDocumentStatus": "C",
        "FForbidStatus": "A",
        "FModifyDate": rows[0]["FModifyDate"],
    }
    assert datetime.fromisoformat(rows[0]["FModifyDate"])


def test_material_master_since_reads_only_what_changed(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    erp = simulator_of(sim)
    since = erp.modify_clock.now()
    kd.change_material_master(erp)
    with connector(sim.url, monkeypatch, page_size=2) as kingdee:
        rows = list(kingdee.material_master(since))
    assert [(r["FNumber"], r["FName"], r["FBaseUnitId.FNumber"]) for r in rows] == [
        ("1.01.002", "ABS颗粒 阻燃 FR granulate", "kg"),
        ("1.02.001", "十字螺钉 M4x10 screw", "box"),
        ("9.99.001", kd.NEW_MATERIAL_NAME, "Pcs"),
    ]
    assert erp.calls["ExecuteBillQuery"] == 2  # a full page of 2, then a short one


@responses.activate
def test_the_query_sent_and_an_error_inside_the_array(monkeypatch: pytest.MonkeyPatch) -> None:
    responses.post(LOGIN, json={"LoginResultType": 1, "KDSVCSessionId": "S1"})
    responses.post(
        QUERY, json=[["1.01.001", "PP", "", "kg", "raw", "C", "A", "2026-11-01T08:00:00"]]
    )
    unknown = {"Result": {"ResponseStatus": {"IsSuccess": False, "MsgCode": 4, "Errors": [
        {"FieldName": None, "Message": "业务对象“BD_MATERIAL”不存在", "DIndex": 0}]}}}  # fmt: skip
    responses.post(QUERY, json=[[unknown]])
    with connector(BASE, monkeypatch) as kingdee:
        (row,) = kingdee.material_master(datetime(2026, 11, 1, 8, 0, 0))
        assert row["FName"] == "PP"
        assert row["FSpecification"] == ""
        with pytest.raises(ConfigError, match="BD_MATERIAL"):
            list(kingdee.material_master(None))
    data = json.loads(responses.calls[1].request.body)["data"]
    assert data["FormId"] == "BD_MATERIAL"
    assert data["FieldKeys"] == ",".join(MATERIAL_FIELDS)
    assert data["FilterString"] == "FModifyDate > '2026-11-01T08:00:00'"
    assert (data["OrderString"], data["StartRow"], data["Limit"]) == ("FNumber", 0, 2000)
    assert json.loads(responses.calls[2].request.body)["data"]["FilterString"] == ""
