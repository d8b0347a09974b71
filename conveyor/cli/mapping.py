"""Mapping commands: ``mappings check``, ``mappings unmapped``, ``mappings pull`` (an ERP's material
master into staging, with its diff), ``map`` (dry run) and ``ingest``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli.common import AppContext, check_alerts, emit_json, emit_table, pass_app, printable
from conveyor.messages import MESSAGE_TYPES

if TYPE_CHECKING:
    from conveyor.mapping import MappingEngine
    from conveyor.mapping.readers import CsvOptions

TYPES = MESSAGE_TYPES


def _engine(app: AppContext) -> MappingEngine:
    """The project's mapping engine; a broken mapping or table is a clean error, not a traceback."""
    from conveyor.errors import ConfigError
    from conveyor.mapping import MappingEngine

    try:
        return MappingEngine.load(app.project)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("mappings")
def mappings() -> None:
    """Mapping files (mappings/*.yaml) and master-data tables (master_data/*.csv)."""


@mappings.command("check")
@click.option("--json", "local_json", is_flag=True, help="Machine-readable JSON output.")
@pass_app
def check(app: AppContext, local_json: bool) -> None:
    """Validate every mapping file and table; print ``file:line: message`` per problem.

    Checks YAML syntax, the mapping schema, canonical field names, lookups (tables and columns),
    JMESPath expressions, date formats, table header contracts, duplicate codes, references between
    tables, and that every unit has a conversion path to its material's base unit. Exit 1 on any.
    """
    from conveyor.mapping.check import check_project

    result = check_project(app.project)
    if app.as_json or local_json:
        emit_json(
            {
                "ok": result.ok,
                "mapping_files": result.mapping_files,
                "tables": result.tables,
                "problems": [
                    {"file": p.file, "line": p.line, "message": p.message} for p in result.problems
                ],
            }
        )
    else:
        for problem in result.problems:
            click.echo(printable(problem))
        summary = (
            f"{len(result.mapping_files)} mapping file(s), {len(result.tables)} table(s): "
            + ("ok" if result.ok else f"{len(result.problems)} problem(s)")
        )
        click.echo(summary, err=not result.ok)
    sys.exit(0 if result.ok else 1)


@mappings.command("unmapped")
@click.option("--system", help="Only records of this system.")
@click.option("--json", "local_json", is_flag=True, help="Machine-readable JSON output.")
@pass_app
def unmapped(app: AppContext, system: str | None, local_json: bool) -> None:
    """Codes missing from master data, from parked records: by table and code, with counts."""
    from conveyor.mapping.report import unmapped_report

    report = unmapped_report(app.ledger, system=system)
    if app.as_json or local_json:
        emit_json(report.as_dict())
        return
    if not report.codes and not report.other:
        click.echo("no parked records are waiting for master data")
        return
    if report.codes:
        emit_table(
            f"Unmapped codes ({report.parked_records} parked record(s))",
            ["table", "column", "code", "system", "records", "types", "examples", "add"],
            [
                (
                    c.table,
                    c.column,
                    c.code,
                    c.system,
                    c.count,
                    ", ".join(sorted(c.message_types)),
                    ", ".join(c.examples),
                    c.hint,
                )
                for c in report.codes
            ],
            right=["records"],
        )
    if report.other:
        emit_table(
            "Values that could not be read",
            ["system", "field", "rule", "records", "examples"],
            [(o.system, o.field, o.rule, o.count, "; ".join(o.examples)) for o in report.other],
            right=["records"],
        )


@mappings.command("pull")
@click.argument("system")
@click.option(
    "--since",
    help="Only materials modified after this time, on the ERP's clock (ISO 8601, e.g. "
    "2026-11-01T00:00:00); a partial pull does not say which are missing.",
)
@click.option("--json", "local_json", is_flag=True, help="Machine-readable JSON output.")
@pass_app
def pull(app: AppContext, system: str, since: str | None, local_json: bool) -> None:
    """Pull SYSTEM's material master into a staging folder and show the diff against
    master_data/materials.csv (new, changed old → new, missing); master_data/ is not written.

    Writes materials.csv, diff.csv and diff.json to
    .conveyor/staging/master_data/SYSTEM/<UTC time>/ under the project. Exit 0 whatever the
    diff shows; 1 when the pull fails.
    """
    from datetime import datetime

    from conveyor.cli.runtime import _connector
    from conveyor.errors import ConveyorError
    from conveyor.mapping.master_pull import pull_materials

    moment = None
    if since:
        try:
            moment = datetime.fromisoformat(since.strip())
        except ValueError:
            raise click.BadParameter(
                f"{since!r} is not an ISO 8601 time (e.g. 2026-11-01T00:00:00)",
                param_hint="--since",
            ) from None
    connector = _connector(app, system)
    try:
        with connector:
            result = pull_materials(app.project, connector, since=moment)
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from None
    if app.as_json or local_json:
        emit_json(result.as_dict())
        return
    for line in result.text():
        click.echo(printable(line))


@click.command("map")
@click.option("--system", "system", required=True, help="System name (mappings/<system>.yaml).")
@click.option(
    "--type", "message_type", required=True, type=click.Choice(TYPES), help="Message type."
)
@click.option(
    "--direction",
    type=click.Choice(["in", "out"]),
    default="in",
    show_default=True,
    help="in: external records → canonical; out: canonical messages → external documents.",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_app
def map_command(
    app: AppContext, system: str, message_type: str, direction: str, file: Path
) -> None:
    """Dry run: map each record of FILE and print the result or why it would be parked.

    Inbound FILE is CSV, JSON or JSON-lines in the system's format; outbound FILE holds canonical
    messages (JSON / JSON-lines). Nothing is stored. Exit 1 when any record would be parked.
    """
    from conveyor.errors import ConfigError, RecordError
    from conveyor.mapping.readers import read_raw
    from conveyor.messages import dumps

    engine = _engine(app)
    system = _known_system(engine, system)
    if not engine.has_direction(system, message_type, direction):
        raise click.ClickException(
            f"system {system!r} has no {'inbound' if direction == 'in' else 'outbound'} "
            f"mapping for {message_type}"
        )
    options = _csv_options(engine.mapping(system).csv, file)
    results: list[dict[str, Any]] = []
    failed = 0
    for raw in read_raw(file, options):
        where = {"file": raw.file, "line": raw.line}
        try:
            if isinstance(raw.data, RecordError):  # unreadable: bytes, limits, JSON syntax
                raise raw.data
            if isinstance(raw.data, Exception):
                raise ValueError(f"not JSON: {raw.data}")
            if direction == "out":
                output: Any = engine.map_outbound(system, raw.data)
            elif message_type == "stock_snapshot":
                row = engine.map_snapshot_row(system, raw.data, file=raw.file, line=raw.line)
                output = {
                    "material": row.material,
                    "location": row.location,
                    "lot": row.lot,
                    "quantity": row.quantity,
                    "uom": row.uom,
                }
            else:
                output = engine.map_inbound(
                    system, message_type, raw.data, file=raw.file, line=raw.line
                )
        except RecordError as exc:
            failed += 1
            results.append(
                {
                    **where,
                    "status": "parked",
                    "reason": str(exc),
                    "problems": [p.as_dict() for p in exc.problems],
                }
            )
        except (ValueError, ConfigError) as exc:
            failed += 1
            results.append({**where, "status": "parked", "reason": str(exc), "problems": []})
        else:
            results.append({**where, "status": "ok", "result": output})
    if app.as_json:
        emit_json(
            {
                "system": system,
                "type": message_type,
                "direction": direction,
                "mapping_version": engine.version(system),
                "ok": len(results) - failed,
                "parked": failed,
                "records": results,
            }
        )
    else:
        for item in results:
            if item["status"] == "ok":
                click.echo(printable(f"{item['file']}:{item['line']}: ok"))
                click.echo(dumps(item["result"], indent=2))
            else:
                click.echo(printable(f"{item['file']}:{item['line']}: would be parked:"))
                for line in _problem_lines(item):
                    click.echo(printable(f"  {line}"))
        click.echo(
            f"{len(results) - failed} mapped, {failed} would be parked "
            f"(mapping_version {engine.version(system)}; nothing stored)",
            err=True,
        )
    sys.exit(1 if failed else 0)


@click.command("ingest")
@click.option("--system", "system", required=True, help="Source system (mappings/<system>.yaml).")
@click.option(
    "--type", "message_type", required=True, type=click.Choice(TYPES), help="Message type."
)
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@pass_app
def ingest(app: AppContext, system: str, message_type: str, files: tuple[Path, ...]) -> None:
    """Map raw records of SYSTEM from CSV / JSON / JSON-lines FILES and accept them.

    Records that cannot be mapped (no crosswalk row, unreadable value) are parked with the exact
    reason; `conveyor mappings unmapped` lists the missing codes and `conveyor replay` maps them
    again once the rows are added. Exit 1 when any record was parked or rejected.
    """
    from conveyor.cli.watch import with_progress
    from conveyor.errors import ConfigError
    from conveyor.mapping.ingest import ingest_records
    from conveyor.mapping.readers import read_raw

    engine = _engine(app)
    system = _known_system(engine, system)
    if not engine.has_direction(system, message_type, "in"):
        raise click.ClickException(f"system {system!r} has no inbound mapping for {message_type}")
    # every file's encoding is settled before any record is stored: a file refused half-way
    # through the list would leave the ones before it ingested and the rest not
    readable = {path: _csv_options(engine.mapping(system).csv, path) for path in files}
    totals = {"accepted": 0, "duplicate": 0, "rejected": 0, "parked": 0}
    problems: list[dict[str, Any]] = []
    for path in files:
        try:
            counts = ingest_records(
                app.project,
                app.ledger,
                engine,
                system,
                message_type,
                with_progress(read_raw(path, readable[path], app.project.limits), path.name),
                on_problem=problems.append,
            )
        except ConfigError as exc:
            raise click.ClickException(f"{path}: {exc}") from None
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
    alerts = check_alerts(app, totals["accepted"], engine)
    if app.as_json:
        emit_json({**totals, "alerts": alerts, "problems": problems})
    else:
        for item in problems:
            where = f"{item.get('file')}:{item.get('line')}"
            click.echo(printable(f"{where}: {item.get('status', 'parked')}:"), err=True)
            for line in _problem_lines(item):
                click.echo(printable(f"  {line}"), err=True)
        click.echo(
            f"accepted {totals['accepted']}, duplicate {totals['duplicate']}, "
            + (f"conflict {totals['conflict']}, " if totals.get("conflict") else "")
            + f"rejected {totals['rejected']}, parked {totals['parked']}"
        )
        if alerts:
            click.echo(f"stock alerts raised: {alerts}")
    sys.exit(1 if totals["parked"] or totals["rejected"] or totals.get("conflict") else 0)


def _known_system(engine: MappingEngine, system: str) -> str:
    """``system`` when it has a mapping file; otherwise a clean error listing the known ones and
    suggesting the closest (``SAP`` → ``sap``)."""
    import difflib

    known = engine.systems
    if system in known:
        return system
    by_case = {name.lower(): name for name in known}
    close = by_case.get(system.lower()) or next(
        iter(difflib.get_close_matches(system, known, n=1)), None
    )
    hint = f"; did you mean {close!r}?" if close else ""
    raise click.ClickException(
        f"unknown system {system!r}: the known systems (mappings/*.yaml) are "
        f"{', '.join(known) or 'none'}{hint}"
    )


def _csv_options(options: CsvOptions, path: Path) -> CsvOptions:
    """``options`` with the encoding of ``path`` settled (detected now, or refused with the file's
    name and the encodings tried); JSON files keep theirs (UTF-8, or what their BOM says)."""
    import dataclasses

    from conveyor.errors import UnreadableFileError
    from conveyor.mapping.readers import file_encoding, is_json_file

    if is_json_file(path):
        return options
    try:
        return dataclasses.replace(options, encoding=file_encoding(path, options.encoding))
    except UnreadableFileError as exc:
        raise click.ClickException(f"{exc} (nothing was ingested)") from None
    except LookupError as exc:  # a declared encoding Python does not know
        raise click.ClickException(f"{path}: {exc} (csv: encoding in the mapping)") from None


def _problem_lines(item: dict[str, Any]) -> list[str]:
    """One line per problem of a parked record: field, message, value and rule (outside values
    clipped to ``limits.max_echo_chars``)."""
    from conveyor.limits import current
    from conveyor.redact import safe_text

    limit = current().max_echo_chars
    problems = item.get("problems") or (item.get("error") or {}).get("problems") or []
    if not problems:
        return [safe_text(item.get("reason"), limit * 2)]
    return [
        f"{p.get('field')}: {safe_text(p.get('message'), limit * 2)} "
        f"(value={safe_text(repr(p.get('value')), limit)}, rule={p.get('rule')})"
        for p in problems
    ]


def register(main: click.Group) -> None:
    """Add the mapping commands to ``main``."""
    main.add_command(mappings)
    main.add_command(map_command)
    main.add_command(ingest)
