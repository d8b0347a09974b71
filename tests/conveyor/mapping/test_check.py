"""``mappings check``: every typo comes back as ``file:line: message``, never as a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import Project
from conveyor.errors import ConfigError
from conveyor.mapping import MappingEngine
from conveyor.mapping.check import check_project

from .conftest import REPO, edit

GOOD = """\
# yaml-language-server: $schema=../schemas/mapping.schema.json
system: mes
messages:
  material_consumption:
    in:
      key: [doc_no, line_no]
      occurred_at: {path: posted_at, parse: {date: "%Y/%m/%d %H:%M"}}
      fields:
        order_id: order_no
        material: {path: part_no, lookup: {table: materials, from: mes_part, to: material}}
        location: {path: area, lookup: {table: locations, from: mes_area, to: location}}
        quantity: {path: qty, parse: decimal}
        uom: unit
      convert_to_base: true
"""


def write(project: Project, text: str, name: str = "line.yaml") -> Path:
    path = project.mappings_dir / name
    path.write_text(text, encoding="utf-8")
    return path


def messages(project: Project) -> list[str]:
    return [str(p) for p in check_project(project).problems]


def test_shipped_project_is_clean() -> None:
    result = check_project(Project.load(REPO))
    assert result.problems == []
    assert "mappings/sap.yaml" in result.mapping_files
    assert "master_data/materials.csv" in result.tables


def test_small_mapping_is_clean(project: Project) -> None:
    write(project, GOOD)
    assert messages(project) == []


def test_unknown_table(project: Project) -> None:
    write(project, GOOD.replace("table: materials", "table: materails"))
    assert messages(project) == [
        "mappings/line.yaml:10: messages.material_consumption.in.fields.material.lookup.table: "
        "unknown table 'materails' (no master_data/materails.csv); did you mean 'materials'?"
    ]


def test_unknown_column(project: Project) -> None:
    write(project, GOOD.replace("from: mes_area", "from: mes_aera"))
    (problem,) = messages(project)
    assert problem.startswith("mappings/line.yaml:11: ")
    assert "table locations has no column 'mes_aera'; did you mean 'mes_area'?" in problem


def test_unknown_field(project: Project) -> None:
    write(project, GOOD.replace("        uom: unit\n", "        uom: unit\n        lott: lot\n"))
    assert messages(project) == [
        "mappings/line.yaml:14: messages.material_consumption.in.fields.lott: unknown field "
        "'lott' for material_consumption; did you mean 'lot'?"
    ]


def test_bad_indentation(project: Project) -> None:
    write(project, GOOD.replace("        uom: unit", "       uom: unit"))
    (problem,) = messages(project)
    assert problem.startswith("mappings/line.yaml:13: YAML syntax: ")


def test_tab_and_unclosed_bracket(project: Project) -> None:
    write(project, GOOD.replace("[doc_no, line_no]", "[doc_no, line_no"))
    (problem,) = messages(project)
    assert problem.startswith("mappings/line.yaml:7: YAML syntax: ")


def test_misspelt_keyword(project: Project) -> None:
    write(project, GOOD.replace("{path: qty, parse: decimal}", "{path: qty, prase: decimal}"))
    (problem,) = messages(project)
    assert problem.startswith("mappings/line.yaml:12: messages.material_consumption.in.fields")
    assert "'prase' was unexpected" in problem


def test_bad_jmespath_and_date_format(project: Project) -> None:
    text = GOOD.replace("order_id: order_no", 'order_id: "order_no["').replace(
        '"%Y/%m/%d %H:%M"', '"YYYY/MM/DD"'
    )
    write(project, text)
    found = messages(project)
    assert len(found) == 2
    assert found[0].startswith("mappings/line.yaml:7: ")
    assert "no % directive" in found[0]
    assert found[1].startswith("mappings/line.yaml:9: ")
    assert "does not parse" in found[1]


def test_required_field_missing_and_value_given_as_object(project: Project) -> None:
    text = GOOD.replace(
        "        location: {path: area, lookup: {table: locations, from: mes_area, "
        "to: location}}\n",
        "",
    ).replace("order_id: order_no", "order_id: {pth: order_no}")
    write(project, text)
    found = messages(project)
    assert any(
        m.startswith("mappings/line.yaml:8: ") and "not mapped: location" in m for m in found
    )
    assert any(m.startswith("mappings/line.yaml:9: ") and "did you mean 'path'" in m for m in found)


def test_unknown_message_type_and_key_missing(project: Project) -> None:
    write(project, GOOD.replace("material_consumption:", "material_consumptoin:"))
    assert messages(project) == [
        "mappings/line.yaml:4: messages.material_consumptoin: unknown name "
        "'material_consumptoin'; did you mean 'material_consumption'?"
    ]
    write(project, GOOD.replace("      key: [doc_no, line_no]\n", ""))
    assert messages(project) == [
        "mappings/line.yaml:5: messages.material_consumption.in: key is required: the business "
        "key (document + line) of the record"
    ]


def test_typo_in_a_shipped_mapping_and_engine_load_refuses(project: Project) -> None:
    edit(
        project.mappings_dir / "kingdee.yaml",
        "to: kingdee_stock_org}}}\n              FPrdOrgId",
        "to: kingdee_stok_org}}}\n              FPrdOrgId",
    )
    (problem,) = messages(project)
    assert problem.startswith("mappings/kingdee.yaml:45: ")
    assert "did you mean 'kingdee_stock_org'" in problem
    with pytest.raises(ConfigError) as caught:
        MappingEngine.load(project)
    assert caught.value.file == "mappings/kingdee.yaml"
    assert caught.value.line == 45


def test_unit_without_path_to_base(project: Project) -> None:
    edit(project.master_data_dir / "unit_conversions.csv", ",KG,G,1000\n", "")
    found = messages(project)
    assert (
        "master_data/materials.csv:2: material RM-1001: unit G (mass) has no conversion path to "
        "its base unit KG (unit_conversions.csv)" in found
    )
    assert all("materials.csv" in m for m in found)


def test_material_factor_leading_nowhere(project: Project) -> None:
    with (project.master_data_dir / "unit_conversions.csv").open("a", encoding="utf-8") as fh:
        fh.write("RM-1001,ROLL,M,5\n")
    found = messages(project)
    assert found == [
        "master_data/unit_conversions.csv:15: material RM-1001: unit ROLL has no conversion "
        "path to its base unit KG"
    ]


def test_match_lookup_with_a_source_too(project: Project) -> None:
    text = GOOD.replace(
        "location: {path: area, lookup: {table: locations, from: mes_area, to: location}}",
        "location: {path: area, lookup: {table: locations, match: {mes_area: area}, to: location}}",
    )
    write(project, text)
    (problem,) = messages(project)
    assert problem.startswith("mappings/line.yaml:11: ")
    assert "drop path" in problem
