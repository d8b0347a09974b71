"""Writing reports: each file replaced atomically (a temporary name in the same folder, then
``os.replace``), a symlink planted at a report's name replaced and never followed, nothing left
behind when writing fails."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.reconcile.compare import Comparison
from conveyor.reconcile.reports import (
    REPORT_FILES,
    Report,
    replacing,
    report_from_result,
    write_reports,
)
from conveyor.reconcile.sources import Chunk


def _report() -> Report:
    comparison = Comparison(["erp", "wms"])
    comparison.add("erp", Chunk([("M1", "L1", "", "1", "KG", "")]))
    comparison.add("wms", Chunk([("M1", "L1", "", "2", "KG", "")]))
    return report_from_result(
        comparison.result(),
        run_id="run-1",
        as_of=datetime(2026, 11, 21, tzinfo=UTC),
        inputs=[],
        generated_at=datetime.now(UTC),
    )


def test_a_symlink_planted_in_the_output_folder_is_replaced_not_followed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victims = {}
    for name in REPORT_FILES:
        victim = tmp_path / f"victim-{name}"
        victim.write_text("keep me")
        (out / name).symlink_to(victim)
        victims[name] = victim
    hashes = write_reports(_report(), out)
    assert set(hashes) == set(REPORT_FILES)
    for name, victim in victims.items():
        assert victim.read_text() == "keep me", name
        assert not (out / name).is_symlink(), name
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["run_id"] == "run-1"
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)  # no temporary left


def test_an_existing_report_is_replaced_by_a_new_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_reports(_report(), out)
    before = {name: (out / name).stat().st_ino for name in REPORT_FILES}
    reader = (out / "report.csv").open("rb")  # someone reading the old report meanwhile
    old = reader.read()
    write_reports(_report(), out)
    for name in REPORT_FILES:
        assert (out / name).stat().st_ino != before[name], name  # a new file, renamed in place
    reader.seek(0)
    assert reader.read() == old  # the reader kept the whole old file
    reader.close()
    mode = (out / "report.csv").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_report_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old")

    def fail() -> None:
        with replacing(target, "w") as fh:
            fh.write("half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fail()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]
