"""API commands: ``serve`` (the HTTP API alone), ``up`` (the whole hub in one process) and
``tokens`` (who may call the API)."""

from __future__ import annotations

import signal
from typing import Any

import click

from conveyor.cli.common import AppContext, echo, emit_json, emit_table, pass_app, setup_logging


def app_factory() -> Any:
    """The API of the project named by ``CONVEYOR_PROJECT`` (or the working directory): what
    each uvicorn worker process builds when ``serve --workers N`` runs several."""
    from conveyor.api import create_app
    from conveyor.config import Project
    from conveyor.runtime.secrets import remember_environment

    remember_environment()
    setup_logging()
    from conveyor.runtime.hub import redact_uvicorn_logs

    redact_uvicorn_logs()
    return create_app(Project.load())


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="API processes (uvicorn workers).",
)
@pass_app
def serve(app: AppContext, host: str, port: int, workers: int) -> None:
    """Serve the HTTP API alone (production: several behind a load balancer, beside `run`).

    Every route but /healthz and /readyz needs a token (`conveyor tokens add`); the OpenAPI
    document is at /openapi.json. SIGTERM finishes the requests in flight, then exits.
    """
    import os

    import uvicorn

    from conveyor.runtime.hub import redact_uvicorn_logs

    project = app.project
    _ = app.ledger  # refuse now, in one line, a ledger that is not created
    os.environ["CONVEYOR_PROJECT"] = str(project.root)
    redact_uvicorn_logs()
    click.echo(f"api: http://{host}:{port} ({workers} process(es); OpenAPI at /openapi.json)")
    uvicorn.run(
        "conveyor.cli.serve:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=15,
        server_header=False,
    )


@click.command("up")
@click.option("--host", default="127.0.0.1", show_default=True, help="API address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 256), help="Delivery threads (default 4).")
@pass_app
def up(app: AppContext, host: str, port: int, concurrency: int | None) -> None:
    """The whole hub in one process: the API, delivery workers for every target, pollers
    (systems.<name>.poll_every) and receive loops. One status line per component; SIGINT or
    SIGTERM stop it gracefully (in-flight deliveries finish or are given back, nothing lost).
    """
    from conveyor.errors import ConfigError
    from conveyor.runtime.hub import OneMachine

    setup_logging()
    try:
        machine = OneMachine(app.project, host=host, port=port, concurrency=concurrency, say=echo)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    def _stop(_signum: int, _frame: Any) -> None:
        machine.stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        machine.start()
        machine.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.group("tokens")
def tokens() -> None:
    """API tokens (only their hashes are stored, in .conveyor/tokens.json)."""


@tokens.command("add")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(["ingest", "read", "operate"]),
    required=True,
    help="ingest: post; read: read; operate: read and replay.",
)
@pass_app
def tokens_add(app: AppContext, name: str, scope: str) -> None:
    """Make a token NAME with SCOPE and print it once (it cannot be shown again)."""
    from conveyor.api.tokens import TokenStore
    from conveyor.errors import ConfigError

    store = TokenStore.of_project(app.project.root)
    try:
        token = store.add(name, scope)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    # printed with click.echo, not the redacting echo: this one line is the token's only showing
    if app.as_json:
        click.echo(f'{{"name": "{name}", "scope": "{scope}", "token": "{token}"}}')
    else:
        click.echo(token)
        click.echo(f"token {name!r} ({scope}): shown once, keep it now", err=True)


@tokens.command("list")
@pass_app
def tokens_list(app: AppContext) -> None:
    """Token names, scopes and dates (never the tokens)."""
    from conveyor.api.tokens import TokenStore

    rows = TokenStore.of_project(app.project.root).list()
    if app.as_json:
        emit_json([{"name": t.name, "scope": t.scope, "created_at": t.created_at} for t in rows])
    else:
        emit_table(
            "API tokens",
            ["name", "scope", "created"],
            [(t.name, t.scope, t.created_at) for t in rows],
        )


@tokens.command("remove")
@click.argument("name")
@pass_app
def tokens_remove(app: AppContext, name: str) -> None:
    """Revoke the token NAME (takes effect at the API's next request)."""
    from conveyor.api.tokens import TokenStore

    if not TokenStore.of_project(app.project.root).remove(name):
        raise click.ClickException(f"no token named {name!r}")
    click.echo(f"token {name!r} removed")


def register(main: click.Group) -> None:
    """Add the API commands to ``main``."""
    for command in (serve, up, tokens):
        main.add_command(command)
