"""Reading system files: encodings (UTF-8, BOM, GBK), dialects, line numbers, JSON lines."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from conveyor.errors import UnreadableFileError, UnreadableRecordError
from conveyor.limits import Limits
from conveyor.mapping.readers import (
    SAMPLE_BYTES,
    CsvOptions,
    detect_encoding,
    read_csv,
    read_raw,
)

from .conftest import DATA


def test_gbk_export_with_chinese_headers() -> None:
    rows = list(read_raw(DATA / "yonyou_materialout_gbk.csv"))
    assert [r.line for r in rows] == [2, 3, 4, 5]
    assert rows[0].data["存货编码"] == "0101001"
    assert rows[0].data["数量"] == "1,250.50"
    assert rows[1].data["数量"] == "２４０"
    assert rows[1].data["计量单位"] == "个"


def test_short_gbk_file_is_not_read_as_korean() -> None:
    rows = list(read_raw(DATA / "kingdee_stock_gbk.csv"))
    assert list(rows[0].data)[:2] == ["物料编码", "仓库编码"]


def test_a_long_gbk_export_repeating_few_chinese_words_is_not_read_as_cyrillic() -> None:
    # mostly ASCII, one unit word per row: charset-normalizer alone guesses a Cyrillic code page
    header = "任务号,物料编码,源库位,目标库位,批次,数量,单位,完成时间\n"
    row = "MV{n:08d},SKU-1001,WH1-RM,WH1-L1,L2611-07,{n}.5,克,2026-11-21 08:00:00\n"
    sample = (header + "".join(row.format(n=n) for n in range(3000))).encode("gbk")
    assert detect_encoding(sample) == "gb18030"
    # Cyrillic text is all high bytes too, but its odd-length words break the pairs
    assert detect_encoding(("Привет мир, как дела у вас сегодня?" * 3).encode("cp1251")) == "cp1251"


def test_bom_from_excel(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(codecs.BOM_UTF8 + "物料,数量\nA,1\n".encode())
    assert detect_encoding(path.read_bytes()) == "utf-8-sig"
    rows = list(read_csv(path))
    assert rows[0].data == {"物料": "A", "数量": "1"}


def test_semicolon_dialect_is_sniffed_and_lines_count_multiline_cells(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('a;b\n1;"two\nlines"\n\n3;4\n', encoding="utf-8")
    rows = list(read_csv(path))
    assert [(r.line, r.data) for r in rows] == [
        (2, {"a": "1", "b": "two\nlines"}),
        (5, {"a": "3", "b": "4"}),
    ]


def test_declared_delimiter_and_extra_cells_kept(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("a|b\n1|2|3\n", encoding="utf-8")
    rows = list(read_csv(path, CsvOptions(delimiter="|")))
    assert rows[0].data == {"a": "1", "b": "2", "_extra": ["3"]}


def test_declared_gbk(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes("名称,数\n齿轮,1\n".encode("gbk"))
    rows = list(read_csv(path, CsvOptions(encoding="GBK")))
    assert rows[0].data == {"名称": "齿轮", "数": "1"}


def test_json_lines_keep_bad_lines_as_errors() -> None:
    rows = list(read_raw(DATA / "wms_moves.jsonl"))
    assert [r.line for r in rows] == [1, 2, 3, 4]
    assert isinstance(rows[3].data, ValueError)
    assert rows[0].data["taskId"] == "T-9001"


# ---------------------------------------------------------------------- hostile files
HEADER = "doc,qty,note\n"


def test_a_file_that_turns_gbk_after_a_megabyte_parks_those_rows_with_their_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mixed.csv"
    first = HEADER + "".join(f"U{i},1,{'原料' * 400}\n" for i in range(1, 501))
    assert len(first.encode()) > SAMPLE_BYTES
    path.write_bytes(first.encode() + "G1,2,批次\nG2,3,批次\n".encode("gbk") + b"T1,4,tail\n")
    rows = list(read_csv(path))
    assert len(rows) == 503
    assert all(isinstance(r.data, dict) for r in rows[:500])
    bad = [r for r in rows if isinstance(r.data, UnreadableRecordError)]
    assert [r.line for r in bad] == [502, 503]
    assert "bytes 0xc5 0xfa 0xb4 0xce at column 6 are not utf-8" in str(bad[0].data)
    assert bad[0].data.text is not None
    assert bad[0].data.text.startswith("G1,2,")
    assert rows[-1].data == {"doc": "T1", "qty": "4", "note": "tail"}


def test_a_utf8_file_with_one_broken_row_stays_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    rows_text = "".join(f"A{i},1,批次{i}\n" for i in range(20))
    path.write_bytes((HEADER + rows_text).encode() + "B,2,批次\n".encode("gbk"))
    assert detect_encoding(path.read_bytes()) == "utf-8"
    rows = list(read_csv(path))
    assert rows[0].data["note"] == "批次0"
    assert isinstance(rows[-1].data, UnreadableRecordError)
    assert rows[-1].line == 22


def test_a_low_confidence_guess_is_refused_naming_the_file_and_encodings(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_bytes("a,b\nA0,仓库\n".encode("gbk")[:-1] + b"\x9c\n")
    with pytest.raises(UnreadableFileError) as info:
        list(read_csv(path))
    message = str(info.value)
    assert str(path) in message
    assert "tried utf-8, gb18030" in message
    assert "low confidence" in message or "no encoding" in message
    assert "csv: {encoding" in message


def test_western_european_code_pages_are_still_read(tmp_path: Path) -> None:
    path = tmp_path / "de.csv"
    text = "Material;Lager;Menge\nSchraube;Außenlager Süd;5\nMutter;Großlager;7\n"
    path.write_bytes(text.encode("cp1252"))
    rows = list(read_csv(path))
    assert rows[0].data["Lager"] == "Außenlager Süd"


def test_a_cell_over_the_field_limit_parks_its_row_and_the_file_reads_on(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text(HEADER + "A,1,x\nB,2," + "y" * 300_000 + "\nC,3,z\n", encoding="utf-8")
    rows = list(read_csv(path))
    assert [r.line for r in rows] == [2, 3, 4]
    assert len(rows[1].data["note"]) == 300_000  # over the csv module's 128 KiB, within 1 MiB
    rows = list(read_csv(path, limits=Limits(max_csv_field=1000)))
    assert isinstance(rows[1].data, UnreadableRecordError)
    assert "a cell is over the 1,000-character limit" in str(rows[1].data)
    assert rows[2].data == {"doc": "C", "qty": "3", "note": "z"}
