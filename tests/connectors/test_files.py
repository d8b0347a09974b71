"""The ``files`` connector: file drops taken in through the inbound driver (bad rows parked with
their lines, files archived with a result file, re-drops taken in once), names and links that
would leave the folders refused, and the outbound writer (GBK, column order, no overwrite,
lookup after a crash)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from connectors.files import FilesConnector
from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.mapping import MappingEngine
from conveyor.runtime import registry
from conveyor.runtime.inbound import ReceiveResult, receive_units
from tests.support.file_drop import move_rows, write_moves, write_project


def _setup(tmp_path: Path, engine: Engine, **settings: Any) -> tuple[Project, Ledger, Any]:
    root = tmp_path / "drop"
    options = {"root": str(root), "patterns": {"moves_*.csv": "stock_transfer"}, **settings}
    project = Project.load(write_project(tmp_path / "plant", options))
    ledger = Ledger(engine, project.router)
    return project, ledger, root


def _receive(project: Project, ledger: Ledger, batch_size: int = 1000) -> ReceiveResult:
    connector = registry.create(project.system("wh"))
    with connector:
        return receive_units(ledger, MappingEngine.load(project), connector, batch_size=batch_size)


def _old(path: Path) -> Path:
    """Make a dropped file look untouched for a while (stable)."""
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def _stored(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(
                text("SELECT count(*), count(DISTINCT key) FROM messages WHERE source = 'wh'")
            ).one()
        )


def test_bad_rows_are_parked_with_lines_and_the_file_archived_with_its_result(
    tmp_path: Path, engine: Engine
) -> None:
    project, ledger, root = _setup(tmp_path, engine)
    bad = [2, 777, 5000, 9999, 10000]
    (root / "inbox").mkdir(parents=True)
    _old(write_moves(root / "inbox" / "moves_1121.csv", move_rows(10_000, bad)))

    result = _receive(project, ledger)

    assert (result.units, result.acknowledged, result.failed) == (1, 1, 0)
    assert result.records == 10_000
    assert result.counts["accepted"] == 9_995
    assert result.counts["parked"] == 5
    assert _stored(engine) == (9_995, 9_995)
    parked = ledger.parked_records(system="wh")
    assert sorted((p.file, p.line) for p in parked) == [("moves_1121.csv", n + 1) for n in bad]
    assert all("SKU-UNKNOWN" in p.reason for p in parked)
    assert not any((root / "inbox").iterdir())
    assert not any((root / "processing").iterdir())
    assert (root / "archive" / "moves_1121.csv").is_file()
    report = json.loads((root / "archive" / "moves_1121.csv.result.json").read_text("utf-8"))
    assert (report["records"], report["accepted"], report["parked"]) == (10_000, 9_995, 5)
    assert [p["line"] for p in report["problems"]] == [n + 1 for n in bad]
    assert "parked records" in report["parked_in"]

    # the same file dropped again: taken in already, archived unread, nothing new
    _old(write_moves(root / "inbox" / "moves_1121.csv", move_rows(10_000, bad)))
    again = _receive(project, ledger)
    assert (again.units, again.already_taken, again.records) == (1, 1, 0)
    assert again.counts == {}
    assert _stored(engine) == (9_995, 9_995)
    assert len(ledger.parked_records(system="wh")) == 5
    second = json.loads((root / "archive" / "moves_1121.csv.1.result.json").read_text("utf-8"))
    assert second["already_taken_in"] is True


def test_a_file_that_cannot_be_read_goes_to_error_with_the_reason(
    tmp_path: Path, sqlite_engine: Engine
) -> None:
    project, ledger, root = _setup(tmp_path, sqlite_engine)
    (root / "inbox").mkdir(parents=True)
    # bytes no encoding reads with confidence
    (root / "inbox" / "moves_bad.csv").write_bytes(bytes(range(128, 256)) * 40)
    _old(root / "inbox" / "moves_bad.csv")

    result = _receive(project, ledger)

    assert (result.units, result.failed, result.acknowledged) == (1, 1, 0)
    assert (root / "error" / "moves_bad.csv").is_file()
    reason = (root / "error" / "moves_bad.csv.error.txt").read_text("utf-8")
    assert "cannot tell its encoding" in reason
    assert [p.file for p in ledger.parked_records(system="wh")] == ["moves_bad.csv"]


def test_files_still_being_written_wait(tmp_path: Path, sqlite_engine: Engine) -> None:
    project, ledger, root = _setup(tmp_path, sqlite_engine, stable_seconds=30)
    (root / "inbox").mkdir(parents=True)
    write_moves(root / "inbox" / "moves_fresh.csv", move_rows(3))
    connector = registry.create(project.system("wh"))
    result = receive_units(ledger, MappingEngine.load(project), connector)
    assert result.units == 0
    assert connector.pending() == 1  # type: ignore[attr-defined]
    assert (root / "inbox" / "moves_fresh.csv").is_file()


def test_a_done_marker_makes_a_file_ready(tmp_path: Path, sqlite_engine: Engine) -> None:
    project, ledger, root = _setup(tmp_path, sqlite_engine, ready="marker")
    (root / "inbox").mkdir(parents=True)
    write_moves(root / "inbox" / "moves_1.csv", move_rows(3))
    assert _receive(project, ledger).units == 0  # no marker yet, however old the file
    (root / "inbox" / "moves_1.csv.done").write_bytes(b"")
    result = _receive(project, ledger)
    assert (result.units, result.counts["accepted"]) == (1, 3)
    assert not (root / "inbox" / "moves_1.csv.done").exists()


def test_a_pass_interrupted_mid_file_resumes_after_the_last_committed_batch(
    tmp_path: Path, engine: Engine
) -> None:
    project, ledger, root = _setup(tmp_path, engine, patterns={"moves_*.csv": "stock_transfer"})
    (root / "inbox").mkdir(parents=True)
    _old(write_moves(root / "inbox" / "moves_1.csv", move_rows(250, bad=[30])))
    mapping = MappingEngine.load(project)

    class Interrupted(FilesConnector):
        """Its reader stops the process after 120 rows, as a kill would (nothing is cleaned)."""

        def _records(self, *args: Any) -> Any:
            for n, raw in enumerate(super()._records(*args), start=1):
                if n > 120:
                    raise KeyboardInterrupt
                yield raw

    settings = project.system("wh").settings
    with pytest.raises(KeyboardInterrupt):
        receive_units(ledger, mapping, Interrupted("wh", settings), batch_size=50)
    assert _stored(engine) == (99, 99)  # two batches of 50 committed, one of them parked
    assert (root / "processing" / "moves_1.csv").is_file()  # left where the crash found it

    result = _receive(project, ledger, batch_size=50)

    assert (result.units, result.acknowledged, result.resumed) == (1, 1, 100)
    assert (result.records, result.counts["accepted"], result.counts["duplicate"]) == (150, 150, 0)
    assert _stored(engine) == (249, 249)
    assert [(p.file, p.line) for p in ledger.parked_records(system="wh")] == [("moves_1.csv", 31)]
    report = json.loads((root / "archive" / "moves_1.csv.result.json").read_text("utf-8"))
    assert (report["resumed"], report["resumed_after"], report["accepted"]) == (100, "100", 150)


def test_names_that_leave_the_folder_are_refused(tmp_path: Path, sqlite_engine: Engine) -> None:
    project, _ledger, root = _setup(tmp_path, sqlite_engine)
    (root / "inbox").mkdir(parents=True)
    outside = write_moves(tmp_path / "moves_outside.csv", move_rows(2))
    connector = registry.create(project.system("wh"))
    assert isinstance(connector, FilesConnector)
    for name in ("../moves_outside.csv", "/etc/passwd", "..", "a/../../moves_outside.csv"):
        with pytest.raises(ValueError, match="refused"):
            connector.claim(name)
    assert outside.is_file()
    assert not (root / "processing").exists() or not any((root / "processing").iterdir())


def test_a_link_out_of_the_folder_is_not_followed(tmp_path: Path, sqlite_engine: Engine) -> None:
    project, ledger, root = _setup(tmp_path, sqlite_engine)
    (root / "inbox").mkdir(parents=True)
    outside = _old(write_moves(tmp_path / "secret_moves.csv", move_rows(5)))
    (root / "inbox" / "moves_link.csv").symlink_to(outside)

    result = _receive(project, ledger)

    assert result.units == 0
    assert _stored(sqlite_engine) == (0, 0)
    assert outside.is_file()  # the target stays where it was, unread
    moved = root / "error" / "moves_link.csv"
    assert moved.is_symlink()  # the link itself went to error/, not the file it points at
    assert "symbolic link" in (root / "error" / "moves_link.csv.error.txt").read_text("utf-8")
    connector = registry.create(project.system("wh"))
    (root / "inbox" / "moves_link2.csv").symlink_to(outside)
    with pytest.raises(ValueError, match="not a regular file"):
        connector.claim("moves_link2.csv")


def test_a_format_name_as_pattern_value_reads_canonical_json_lines(
    tmp_path: Path, sqlite_engine: Engine
) -> None:
    from conveyor.messages import new_message

    project, ledger, root = _setup(tmp_path, sqlite_engine, patterns={"events_*.jsonl": "jsonl"})
    (root / "inbox").mkdir(parents=True)
    payload = {
        "material": "RM-1001",
        "location": "1000/RM",
        "lot": "",
        "quantity": "1.5",
        "uom": "KG",
        "reason": "count_gain",
    }
    lines = [
        json.dumps(new_message("stock_adjustment", "wh", f"EV-{n}", payload), default=str)
        for n in range(3)
    ]
    (root / "inbox" / "events_1.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    _old(root / "inbox" / "events_1.jsonl")
    result = _receive(project, ledger)
    assert result.counts["accepted"] == 3


# ---------------------------------------------------------------------- outbound


def _writer(tmp_path: Path, **settings: Any) -> FilesConnector:
    return FilesConnector(
        "wh",
        {"outbox": str(tmp_path / "staging"), "encoding": "gbk", **settings},
    )


def test_outbound_writes_a_gbk_csv_in_the_mappings_column_order(tmp_path: Path) -> None:
    project = Project.load(write_project(tmp_path / "plant", {"outbox": str(tmp_path / "o")}))
    from conveyor.messages import new_message

    message = new_message(
        "stock_transfer",
        "mes",
        "REQ-1/1",
        {
            "material": "RM-1001",
            "from_location": "1000/RM",
            "to_location": "1000/WIP-MOLD",
            "lot": "",
            "quantity": "12.5",
            "uom": "KG",
        },
    )
    document = MappingEngine.load(project).map_outbound("wh", message)
    connector = _writer(tmp_path)
    sent = connector.send(document, message_type="stock_transfer", key="mes:REQ-1/1")

    assert not sent.already_present
    assert sent.external_ref == "stock_transfer_mes_REQ-1_1.csv"
    written = tmp_path / "staging" / sent.external_ref
    text_ = written.read_bytes().decode("gbk")
    assert text_.splitlines() == [
        "任务号,物料编码,数量,源库位,目标库位",
        "REQ-1/1,SKU-1001,12.5,WH1-RM,WH1-L1",
    ]
    # nothing but the finished file is visible to the target (the journal is hidden)
    assert sorted(p.name for p in written.parent.iterdir()) == [".conveyor-sent", written.name]


def test_outbound_never_overwrites_and_a_repeat_after_a_crash_is_found(tmp_path: Path) -> None:
    connector = _writer(tmp_path, file_name="{message_type}.csv")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "material_request.csv").write_text("someone else's file", "utf-8")

    first = connector.send({"物料": "颗粒"}, message_type="material_request", key="k/1")
    second = connector.send({"物料": "螺丝"}, message_type="material_request", key="k/2")
    assert (first.external_ref, second.external_ref) == (
        "material_request_2.csv",
        "material_request_3.csv",
    )
    assert (staging / "material_request.csv").read_text("utf-8") == "someone else's file"

    # the delivery is retried after a crash: found, not written again
    assert connector.lookup(message_type="material_request", key="k/1") is not None
    again = connector.send({"物料": "颗粒"}, message_type="material_request", key="k/1")
    assert (again.external_ref, again.already_present) == ("material_request_2.csv", True)
    assert len(list(staging.glob("*.csv"))) == 3
    assert connector.lookup(message_type="material_request", key="k/9") is None


def test_a_crash_between_the_rename_and_the_record_is_found_by_name(tmp_path: Path) -> None:
    connector = _writer(tmp_path)
    sent = connector.send({"a": "1"}, message_type="material_request", key="mes:R-7/1")
    journal = tmp_path / "staging" / ".conveyor-sent"
    for entry in journal.iterdir():
        entry.unlink()  # as if the process died right after the link
    found = connector.lookup(message_type="material_request", key="mes:R-7/1")
    assert found is not None
    assert found.external_ref == sent.external_ref
    again = connector.send({"a": "1"}, message_type="material_request", key="mes:R-7/1")
    assert again.already_present
    assert len(list((tmp_path / "staging").glob("*.csv"))) == 1


def test_outbound_names_are_sanitised_into_the_folder(tmp_path: Path) -> None:
    connector = _writer(tmp_path)
    sent = connector.send({"a": "1"}, message_type="x", key="../../etc/passwd")
    assert sent.external_ref is not None
    assert "/" not in sent.external_ref
    assert not sent.external_ref.startswith(".")
    assert (tmp_path / "staging" / sent.external_ref).is_file()


def test_a_character_the_target_encoding_lacks_refuses_the_document(tmp_path: Path) -> None:
    from conveyor.errors import RejectedError

    connector = _writer(tmp_path)
    with pytest.raises(RejectedError, match="gbk"):
        connector.send({"a": "😀"}, message_type="x", key="k")
    assert not list((tmp_path / "staging").glob("*.csv"))
