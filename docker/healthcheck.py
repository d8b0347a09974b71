"""Container health check of the hub image: exit 0 when healthy, 1 (with one line why) when not.

``conveyor-healthcheck api [PORT]`` asks the API process in this container for ``/healthz``
(default port 8000). Without arguments (workers, one-off commands) it opens the ledger
(``CONVEYOR_DB_URL``, ``SELECT 1``) and, when ``CONVEYOR_BROKER_URL`` names a broker, opens and
closes a connection to it. Every step has a timeout; no secret is printed.
"""

from __future__ import annotations

import sys
import urllib.request

TIMEOUT_S = 5.0


def check_api(port: int) -> str | None:
    """None when ``/healthz`` answers 200 on ``port``, else why not."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
            return None if answer.status == 200 else f"{url} answered {answer.status}"
    except OSError as exc:
        return f"{url}: {type(exc).__name__}"


def check_ledger() -> str | None:
    """None when the ledger answers ``SELECT 1``, else why not (the URL's password is hidden)."""
    from pathlib import Path

    from sqlalchemy import text

    from conveyor.ledger.db import default_url, make_engine
    from conveyor.paths import project_dir

    url = default_url(Path(project_dir()))
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"ledger unreachable: {type(exc).__name__}"
    finally:
        engine.dispose()
    return None


def check_broker() -> str | None:
    """None when no broker is configured or a connection to it opens, else why not."""
    import os

    url = os.environ.get("CONVEYOR_BROKER_URL")
    if not url:
        return None
    import pika

    parameters = pika.URLParameters(url)
    parameters.socket_timeout = TIMEOUT_S
    parameters.blocked_connection_timeout = TIMEOUT_S
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except Exception as exc:
        return f"broker unreachable: {type(exc).__name__}"
    return None


def main(argv: list[str]) -> int:
    """Run the checks that ``argv`` selects; print the first failure."""
    if argv[:1] == ["api"]:
        problems = [check_api(int(argv[1]) if len(argv) > 1 else 8000)]
    else:
        problems = [check_ledger(), check_broker()]
    failed = [p for p in problems if p]
    for problem in failed:
        print(problem, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
