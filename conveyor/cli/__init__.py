"""The ``conveyor`` command line. Subcommands live in sibling modules and register on ``main``;
heavy imports happen inside commands so that ``conveyor --help`` stays fast."""

from __future__ import annotations

import click

from conveyor.cli.common import AppContext


class ConveyorGroup(click.Group):
    """The command group: a database error that has a plain explanation (ledger locked, not
    created, unreachable) ends the command with that one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the subcommand, translating database errors into ``ClickException``."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from conveyor.cli.common import database_problem

            problem = database_problem(exc)
            if problem is None:
                raise
            raise click.ClickException(problem) from None


@click.group(cls=ConveyorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project",
    type=click.Path(file_okay=False),
    envvar="CONVEYOR_PROJECT",
    help="Project directory (conveyor.yaml, mappings/, master_data/). Default: current directory.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.version_option(package_name="conveyor-hub")
@click.pass_context
def main(ctx: click.Context, project: str | None, as_json: bool) -> None:
    """Conveyor — move production orders, consumption, output and stock between ERP, MES and WMS."""
    from conveyor.cli.common import setup_logging
    from conveyor.runtime.secrets import remember_environment

    remember_environment()  # secrets are masked even in texts written before a connector read them
    setup_logging()
    ctx.obj = AppContext(project_arg=project, as_json=as_json)


def _register() -> None:
    from conveyor.cli import (
        consume,
        delivery,
        demo,
        ledger,
        mapping,
        reconcile,
        runtime,
        serve,
        simulate,
        watch,
    )

    for module in (
        ledger,
        mapping,
        delivery,
        reconcile,
        runtime,
        simulate,
        consume,
        serve,
        watch,
        demo,
    ):
        module.register(main)


_register()
