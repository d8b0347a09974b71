"""File names cannot leave their folders: the files connector's outbound writer (any business key,
message type or ``file_name`` template; a link planted at a name or over its journal) and the
file-drop folders (any name a directory listing can hold). Reports replace a planted link and
never follow it (tests/conveyor/reconcile/reports/test_writing.py); dropped links and ``..`` names
are moved aside unread (tests/connectors/test_files.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connectors.files.inbox import DropFolders
from connectors.files.outbox import JOURNAL, FileWriter
from conveyor.errors import ConfigError
from tests.fuzz.harness import FUZZ, target

ESCAPES = [
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "a/../../b",
    "..\\..\\win.ini",
    "C:\\x",
    "\x00",
    ".hidden",
    "~root",
    "%2e%2e%2f",
    "．．／",
    "a\nb",
    "",
]
names = st.one_of(st.sampled_from(ESCAPES), st.text(max_size=40))
TEMPLATES = [
    "{message_type}_{key}.csv",
    "../{key}.csv",
    "/tmp/{key}.csv",
    "{key}",
    "{id}.csv",
    "sub/{key}/../../{key}.csv",
]


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@FUZZ
@given(names, names, st.sampled_from(TEMPLATES))
@example("../../outside/evil", "x", "{key}")
@example("..", "..", "../{key}.csv")
def test_the_outbox_writes_only_inside_its_folder(
    tmp_path_factory: pytest.TempPathFactory, key: str, message_type: str, template: str
) -> None:
    root = tmp_path_factory.mktemp("outbox")
    folder = root / "out"
    folder.mkdir()
    (root / "outside").mkdir()
    before = _tree(root)
    writer = FileWriter(folder, file_name=template)
    with target("outbox file names"):
        name, _again = writer.write({"a": "1"}, message_type=message_type, key=key)
        assert (folder / name).parent == folder
        assert (folder / name).is_file()
    for path in _tree(root) - before:
        assert folder in path.parents, f"{path} is outside the outbox"


def test_a_link_planted_at_a_documents_name_is_neither_followed_nor_taken_for_it(
    tmp_path: Path,
) -> None:
    folder, outside = tmp_path / "out", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    victim = outside / "victim.csv"
    victim.write_text("keep", encoding="utf-8")
    writer = FileWriter(folder)
    planted = folder / writer.name_for("production_output", "GR-1/1")
    planted.symlink_to(victim)
    name, already = writer.write({"a": "1"}, message_type="production_output", key="GR-1/1")
    assert not already  # the link was not taken for a document written before a crash
    assert name != planted.name
    assert (folder / name).read_text(encoding="utf-8").startswith("a")
    assert victim.read_text(encoding="utf-8") == "keep"
    assert writer.lookup("production_output", "GR-1/1") == name


def test_a_link_over_the_outbox_journal_is_refused(tmp_path: Path) -> None:
    folder, outside = tmp_path / "out", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / JOURNAL).symlink_to(outside)
    with pytest.raises(ConfigError, match="is a link"):
        FileWriter(folder).write({"a": "1"}, message_type="production_output", key="GR-2/1")
    assert list(outside.iterdir()) == []
    assert [p.name for p in folder.iterdir()] == [JOURNAL]  # nothing half-written left


@FUZZ
@given(names)
@example("../inbox/x.csv")
def test_a_drop_folder_never_names_a_path_outside_it(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    drop = DropFolders(tmp_path_factory.mktemp("drop"), {"*.csv": "csv"})
    with target("drop folder names", ValueError):
        path = drop.path("inbox", name)
        assert path.parent == drop.folder("inbox")
        assert os.sep not in path.name
