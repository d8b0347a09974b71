"""The SAP connector against the SAP simulator over loopback HTTP, in both SOAP styles: what each
canonical movement posts (as the simulator recorded it), BAPIRET2 handling, faults, commits,
lost answers through the real delivery worker and ledger, stock snapshots, and the conformance
suite."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

from connectors.sap import SapConnector, alpha, reference
from connectors.soap import forget_wsdls
from conveyor.config import Project
from conveyor.errors import RejectedError, TransientError
from conveyor.mapping import MappingEngine
from conveyor.messages import new_message
from conveyor.runtime import registry
from conveyor.testing.conformance import Harness, conformance_tests
from simulators.sap import STYLES, SapServer, serve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine() -> MappingEngine:
    return MappingEngine.load(Project.load(REPO))


@pytest.fixture
def sim() -> Iterator[SapServer]:
    server = serve()
    try:
        yield server
    finally:
        server.stop()


def sap(
    sim: SapServer, style: str = "rfc", tmp: Path | None = None, **settings: Any
) -> SapConnector:
    return SapConnector(
        "sap",
        {
            "wsdl": sim.url + STYLES[style]["wsdl"],
            "timeout_s": 5,
            **({"wsdl_cache": str(tmp / "wsdl.db")} if tmp else {}),
            **settings,
        },
    )


def message(message_type: str, key: str, **payload: Any) -> dict[str, Any]:
    return dict(new_message(message_type, "mes", key, payload))


MOVEMENTS = [
    pytest.param(
        "material_consumption",
        {"order_id": "1000123", "material": "RM-1001", "location": "1000/RM", "lot": "b-7",
         "quantity": "2.5", "uom": "KG"},
        {"GM_CODE": "03", "MOVE_TYPE": "261", "MVT_IND": "F", "ORDERID": "000001000123",
         "MATERIAL": "000000000010001001", "BATCH": "B-7", "ENTRY_UOM": "KGM",
         "ENTRY_QNT": "2.5", "PLANT": "1000", "STGE_LOC": "0001"},
        id="consumption-261",
    ),
    pytest.param(
        "material_consumption",
        {"order_id": "1000123", "material": "RM-1001", "location": "1000/RM", "lot": "b-7",
         "quantity": "-1.25", "uom": "KG"},
        {"GM_CODE": "03", "MOVE_TYPE": "262", "MVT_IND": "F", "ENTRY_QNT": "1.25",
         "ORDERID": "000001000123"},
        id="consumption-negative-262",
    ),
    pytest.param(
        "production_output",
        {"order_id": "1000123", "material": "FG-5001", "location": "1000/FG", "lot": "fg-26",
         "quantity": "10", "uom": "PCS"},
        {"GM_CODE": "02", "MOVE_TYPE": "101", "MVT_IND": "F", "MATERIAL": "000000000050005001",
         "BATCH": "FG-26", "ENTRY_UOM": "ST", "ORDERID": "000001000123"},
        id="output-101",
    ),
    pytest.param(
        "production_output",
        {"order_id": "1000123", "material": "FG-5001", "location": "1000/FG", "lot": "",
         "quantity": "4", "uom": "PCS", "reversal_of": "4900000001/2026/0001"},
        {"GM_CODE": "02", "MOVE_TYPE": "102", "MVT_IND": "F"},
        id="output-reversal-102",
    ),
    pytest.param(
        "stock_transfer",
        {"material": "RM-2001", "from_location": "1000/RM", "to_location": "1000/WIP-ASSY",
         "lot": "", "quantity": "200", "uom": "PCS"},
        {"GM_CODE": "04", "MOVE_TYPE": "311", "STGE_LOC": "0001", "MOVE_STLOC": "0011",
         "MATERIAL": "000000000010002001", "ENTRY_UOM": "ST"},
        id="transfer-311",
    ),
    pytest.param(
        "stock_adjustment",
        {"material": "RM-2001", "location": "1000/RM", "lot": "", "quantity": "-3",
         "uom": "PCS", "reason": "scrap"},
        {"GM_CODE": "03", "MOVE_TYPE": "551", "ENTRY_QNT": "3"},
        id="scrap-551",
    ),
]  # fmt: skip


@pytest.mark.parametrize("style", ["rfc", "mc"])
@pytest.mark.parametrize(("message_type", "payload", "expected"), MOVEMENTS)
def test_each_movement_posts_what_sap_expects_in_both_styles(
    sim: SapServer,
    engine: MappingEngine,
    style: str,
    message_type: str,
    payload: dict[str, Any],
    expected: dict[str, str],
) -> None:
    msg = message(message_type, "GM-1/1", **payload)
    document = engine.map_outbound("sap", msg)
    connector = sap(sim, style)
    result = connector.send(document, message_type=message_type, key="mes:GM-1/1")
    posted = [c for c in sim.simulator.calls if c.function == "BAPI_GOODSMVT_CREATE"]
    assert [c.style for c in posted] == [style]
    params = posted[0].params
    (item,) = params["GOODSMVT_ITEM"]
    seen = {"GM_CODE": params["GOODSMVT_CODE"]["GM_CODE"], **item}
    assert {k: seen.get(k) for k in expected} == expected
    assert params["GOODSMVT_HEADER"]["REF_DOC_NO"] == reference("mes:GM-1/1")
    (doc,) = sim.simulator.committed()
    assert result.external_ref == f"{doc['MBLNR']}/{doc['MJAHR']} XBLNR {doc['XBLNR']}"
    assert result.detail["reference"] == reference("mes:GM-1/1")
    connector.close()


def test_the_reference_is_short_deterministic_and_distinct() -> None:
    first = reference("mes:GR-2026-000123/1")
    assert first == reference("mes:GR-2026-000123/1")
    assert len(first) == 16
    assert first != reference("mes:GR-2026-000123/2")
    assert alpha("10001001") == "000000000010001001"
    assert alpha("RM-1001") == "RM-1001"


def consumption(engine: MappingEngine, key: str = "C-1/1", **changes: Any) -> dict[str, Any]:
    payload = {"order_id": "1000123", "material": "RM-1001", "location": "1000/RM",
               "lot": "", "quantity": "2.5", "uom": "KG", **changes}  # fmt: skip
    return engine.map_outbound("sap", message("material_consumption", key, **payload))


def test_an_error_row_refuses_with_every_message_and_nothing_is_committed(
    sim: SapServer, engine: MappingEngine
) -> None:
    sim.simulator.configure(refuse_negative=True, closed_period=True)
    with pytest.raises(RejectedError) as caught:
        sap(sim).send(consumption(engine), message_type="material_consumption", key="mes:C-1/1")
    text = str(caught.value)
    assert "M7 021 Deficit of SL Unrestricted-use 2.5 KGM : 000000000010001001 1000 0001" in text
    assert "M7 053 Posting only possible in periods 2026/04 and 2026/03" in text
    assert "V1 2026" in text
    assert sim.simulator.committed() == []
    assert not [c for c in sim.simulator.calls if c.function == "BAPI_TRANSACTION_COMMIT"]
    exchange = caught.value.exchange  # type: ignore[attr-defined]
    assert "<REF_DOC_NO>" in exchange["request"]  # what was sent, for the integrator
    assert "<TYPE>E</TYPE>" in exchange["response"]


def test_a_warning_row_is_kept_as_a_note_and_the_posting_goes_through(
    sim: SapServer, engine: MappingEngine
) -> None:
    sim.simulator.configure(warn_refs={reference("mes:C-1/1"): "Batch is near expiry"})
    result = sap(sim, "mc").send(
        consumption(engine), message_type="material_consumption", key="mes:C-1/1"
    )
    assert any("W M7 139 Batch is near expiry" in note for note in result.detail["notes"])
    assert len(sim.simulator.committed()) == 1


def test_an_unknown_material_is_refused_with_sap_text(sim: SapServer) -> None:
    document = {
        "GOODSMVT_CODE": {"GM_CODE": "03"},
        "GOODSMVT_HEADER": {"PSTNG_DATE": "20261129"},
        "GOODSMVT_ITEM": [{"MATERIAL": "99999999", "PLANT": "1000", "STGE_LOC": "0001",
                           "MOVE_TYPE": "551", "ENTRY_QNT": "1", "ENTRY_UOM": "ST"}],
    }  # fmt: skip
    with pytest.raises(RejectedError, match="Material 000000000099999999 not maintained"):
        sap(sim).send(document, message_type="stock_adjustment", key="mes:S-1")


def test_a_busy_server_fault_is_transient_and_keeps_the_exchange(
    sim: SapServer, engine: MappingEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_SAP_USERNAME", "RFC_HUB")
    monkeypatch.setenv("CONVEYOR_SAP_PASSWORD", "pw-4c1d9e77")
    sim.simulator.configure(fault_next=1)
    connector = sap(sim, auth="wsse")
    with pytest.raises(TransientError) as caught:
        connector.send(consumption(engine), message_type="material_consumption", key="mes:C-1/1")
    text = str(caught.value)
    assert "no free work process" in text
    exchange = caught.value.exchange  # type: ignore[attr-defined]
    assert "BAPI_GOODSMVT_CREATE" in exchange["request"]
    assert "faultstring" in exchange["response"]
    assert "pw-4c1d9e77" not in text  # the WS-Security password is redacted
    assert "UsernameToken" in exchange["request"]
    # the next attempt goes through
    connector.send(consumption(engine), message_type="material_consumption", key="mes:C-1/1")
    assert len(sim.simulator.committed()) == 1


def test_a_fault_that_is_not_busy_is_terminal(sim: SapServer, engine: MappingEngine) -> None:
    sim.simulator.configure(fault_next=1, fault_text="Function module not released for RFC")
    with pytest.raises(RejectedError, match="not released for RFC"):
        sap(sim).send(consumption(engine), message_type="material_consumption", key="mes:C-1/1")


def test_every_posting_is_committed_in_its_own_session(
    sim: SapServer, engine: MappingEngine
) -> None:
    connector = sap(sim, "mc")
    for n in range(5):
        connector.send(
            consumption(engine, f"C-{n}/1"), message_type="material_consumption", key=f"mes:C-{n}/1"
        )
    assert len(sim.simulator.committed()) == 5
    assert sim.simulator.uncommitted() == []
    calls = sim.simulator.calls
    posts = [c for c in calls if c.function == "BAPI_GOODSMVT_CREATE"]
    commits = [c for c in calls if c.function == "BAPI_TRANSACTION_COMMIT"]
    assert [c.params for c in commits] == [{"WAIT": "X"}] * 5
    assert [c.context for c in commits] == [c.context for c in posts]  # the same session
    assert len({c.context for c in posts}) == 5  # one LUW each


def test_the_wrapper_posts_and_commits_in_one_call(sim: SapServer, engine: MappingEngine) -> None:
    connector = sap(sim, commit="wrapper", post_function="Z_GOODSMVT_CREATE_COMMIT")
    connector.send(consumption(engine), message_type="material_consumption", key="mes:C-1/1")
    assert [c.function for c in sim.simulator.calls] == ["Z_GOODSMVT_CREATE_COMMIT"]
    assert len(sim.simulator.committed()) == 1


def test_lookup_finds_the_document_by_reference(sim: SapServer, engine: MappingEngine) -> None:
    connector = sap(sim)
    assert connector.lookup(message_type="material_consumption", key="mes:C-1/1") is None
    sent = connector.send(consumption(engine), message_type="material_consumption", key="mes:C-1/1")
    found = connector.lookup(message_type="material_consumption", key="mes:C-1/1")
    assert found is not None
    assert (found.external_ref, found.already_present) == (sent.external_ref, True)
    read = [c for c in sim.simulator.calls if c.function == "RFC_READ_TABLE"][-1].params
    assert read["QUERY_TABLE"] == "MKPF"
    assert read["OPTIONS"] == [{"TEXT": f"XBLNR = '{reference('mes:C-1/1')}'"}]


def test_lookup_through_a_configured_function(sim: SapServer, engine: MappingEngine) -> None:
    connector = sap(sim, "mc", lookup_function="Z_GOODSMVT_FIND_BY_REF")
    assert connector.lookup(message_type="material_consumption", key="mes:C-1/1") is None
    sent = connector.send(consumption(engine), message_type="material_consumption", key="mes:C-1/1")
    found = connector.lookup(message_type="material_consumption", key="mes:C-1/1")
    assert found is not None
    assert found.external_ref == sent.external_ref
    functions = {c.function for c in sim.simulator.calls}
    assert "Z_GOODSMVT_FIND_BY_REF" in functions
    assert "RFC_READ_TABLE" not in functions


def test_a_lost_commit_answer_posts_exactly_once_through_the_worker(
    sim: SapServer, tmp_path: Path
) -> None:
    """The commit is made and its answer dropped: the worker looks the reference up in MKPF and
    records the document instead of posting again."""
    from sqlalchemy import select

    from conveyor.config import RetryPolicy
    from conveyor.delivery.worker import Worker, WorkerOptions
    from conveyor.ledger import Ledger
    from conveyor.ledger.db import make_engine
    from conveyor.ledger.models import DeliveryRow
    from conveyor.routing import Router

    sim.simulator.configure(drop_commit_refs=[reference("mes:C-7/1")])
    db = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger(db, Router.from_config([{"type": "material_consumption", "source": "mes",
                                              "targets": ["sap"]}]))  # fmt: skip
    ledger.upgrade()
    payload = {"order_id": "1000123", "material": "RM-1001", "location": "1000/RM",
               "lot": "", "quantity": "2.5", "uom": "KG"}  # fmt: skip
    accepted = ledger.accept_batch([message("material_consumption", "C-7/1", **payload)])
    assert [r.status for r in accepted] == ["accepted"]
    connector = sap(sim, "mc")
    worker = Worker(
        db,
        targets=["sap"],
        policy=RetryPolicy(max_attempts=4, base_delay_s=0.05, max_delay_s=0.2),
        options=WorkerOptions(concurrency=1, batch_size=10, heartbeat_s=0.3, stale_after_s=5),
        connectors={"sap": connector},
        mapping=MappingEngine.load(Project.load(REPO)),
    )
    run = worker.run(until_idle=True, timeout=60)
    assert run.idle
    with db.connect() as conn:
        (row,) = conn.execute(select(DeliveryRow.__table__)).all()
    (doc,) = sim.simulator.committed(reference("mes:C-7/1"))
    assert (row.status, row.attempts) == ("delivered", 2)
    assert row.external_ref == f"{doc['MBLNR']}/{doc['MJAHR']} XBLNR {doc['XBLNR']}"
    assert len([c for c in sim.simulator.calls if c.function == "BAPI_GOODSMVT_CREATE"]) == 1
    connector.close()
    db.dispose()


def test_a_warning_row_is_kept_on_the_delivery_and_shown_by_trace(
    sim: SapServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker posts through the simulator, which answers a ``W`` row: the delivery keeps it
    as a note, and ``conveyor trace`` prints it under the delivery (``--json`` lists it)."""
    import json
    import shutil

    from click.testing import CliRunner

    from conveyor.cli import main
    from conveyor.config import RetryPolicy
    from conveyor.delivery.worker import Worker, WorkerOptions
    from conveyor.ledger import Ledger
    from conveyor.ledger.db import make_engine
    from conveyor.routing import Router

    sim.simulator.configure(warn_refs={reference("mes:C-8/1"): "Batch is near expiry"})
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db = make_engine(db_url)
    ledger = Ledger(db, Router.from_config([{"type": "material_consumption", "source": "mes",
                                              "targets": ["sap"]}]))  # fmt: skip
    ledger.upgrade()
    payload = {"order_id": "1000123", "material": "RM-1001", "location": "1000/RM",
               "lot": "", "quantity": "2.5", "uom": "KG"}  # fmt: skip
    ledger.accept_batch([message("material_consumption", "C-8/1", **payload)])
    connector = sap(sim, "mc")
    worker = Worker(
        db,
        targets=["sap"],
        policy=RetryPolicy(max_attempts=2, base_delay_s=0.05, max_delay_s=0.2),
        options=WorkerOptions(concurrency=1, batch_size=10, heartbeat_s=0.3, stale_after_s=5),
        connectors={"sap": connector},
        mapping=MappingEngine.load(Project.load(REPO)),
    )
    assert worker.run(until_idle=True, timeout=60).idle
    connector.close()
    db.dispose()
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "conveyor.yaml", project / "conveyor.yaml")
    monkeypatch.setenv("CONVEYOR_DB_URL", db_url)
    shown = CliRunner().invoke(main, ["--project", str(project), "trace", "C-8/1"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  → sap: delivered"))
    assert lines[at + 1].startswith("      note: W M7 139 Batch is near expiry")
    as_json = CliRunner().invoke(main, ["--project", str(project), "--json", "trace", "C-8/1"])
    (delivery,) = json.loads(as_json.output)["messages"][0]["deliveries"]
    assert any(note.startswith("W M7 139 Batch is near expiry") for note in delivery["notes"])


def test_snapshot_reads_mard_and_mchb_page_by_page(sim: SapServer, engine: MappingEngine) -> None:
    sim.simulator.set_stock_rows(
        [
            ("000000000010001001", "1000", "0001", "", Decimal("125.5")),
            ("000000000010002001", "1000", "0001", "B1", Decimal("300")),
            ("000000000010002001", "1000", "0001", "B2", Decimal("20")),
            ("000000000030003001", "1000", "0002", "", Decimal("7")),
        ]
    )
    connector = sap(sim, "mc", page_size=1)
    rows = list(connector.snapshot())
    by = {(r.data["MATNR"], r.data["CHARG"]): r.data for r in rows}
    assert set(by) == {
        ("000000000010001001", ""),
        ("000000000010002001", "B1"),
        ("000000000010002001", "B2"),
        ("000000000030003001", ""),
    }
    assert by[("000000000010001001", "")]["CLABS"] == "125,500"
    reads = [c.params for c in sim.simulator.calls if c.function == "RFC_READ_TABLE"]
    assert {r["QUERY_TABLE"] for r in reads} == {"MARA", "MARD", "MCHB"}
    assert any(r.get("ROWSKIPS") == "1" for r in reads)  # paged
    mapped = engine.map_snapshot_row("sap", by[("000000000010002001", "B1")])
    assert (mapped.material, mapped.location, mapped.lot, mapped.quantity, mapped.uom) == (
        "RM-2001",
        "1000/RM",
        "B1",
        Decimal("300"),
        "PCS",
    )
    plain = engine.map_snapshot_row("sap", by[("000000000010001001", "")])
    assert (plain.quantity, plain.uom) == (Decimal("125.5"), "KG")


def test_settings_are_validated_and_the_entry_points_are_registered(sim: SapServer) -> None:
    assert registry.load("sap") is SapConnector
    assert registry.load("soap").kind == "soap"
    with pytest.raises(Exception, match="secret"):
        SapConnector("sap", {"wsdl": "x.wsdl", "password": "no"})
    connector = sap(sim)
    assert connector.check() == "RFC_READ_TABLE answered"


def test_the_wsdl_is_parsed_once_per_process_and_cached_on_disk(
    sim: SapServer, tmp_path: Path
) -> None:
    forget_wsdls()
    wsdl_gets = lambda: sim.simulator.wsdl_gets  # noqa: E731
    sap(sim, tmp=tmp_path).check()
    sap(sim, tmp=tmp_path).check()
    assert wsdl_gets() == 1  # the second connector reused the parsed WSDL
    forget_wsdls()
    sap(sim, tmp=tmp_path).check()
    assert wsdl_gets() == 1  # a new parse read it from the disk cache
    assert (tmp_path / "wsdl.db").is_file()


# ---- conformance


class SapHarness(Harness):
    """The SAP connector against the SAP simulator (mc-style, WS-Security). The suite posts
    generic documents; ``adapt`` shapes them as the outbound mapping would."""

    system: ClassVar[str] = "sap"
    secrets: ClassVar[Mapping[str, str]] = {
        "USERNAME": "RFC_HUB",
        "PASSWORD": "conformance-pw-51e2b7",
    }
    rejection_text = "Material blocked for posting"

    def start(self) -> None:
        self.server = serve()

    def stop(self) -> None:
        self.server.stop()

    def connector(self) -> SapConnector:
        return _Conformant(
            self.system,
            {"wsdl": self.server.url + STYLES["mc"]["wsdl"], "timeout_s": 2, "auth": "basic"},
        )

    def misbehave(
        self,
        *,
        reject: Collection[str] = (),
        fail_first: int = 0,
        drop_answer: Collection[str] = (),
        echo_secrets: bool = False,
    ) -> None:
        self.server.simulator.configure(
            reject_refs={reference(k): "Material blocked for posting" for k in reject},
            fault_next=fail_first,
            drop_commit_refs=[reference(k) for k in drop_answer],
            echo_auth=echo_secrets,
        )

    def posts(self, key: str) -> int:
        return len(self.server.simulator.committed(reference(key)))


class _Conformant(SapConnector):
    """The SAP connector with the suite's generic documents shaped as BAPI parameters."""

    def prepare(self, document: Mapping[str, Any], key: str) -> dict[str, Any]:
        payload = document.get("payload", document)
        bapi = {
            "GOODSMVT_CODE": {"GM_CODE": "02"},
            "GOODSMVT_HEADER": {"PSTNG_DATE": "20261129"},
            "GOODSMVT_ITEM": [
                {"MATERIAL": "50005001", "PLANT": "1000", "STGE_LOC": "0020",
                 "MOVE_TYPE": "101", "MVT_IND": "F", "ENTRY_QNT": payload["quantity"],
                 "ENTRY_UOM": "ST", "ORDERID": payload["order_id"][-12:]}
            ],
        }  # fmt: skip
        return super().prepare(bapi, key)


TestSapConformance = conformance_tests(SapHarness)


def test_every_document_the_worker_delivers_is_committed_in_sap(
    sim: SapServer, tmp_path: Path
) -> None:
    """A project whose system ``sap`` uses this connector; three worker threads, each with its
    own connector (stateful sessions), deliver every movement kind: each delivered row names a
    committed material document and nothing is left uncommitted."""
    import shutil

    from sqlalchemy import select

    from conveyor.config import RetryPolicy
    from conveyor.delivery.worker import Worker, WorkerOptions
    from conveyor.ledger import Ledger
    from conveyor.ledger.db import make_engine
    from conveyor.ledger.models import DeliveryRow
    from conveyor.routing import Router

    for folder in ("mappings", "master_data"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    (tmp_path / "conveyor.yaml").write_text(
        "systems:\n"
        "  sap:\n    connector: sap\n"
        f"    settings: {{wsdl: '{sim.url}{STYLES['mc']['wsdl']}', timeout_s: 5,"
        f" wsdl_cache: '{tmp_path / 'wsdl.db'}'}}\n"
        "  mes:\n    connector: fake\n"
    )
    project = Project.load(tmp_path)
    types = ["material_consumption", "production_output", "stock_transfer", "stock_adjustment"]
    router = Router.from_config([{"type": types, "source": "mes", "targets": ["sap"]}])
    db = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger(db, router)
    ledger.upgrade()
    payloads = [p.values for p in MOVEMENTS]
    messages: list[dict[str, Any]] = []
    for n, (message_type, payload, _expected) in enumerate(payloads * 2):
        if "reversal_of" in payload:  # undoes exactly the receipt just before it
            payload = {**messages[-1]["payload"], "reversal_of": f"W-{n - 1}/1"}
        messages.append(message(message_type, f"W-{n}/1", **payload))
    accepted = ledger.accept_batch(messages)
    assert {r.status for r in accepted} == {"accepted"}, [r.error for r in accepted]
    worker = Worker(
        db,
        project=project,
        targets=["sap"],
        policy=RetryPolicy(max_attempts=3, base_delay_s=0.05, max_delay_s=0.2),
        options=WorkerOptions(concurrency=3, batch_size=4, heartbeat_s=0.3, stale_after_s=5),
    )
    assert worker.run(until_idle=True, timeout=60).idle
    with db.connect() as conn:
        rows = conn.execute(select(DeliveryRow.__table__)).all()
    committed = {f"{d['MBLNR']}/{d['MJAHR']} XBLNR {d['XBLNR']}" for d in sim.simulator.committed()}
    assert [r.status for r in rows] == ["delivered"] * len(messages)
    assert {r.external_ref for r in rows} == committed
    assert len(committed) == len(messages)
    assert sim.simulator.uncommitted() == []
    db.dispose()


def test_a_refused_posting_parks_with_what_was_sent_shown_by_trace(
    sim: SapServer, tmp_path: Path
) -> None:
    from conveyor.config import RetryPolicy
    from conveyor.delivery.worker import Worker, WorkerOptions
    from conveyor.ledger import Ledger
    from conveyor.ledger.db import make_engine
    from conveyor.routing import Router

    sim.simulator.configure(closed_period=True)
    db = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger(db, Router.from_config([{"type": "material_consumption", "source": "mes",
                                              "targets": ["sap"]}]))  # fmt: skip
    ledger.upgrade()
    payload = {"order_id": "1000123", "material": "RM-1001", "location": "1000/RM",
               "lot": "", "quantity": "2.5", "uom": "KG"}  # fmt: skip
    ledger.accept_batch([message("material_consumption", "C-9/1", **payload)])
    connector = sap(sim)
    Worker(
        db,
        targets=["sap"],
        policy=RetryPolicy(max_attempts=2, base_delay_s=0.05, max_delay_s=0.1),
        options=WorkerOptions(concurrency=1, batch_size=1, heartbeat_s=0.3, stale_after_s=5),
        connectors={"sap": connector},
        mapping=MappingEngine.load(Project.load(REPO)),
    ).run(until_idle=True, timeout=30)
    (delivery,) = [d for m in ledger.trace("C-9/1")["messages"] for d in m["deliveries"]]
    assert delivery["status"] == "parked"
    reason = delivery["last_error"]
    assert "M7 053 Posting only possible in periods 2026/04 and 2026/03" in reason
    assert f"<REF_DOC_NO>{reference('mes:C-9/1')}</REF_DOC_NO>" in reason  # the request
    assert "<TYPE>E</TYPE>" in reason  # the answer
    connector.close()
    db.dispose()


def test_a_lost_posting_answer_is_ambiguous_and_never_committed(
    sim: SapServer, engine: MappingEngine
) -> None:
    """The answer to the posting itself is lost: no commit was sent, so the lookup finds nothing
    and posting again makes exactly one document."""
    from conveyor.errors import AmbiguousDeliveryError

    connector = sap(sim)
    connector.operation_name("BAPI_GOODSMVT_CREATE")  # the WSDL is read before the fault
    sim.simulator.faults.drop_next = 1
    with pytest.raises(AmbiguousDeliveryError):
        connector.send(consumption(engine), message_type="material_consumption", key="mes:C-1/1")
    assert connector.lookup(message_type="material_consumption", key="mes:C-1/1") is None
    connector.send(consumption(engine), message_type="material_consumption", key="mes:C-1/1")
    assert len(sim.simulator.committed(reference("mes:C-1/1"))) == 1


def test_a_client_certificate_is_presented_over_tls(tmp_path: Path) -> None:
    """The simulator behind TLS that requires a client certificate: the connector with
    ``client_cert``/``client_key`` (and the server's CA in ``ca_bundle``) gets in; without the
    certificate the handshake fails and nothing was sent (transient)."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cert)
    from simulators.sap import SapSimulator

    server = SapServer(("127.0.0.1", 0), SapSimulator())
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.url = server.url.replace("http://", "https://")
    server.start()
    try:
        settings = {"wsdl": f"{server.url}{STYLES['rfc']['wsdl']}", "ca_bundle": str(cert),
                    "wsdl_cache": str(tmp_path / "wsdl.db"), "timeout_s": 5}  # fmt: skip
        with pytest.raises(TransientError, match="not sent"):
            SapConnector("sap", settings).check()
        assert server.simulator.calls == []
        forget_wsdls()
        trusted = SapConnector(
            "sap", {**settings, "client_cert": str(cert), "client_key": str(key)}
        )
        assert trusted.check() == "RFC_READ_TABLE answered"
        assert [c.function for c in server.simulator.calls] == ["RFC_READ_TABLE"]
        trusted.close()
    finally:
        server.stop()
