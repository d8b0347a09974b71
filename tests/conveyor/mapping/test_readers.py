"""Reading system files: encodings (UTF-8, BOM, GBK), dialects, line numbers, JSON lines."""

from __future__ import annotations

import codecs
from pathlib import Path

from conveyor.mapping.readers import CsvOptions, detect_encoding, read_csv, read_raw

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
