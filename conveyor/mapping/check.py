"""``conveyor mappings check``: every problem of a project's mapping files and master-data tables,
as ``file:line: message`` — YAML syntax, schema, unknown tables, columns and fields, JMESPath that
does not parse, date formats, duplicate codes, references between tables, and units without a
conversion path to a material's base unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.yamlfile import FileProblem

if TYPE_CHECKING:
    from conveyor.config import Project


@dataclass(frozen=True)
class CheckResult:
    """What ``check_project`` looked at and what it found."""

    mapping_files: list[str]
    tables: list[str]
    problems: list[FileProblem]

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def check_project(project: Project) -> CheckResult:
    """Check every mapping file and table of ``project``; problems are sorted by file and line."""
    from conveyor.mapping.engine import build_state

    state = build_state(project)
    mapping_files = sorted(
        {compiled.display for compiled in state.files.values()}
        | {p.file for p in state.problems if p.file.endswith((".yaml", ".yml"))}
    )
    tables = sorted(t.display for t in state.master.tables.values())
    return CheckResult(mapping_files, tables, state.problems)
