"""Shared CLI plumbing: the project and ledger of this invocation, and output as table or JSON.

Everything printed through ``emit_json``, ``emit_table`` and ``echo`` passes through
``conveyor.redact`` first: no secret leaves the process in the CLI's output."""

from __future__ import annotations

import json
import logging
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click

if TYPE_CHECKING:
    from conveyor.config import Project
    from conveyor.ledger import Ledger


@dataclass
class AppContext:
    """What every command needs: the project (loaded once), the ledger, the output mode."""

    project_arg: str | None
    as_json: bool
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @cached_property
    def project(self) -> Project:
        """The project of ``--project`` (config errors become a clean message, exit 1). A project
        directory that does not exist or has no ``conveyor.yaml`` is refused, not created."""
        from conveyor.config import CONFIG_FILE, Project
        from conveyor.errors import ConfigError
        from conveyor.paths import project_dir

        root = project_dir(self.project_arg)
        named = "--project" if self.project_arg else "the current directory"
        if not root.is_dir():
            raise click.ClickException(
                f"project directory {root} does not exist: give --project (or CONVEYOR_PROJECT) "
                "the folder that holds conveyor.yaml"
            )
        if not (root / CONFIG_FILE).is_file():
            raise click.ClickException(
                f"{root} ({named}) has no {CONFIG_FILE}: not a Conveyor project; give --project "
                f"the folder that holds {CONFIG_FILE}, or write one there"
            )
        try:
            return Project.load(root)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    @cached_property
    def ledger(self) -> Ledger:
        """The project's ledger, refused with what to do when it has not been created yet."""
        from conveyor.ledger.db import current_revision

        ledger = self.open_ledger()
        if current_revision(ledger.engine) is None:
            raise click.ClickException(
                "ledger not initialised: run conveyor db upgrade "
                f"(ledger at {ledger.engine.url.render_as_string(hide_password=True)})"
            )
        return ledger

    def open_ledger(self) -> Ledger:
        """The project's ledger as it is (``db upgrade`` creates it), after checking that a
        SQLite URL points into a folder that exists."""
        from sqlalchemy.engine import make_url

        from conveyor.ledger import Ledger

        url = make_url(self.project.db_url)
        if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
            folder = Path(url.database).expanduser().resolve().parent
            if not folder.is_dir():
                raise click.ClickException(
                    f"the ledger's folder {folder} does not exist (CONVEYOR_DB_URL="
                    f"{url.render_as_string(hide_password=True)}): create it or fix the URL"
                )
        return Ledger.open(self.project)


def ledger_unreachable(exc: BaseException) -> bool:
    """True for a database error that says the ledger cannot be reached now (restarting, a cut
    connection): a long-running command waits and tries again rather than ending."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    text = (str(exc.orig) if exc.orig is not None else str(exc)).lower()
    return "connection" in text or "could not connect" in text or "timeout" in text


def database_problem(exc: BaseException) -> str | None:
    """One line saying what to do about a database error, or None when it is not one (so
    commands never end in a SQLAlchemy traceback for a locked, missing or unreachable ledger)."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError):
        return None
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lowered = text.lower()
    if "database is locked" in lowered or "database table is locked" in lowered:
        from conveyor.ledger.db import lock_timeout

        return (
            f"the ledger is busy: another process held its write lock longer than "
            f"{lock_timeout():g} s (CONVEYOR_DB_LOCK_TIMEOUT); try again when it has finished"
        )
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return "ledger not initialised: run conveyor db upgrade"
    if "unable to open database file" in lowered:
        return "cannot open the ledger's SQLite file: check CONVEYOR_DB_URL and the folder's rights"
    if ledger_unreachable(exc):
        return f"cannot reach the ledger database: {text.splitlines()[0] if text else exc}"
    return None


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        from conveyor.quantity import format_quantity

        return format_quantity(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return str(value)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON (Decimals exact, datetimes ISO), every string in it redacted (the
    values, not the text: the output stays valid JSON)."""
    from conveyor.redact import redact_value

    text = json.dumps(data, default=_json_default, ensure_ascii=False)
    click.echo(json.dumps(redact_value(json.loads(text)), ensure_ascii=False, indent=2))


def echo(text: str, *, err: bool = False) -> None:
    """Print text that may carry outside values: redacted (an error a target answered may echo a
    credential) and each line made ``printable`` (no escape sequence reaches the terminal)."""
    from conveyor.redact import redact

    click.echo("\n".join(printable(line) for line in redact(text).split("\n")), err=err)


def setup_logging(level: int = logging.WARNING) -> None:
    """Log to stderr at ``level``; every record is redacted (``RedactingFilter``) first."""
    from conveyor.redact import install_log_filter

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level)
    install_log_filter()


_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories never written raw to a terminal: controls (ANSI escapes start with ESC),
format characters (bidi overrides, zero-width marks, BOM), surrogates, unassigned, separators."""


def printable(text: object) -> str:
    """``text`` safe to print: each control or invisible format character is shown escaped as
    ``repr`` would (``\\x1b``, ``\\u202e``), so no echoed value can move the cursor, recolour the
    terminal or reorder what is shown. Everything else (CJK, accents, spaces) is left as it is."""
    text = str(text)
    if text.isprintable():  # the common case: nothing to look at twice
        return text
    return "".join(_escaped(ch) if unicodedata.category(ch) in _HIDDEN else ch for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def render_value(value: object) -> str:
    """A cell value for humans (control characters escaped, see ``printable``)."""
    if value is None:
        return ""
    return printable(_json_default(value) if isinstance(value, Decimal | datetime) else value)


def emit_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    right: Sequence[str] = (),
) -> None:
    """Print a table with rich (plain text when not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left", overflow="fold")
    from conveyor.redact import redact

    for row in rows:
        table.add_row(*(redact(render_value(v)) for v in row))
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200).print(table)


pass_app = click.make_pass_decorator(AppContext)


def check_alerts(app: AppContext, accepted: int, mapping_engine: Any = None) -> int:
    """The stock-alert check after an accept (see ``conveyor.reconcile.alerts``): how many new
    ``stock_alert`` messages it accepted. ``mapping_engine`` saves loading the mappings again."""
    from conveyor.errors import ConfigError
    from conveyor.reconcile.alerts import check_after_accept

    reference = None
    if mapping_engine is not None:
        from conveyor.reconcile.reference import EngineReference

        reference = EngineReference(mapping_engine)
    try:
        results = check_after_accept(app.project, app.ledger, accepted, reference)
    except ConfigError as exc:  # what was accepted stays accepted; the next check catches up
        click.echo(f"stock alerts not checked: {exc}", err=True)
        return 0
    return sum(1 for r in results if r.status == "accepted")


class Duration(click.ParamType[timedelta]):
    """A span written as a number and a unit: ``90s``, ``15m``, ``1h``, ``30d`` (a bare number
    is seconds). Four suffixes do not justify a parsing dependency."""

    name = "duration"
    UNITS: ClassVar[dict[str, float]] = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        """``value`` as a ``timedelta``."""
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        unit = text[-1:] if text[-1:] in self.UNITS else "s"
        number = text[:-1] if text[-1:] in self.UNITS else text
        try:
            amount = float(number)
        except ValueError:
            self.fail(f"{value!r} is not a duration (e.g. 90s, 15m, 1h, 30d)", param, ctx)
        if not amount >= 0 or amount == float("inf"):
            self.fail(f"{value!r}: a duration is a finite number of 0 or more", param, ctx)
        return timedelta(seconds=amount * self.UNITS[unit])


DURATION = Duration()
