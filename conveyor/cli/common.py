"""Shared CLI plumbing: the project and ledger of this invocation, and output as table or JSON.

Everything printed through ``emit_json``, ``emit_table`` and ``echo`` passes through
``conveyor.redact`` first: no secret leaves the process in the CLI's output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
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
        """The project of ``--project`` (config errors become a clean message, exit 2)."""
        from conveyor.config import Project
        from conveyor.errors import ConfigError

        try:
            return Project.load(self.project_arg)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    @cached_property
    def ledger(self) -> Ledger:
        """The project's ledger."""
        from conveyor.ledger import Ledger

        return Ledger.open(self.project)


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
    """Print ``data`` as JSON (Decimals exact, datetimes ISO), redacted."""
    from conveyor.redact import redact

    click.echo(redact(json.dumps(data, default=_json_default, ensure_ascii=False, indent=2)))


def echo(text: str, *, err: bool = False) -> None:
    """Print a line of text, redacted (it may carry an error a target answered)."""
    from conveyor.redact import redact

    click.echo(redact(text), err=err)


def setup_logging(level: int = logging.WARNING) -> None:
    """Log to stderr at ``level``; every record is redacted (``RedactingFilter``) first."""
    from conveyor.redact import install_log_filter

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level)
    install_log_filter()


def render_value(value: object) -> str:
    """A cell value for humans."""
    if value is None:
        return ""
    return str(_json_default(value)) if isinstance(value, Decimal | datetime) else str(value)


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
