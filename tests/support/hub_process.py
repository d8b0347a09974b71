"""The hub as a real process for kill and memory tests: ``conveyor …`` started as a subprocess
on a given ledger (and broker), optionally stopped dead at a chosen SQL statement so that a
SIGKILL lands mid-transaction deterministically.

``StopAt`` is a test-only hook, installed by running this module instead of ``python -m
conveyor``: a SQLAlchemy ``before_cursor_execute`` listener counts the statements matching a
pattern and, at the n-th one (counting only once the ``arm`` file exists, when one is given),
writes the ``mark`` file and sleeps inside the open transaction until it is killed. The engine
itself carries no test code.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENV = "CONVEYOR_TEST_STOP_AT"


@dataclass(frozen=True)
class StopAt:
    """Stop dead at the ``nth`` statement matching ``pattern`` (case-insensitive)."""

    pattern: str
    mark: Path
    nth: int = 1
    arm: Path | None = None
    """Count only once this file exists (a test arms the hook between two requests)."""

    def env(self) -> str:
        """The hook's settings as one environment value."""
        return "\t".join([self.pattern, str(self.nth), str(self.mark), str(self.arm or "")])

    def reached(self) -> bool:
        """The process is stopped at the statement (inside its transaction)."""
        return self.mark.exists()


def conveyor(
    root: Path,
    db_url: str,
    *args: str,
    broker_url: str | None = None,
    stop_at: StopAt | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """``conveyor --project root ARGS`` on the ledger ``db_url`` (and ``broker_url``)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    environ.update(CONVEYOR_DB_URL=db_url, PYTHONPATH=str(REPO), **(env or {}))
    if broker_url:
        environ["CONVEYOR_BROKER_URL"] = broker_url
    module = "conveyor"
    if stop_at is not None:
        environ[ENV] = stop_at.env()
        module = "tests.support.hub_process"
    return subprocess.Popen(
        [sys.executable, "-m", module, "--project", str(root), *args],
        cwd=REPO,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_stopped(process: subprocess.Popen[str], stop_at: StopAt, timeout: float = 60) -> None:
    """Until the process sits at its stop (fails with its output if it ended first)."""
    deadline = time.monotonic() + timeout
    while not stop_at.reached():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"ended before its stop ({process.returncode}): {out}\n{err}")
        assert time.monotonic() < deadline, "the process never reached its stop"
        time.sleep(0.02)


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL, no clean-up of any kind, and reap it."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until ``url`` answers (the process has started serving)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback http)
                return
        except OSError:
            if process.poll() is not None:
                out, err = process.communicate()
                raise AssertionError(f"the server ended: {out}\n{err}") from None
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.1)


def _install(spec: str) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    pattern, nth, mark, arm = spec.split("\t")
    wanted = re.compile(pattern, re.I)
    seen = [0]

    def stop(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if not wanted.search(statement) or (arm and not os.path.exists(arm)):
            return
        seen[0] += 1
        if seen[0] == int(nth):
            Path(mark).write_text(statement[:200], encoding="utf-8")
            while True:  # inside the open transaction, until SIGKILL
                time.sleep(60)

    event.listen(Engine, "before_cursor_execute", stop)


if __name__ == "__main__":
    _install(os.environ[ENV])
    from conveyor.cli import main

    main()
