"""``conveyor simulate KIND``: run a simulator (``conveyor.simulators`` entry points) on a local
port until stopped; the base URL is the first line printed."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

import click


@click.command("simulate")
@click.argument("kind")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port (0: a free one).")
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, help="Delay every answer.")
@click.option(
    "--fail-rate", type=click.FloatRange(0, 1), default=0.0, help="Share answered with a 5xx."
)
@click.option(
    "--drop-answer-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of postings committed and then left without an answer.",
)
@click.option("--reject-keys", multiple=True, help="Refuse keys matching this pattern (4xx).")
@click.option("--seed", type=int, help="Seed of the random faults (repeatable runs).")
@click.option("--echo-headers", is_flag=True, help="Repeat request headers in error answers.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A simulator's own setting (Options.extra), e.g. --set released_status=3.",
)
# Kingdee simulator settings (passed in Options.extra)
@click.option("--session-ttl-s", type=click.FloatRange(0), help="Kingdee: idle session lifetime.")
@click.option("--refuse-negative", is_flag=True, default=None, help="ERP: refuse negative stock.")
@click.option("--seed-orders", type=click.IntRange(0), help="ERP: generate N released orders.")
@click.option("--state", type=click.Path(dir_okay=False), help="ERP: SQLite file of the state.")
def simulate(
    kind: str,
    port: int,
    latency_ms: float,
    fail_rate: float,
    drop_answer_rate: float,
    reject_keys: tuple[str, ...],
    seed: int | None,
    echo_headers: bool,
    settings: tuple[str, ...],
    **named: Any,
) -> None:
    """Run the simulator KIND (e.g. http-target) until stopped (Ctrl-C, SIGTERM)."""
    from conveyor.errors import ConfigError
    from simulators import Options, load

    try:
        factory = load(kind)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    options = Options(
        port=port,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        drop_answer_rate=drop_answer_rate,
        reject_keys=list(reject_keys),
        seed=seed,
        echo_headers=echo_headers,
        extra=_extra(settings, named),
    )
    try:
        simulator = factory.from_options(options)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on port {port}: {exc}") from None
    click.echo(simulator.url)
    click.echo(f"{kind} simulator serving; stop with Ctrl-C", err=True)

    def _stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt):
        simulator.serve_forever()


def _extra(settings: tuple[str, ...], named: dict[str, Any]) -> dict[str, Any]:
    """``Options.extra``: the ``--set KEY=VALUE`` pairs, then the named simulator flags given."""
    extra: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        extra[key.strip().replace("-", "_")] = value
    extra.update({name: value for name, value in named.items() if value is not None})
    return extra


def register(main: click.Group) -> None:
    """Add ``simulate`` to ``main``."""
    main.add_command(simulate)
