"""A ledger database that is down — a PostgreSQL URL on a port nothing listens on — and a
long-running command run against it for a while, for the tests of services that must wait for
the ledger instead of ending."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from typing import Any


def unreachable_url() -> str:
    """A PostgreSQL URL whose port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/ledger"


def run_for(process: subprocess.Popen[Any], seconds: float) -> tuple[bool, int, str]:
    """Let ``process`` run for ``seconds``, then SIGTERM it: (still running when signalled,
    exit code, stderr as text)."""
    try:
        time.sleep(seconds)
        still_running = process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err or "")
    return still_running, process.returncode, text
