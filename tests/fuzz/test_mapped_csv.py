"""Fuzzing mapped CSV rows: a CSV file of the MES read with its mapping's options
(``mapping.readers.read_csv``) and every row mapped (``MappingEngine.map_inbound``): each row is
read or refused with its line and reason, and mapping refuses only with the project's errors."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conveyor.config import Project
from conveyor.errors import RecordError, UnreadableRecordError
from conveyor.mapping import MappingEngine
from conveyor.mapping.readers import read_csv
from tests.fuzz.harness import FUZZ, reason_of, run, target
from tests.fuzz.strategies import TRICKY_TEXT, mutated, raw_bytes

REPO = Path(__file__).resolve().parents[2]
SAMPLE = (REPO / "samples" / "mes_consumption.csv").read_text(encoding="utf-8")
HEADER = SAMPLE.splitlines()[0].split(",")
ROW = SAMPLE.splitlines()[1].split(",")
TYPES = ["material_consumption", "production_output", "stock_adjustment"]


@pytest.fixture(scope="module")
def engine() -> MappingEngine:
    return MappingEngine.load(Project.load(REPO))


cells = st.one_of(st.sampled_from(TRICKY_TEXT), st.text(max_size=12), st.sampled_from(ROW))


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A valid-ish MES CSV (the sample's header, rows with some cells replaced), mutated or
    not, in UTF-8 or GBK — or any bytes."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(raw_bytes)
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        rows.append([draw(cells) if draw(st.integers(0, 3)) == 0 else c for c in ROW])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([HEADER, *rows])
    text = out.getvalue()
    if kind == 1:
        return draw(mutated(text))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "gbk"]))
    return text.encode(encoding, "replace")


@FUZZ
@given(csv_files(), st.sampled_from(TYPES))
@example(b"doc_no,qty\n1,\xff\xfe\n", "material_consumption")
@example(b'doc_no,qty\n"1,2\n', "material_consumption")
@example(b"\x00\x00\x00", "material_consumption")
def test_mapped_csv_rows(
    engine: MappingEngine, tmp_path_factory: Any, data: bytes, message_type: str
) -> None:
    path = Path(tmp_path_factory.mktemp("csv")) / "in.csv"
    path.write_bytes(data)
    options = engine.mapping("mes").csv
    records = run("csv read", lambda: list(read_csv(path, options)))
    for raw in records or []:
        assert raw.line is not None
        assert raw.line >= 1
        if isinstance(raw.data, Exception):
            assert isinstance(raw.data, UnreadableRecordError)
            assert reason_of(raw.data)
            continue
        with target("csv mapped row"):
            _map(engine, message_type, raw.data, raw.line)


def _map(engine: MappingEngine, message_type: str, record: Any, line: int | None) -> None:
    """Map one row; a refusal must say why (at least one problem)."""
    try:
        engine.map_inbound("mes", message_type, record, file="in.csv", line=line)
    except RecordError as exc:
        if not exc.problems:
            raise AssertionError("a refused row says nothing") from exc
        raise
