"""Master-data tables: loading (UTF-8, BOM, GBK), header contracts, duplicates, references,
indexes."""

from __future__ import annotations

import codecs
from decimal import Decimal

from conveyor.config import Project
from conveyor.mapping import MappingEngine
from conveyor.mapping.masterdata import MasterData

from .conftest import REPO, append_row


def test_shipped_tables_are_clean() -> None:
    master = MasterData.load(REPO / "master_data", root=REPO)
    assert master.problems == []
    assert set(master.tables) >= {
        "materials",
        "units",
        "unit_codes",
        "unit_conversions",
        "locations",
        "movement_types",
    }


def test_material_dataclass(mapping_engine: MappingEngine) -> None:
    material = mapping_engine.master_data.material("RM-1001")
    assert material is not None
    assert material.base_uom == "KG"
    assert material.unit_cost == Decimal("12.50")
    assert material.safety_stock == Decimal(500)
    assert material.group == "raw"
    assert mapping_engine.master_data.material("nope") is None
    codes = [m.code for m in mapping_engine.master_data.materials()]
    assert codes[0] == "RM-1001"
    assert "FG-5001" in codes


def test_sap_numbers_keep_leading_zeros(mapping_engine: MappingEngine) -> None:
    index = mapping_engine.master_data.index("materials", ["sap_material"], "material")
    assert index["000000000010001001"] == "RM-1001"


def test_table_saved_from_excel_with_bom(project: Project) -> None:
    path = project.master_data_dir / "materials.csv"
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    engine = MappingEngine.load(project)
    assert engine.master_data.material("RM-1001") is not None
    assert engine.master_data.tables["materials"].columns[0] == "material"


def test_table_saved_as_gbk(project: Project) -> None:
    path = project.master_data_dir / "locations.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))
    engine = MappingEngine.load(project)
    rows = engine.master_data.tables["locations"].rows
    assert rows[0]["description"].startswith("原料仓")


def test_duplicate_code_is_reported_with_both_lines(project: Project) -> None:
    append_row(
        project.master_data_dir / "materials.csv",
        "RM-9001,dup,KG,raw,,,000000000010001001,9.99.001,0999001,P-9001,SKU-9001",
    )
    master = MasterData.load(project.master_data_dir, root=project.root)
    messages = [str(p) for p in master.problems]
    assert messages == [
        "master_data/materials.csv:14: duplicate sap_material '000000000010001001' "
        "(first at line 2)"
    ]


def test_missing_column_and_bad_cells(project: Project) -> None:
    path = project.master_data_dir / "units.csv"
    path.write_text("uom,description,dimension,decimals\nKG,kg,mass,6\n", encoding="utf-8")
    master = MasterData.load(project.master_data_dir, root=project.root)
    assert any(
        p.file == "master_data/units.csv" and p.line == 1 and "rounding" in p.message
        for p in master.problems
    )
    path.write_text(
        "uom,description,dimension,decimals,rounding\nKG,kg,mass,six,half_up\nG,g,mass,3,nearest\n",
        encoding="utf-8",
    )
    master = MasterData.load(project.master_data_dir, root=project.root)
    lines = {(p.line, p.message.split(":")[0]) for p in master.problems if "units.csv" in p.file}
    assert (2, "decimals") in lines
    assert (3, "rounding") in lines


def test_references_between_tables(project: Project) -> None:
    append_row(
        project.master_data_dir / "materials.csv",
        "RM-9002,unknown unit,KGS,raw,,,,,,,",
    )
    master = MasterData.load(project.master_data_dir, root=project.root)
    assert [str(p) for p in master.problems] == [
        "master_data/materials.csv:14: base_uom 'KGS' is not a uom of master_data/units.csv"
    ]


def test_index_with_filter_and_several_keys(mapping_engine: MappingEngine) -> None:
    master = mapping_engine.master_data
    codes = master.index("unit_codes", ["uom"], "code", [("system", "sap")])
    assert codes["KG"] == "KGM"  # the first row wins
    places = master.index("locations", ["sap_plant", "sap_storage_location"], "location")
    assert places[("1000", "0010")] == "1000/WIP-MOLD"
    assert (
        master.index("materials", ["mes_part"], "material", ignore_case=True)["p-1001"] == "RM-1001"
    )
