"""Source: canonical stock_snapshot messages in JSON or JSON lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from conveyor.messages import new_message
from conveyor.reconcile.reference import NoReference
from conveyor.reconcile.sources import (
    CanonicalJsonSnapshot,
    open_snapshot_file,
)

from .helpers import rows_of


def _message(rows: list[dict[str, Any]], as_of: str = "2026-11-21T18:00:00+08:00") -> str:
    message = new_message("stock_snapshot", "mes", "SNAP-1", {"as_of": as_of, "rows": rows})
    return json.dumps(message)


def test_canonical_json_message_of_any_system_name(tmp_path: Path) -> None:
    path = tmp_path / "mes.json"
    path.write_text(
        _message(
            [
                {"material": "M1", "location": "L1", "lot": "A", "quantity": "2.5", "uom": "KG"},
                {"material": "M2", "location": "L1", "quantity": 3, "uom": "PCS"},
                {"material": "M3", "location": "L1", "quantity": "x", "uom": "PCS"},
            ]
        ),
        encoding="utf-8",
    )
    snapshot = open_snapshot_file("line_scanner", path, reference=NoReference())
    assert isinstance(snapshot, CanonicalJsonSnapshot)
    assert rows_of(snapshot) == [
        ("M1", "L1", "A", Decimal("2.5"), "KG"),
        ("M2", "L1", "", Decimal(3), "PCS"),
    ]
    assert snapshot.as_of == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert snapshot.rows == 3
    (bad,) = snapshot.unmapped
    assert bad.problems[0]["field"] == "$.payload.rows[2].quantity"


def test_canonical_json_lines_of_several_messages(tmp_path: Path) -> None:
    path = tmp_path / "mes.jsonl"
    first = _message([{"material": "M1", "location": "L1", "quantity": "1", "uom": "KG"}])
    second = _message(
        [{"material": "M2", "location": "L1", "quantity": "2", "uom": "KG"}],
        as_of="2026-11-21T19:00:00+08:00",
    )
    path.write_text(first + "\n" + second + "\nnot json\n", encoding="utf-8")
    snapshot = open_snapshot_file("mes", path, reference=NoReference())
    assert [r[0] for r in rows_of(snapshot)] == ["M1", "M2"]
    assert snapshot.as_of == datetime(2026, 11, 21, 11, tzinfo=UTC)  # the latest
    assert [(u.line, u.stage) for u in snapshot.unmapped] == [(3, "parse")]


def test_canonical_json_with_a_bad_envelope_lists_all_its_rows(tmp_path: Path) -> None:
    message = json.loads(
        _message([{"material": "M1", "location": "L1", "quantity": "1", "uom": "KG"}])
    )
    message["source"] = "Not A Name"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(message), encoding="utf-8")
    snapshot = open_snapshot_file("mes", path, reference=NoReference())
    assert rows_of(snapshot) == []
    assert snapshot.rows == 1
    assert len(snapshot.unmapped) == 2  # the envelope and its one row
