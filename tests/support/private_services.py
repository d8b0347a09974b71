"""A private PostgreSQL cluster and a private RabbitMQ node, for tests that restart them.

The machine's own instances (PostgreSQL on 5432, RabbitMQ on 5672) are shared and must never be
stopped, so a test that restarts its database or broker starts its own, on other ports, in a
temporary folder, and stops them at the end (also when the test fails)::

    with PrivatePostgres(tmp / "pg", port=55432) as pg, PrivateRabbit(tmp / "mq") as mq:
        engine = make_engine(pg.url)             # postgresql+psycopg://postgres@127.0.0.1:55432/…
        transport = RabbitMQTransport(mq.url)    # amqp://guest:guest@127.0.0.1:5673/%2F
        mq.restart()                             # rabbitmqctl stop_app / start_app
        pg.restart()                             # pg_ctl restart -m immediate (a crash)

PostgreSQL runs from ``/usr/lib/postgresql/<newest>/bin`` (``initdb``, ``pg_ctl``) as the
``postgres`` user (``runuser -u postgres --`` when the tests run as root: PostgreSQL refuses to
run as root), trust authentication, its unix socket in the temporary folder. RabbitMQ runs as a
second node (``chaos-<pid>@localhost``) with its own data and log folders, an empty plugins file
and a configuration file naming its own listener, as the ``rabbitmq`` user with that user's
Erlang cookie, so ``rabbitmqctl -n NODE`` reaches it. ``available()`` tells whether this machine
can do either (binaries present, root or the service user).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
RABBIT_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBIT_HOME = "/var/lib/rabbitmq"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name or 0))
    return Path(found[-1]) if found else None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _as(user: str, command: list[str]) -> list[str]:
    """``command`` run as ``user`` (through ``runuser`` when we are root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *command]
    return command


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for root, dirs, files in os.walk(path):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def _wait_port(port: int, timeout: float, up: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.2)
    raise RuntimeError(f"port {port} did not go {'up' if up else 'down'} in {timeout} s")


def postgres_available() -> bool:
    """``initdb``/``pg_ctl`` are installed and can run as ``postgres`` (or as this user)."""
    binaries = _pg_bin()
    if binaries is None or not (binaries / "pg_ctl").exists():
        return False
    return os.geteuid() != 0 or _user_exists("postgres")


def rabbit_available() -> bool:
    """The RabbitMQ server scripts are installed and can run as ``rabbitmq``."""
    return (
        Path(RABBIT_SERVER).exists()
        and shutil.which("rabbitmqctl") is not None
        and os.geteuid() == 0
        and _user_exists("rabbitmq")
    )


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on ``port`` with its data in ``root``."""

    user = "postgres"

    def __init__(self, root: Path, port: int = 55432) -> None:
        binaries = _pg_bin()
        if binaries is None:
            raise RuntimeError(f"no PostgreSQL binaries under {PG_BIN_GLOB}")
        self.bin = binaries
        self.root = Path(root)
        self.port = port
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.restarts = 0

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            _as(self.user, [str(self.bin / "pg_ctl"), "-D", str(self.data), *args]),
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def _options(self) -> str:
        # fsync off: the cluster lives for one test; a restart is a process crash, not a power
        # loss, so the page cache keeps what was written.
        return (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200 -c synchronous_commit=on"
        )

    def start(self) -> Self:
        """``initdb`` (first time) and start; returns once it accepts connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(exist_ok=True)
            _chown(self.root, self.user)
            subprocess.run(
                _as(
                    self.user,
                    [
                        str(self.bin / "initdb"),
                        "-D",
                        str(self.data),
                        "-A",
                        "trust",
                        "-U",
                        "postgres",
                        "--no-sync",
                    ],
                ),
                check=True,
                capture_output=True,
                timeout=120,
            )
        self._ctl("-l", str(self.log), "-w", "-t", "60", "-o", self._options(), "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop (``fast``: roll back sessions; ``immediate``: like a crash)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_s: float = 1.0, mode: str = "immediate") -> None:
        """Stop (by default as a crash: every connection cut, recovery on start), stay down for
        ``down_s``, start again."""
        self.stop(mode)
        time.sleep(down_s)
        self._ctl("-l", str(self.log), "-w", "-t", "60", "-o", self._options(), "start")
        self.restarts += 1

    def create_database(self, name: str) -> str:
        """A new database; its SQLAlchemy URL."""
        from sqlalchemy import text

        from conveyor.ledger.db import make_engine

        admin = make_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url.rsplit("/", 1)[0] + "/" + name

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop("immediate")


class PrivateRabbit:
    """A second RabbitMQ node on ``port`` (distribution on ``dist_port``) with its data in
    ``root``; guest/guest on the default vhost."""

    user = "rabbitmq"

    def __init__(self, root: Path, port: int = 5673, dist_port: int = 25673) -> None:
        self.root = Path(root)
        self.port = port
        self.dist_port = dist_port
        self.node = f"chaos-{os.getpid()}@localhost"
        self.restarts = 0

    @property
    def url(self) -> str:
        """AMQP URL of the node's default vhost."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")},
            "HOME": RABBIT_HOME,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
        }

    def ctl(self, *args: str, timeout: float = 120) -> str:
        """``rabbitmqctl -n NODE ARGS`` (its output)."""
        done = subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=RABBIT_HOME,
        )
        return done.stdout

    def _await(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:  # the node registers with epmd a moment after the detached start
            try:
                self.ctl("await_startup", "--timeout", "60")
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        _wait_port(self.port, timeout)

    def start(self) -> Self:
        """Start the node detached; returns once it accepts AMQP connections."""
        for folder in ("mnesia", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "enabled_plugins").write_text("")
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        _chown(self.root, self.user)
        subprocess.run(
            _as(self.user, [RABBIT_SERVER, "-detached"]),
            check=True,
            capture_output=True,
            timeout=60,
            env=self._env(),
            cwd=RABBIT_HOME,
        )
        self._await()
        return self

    def restart(self, down_s: float = 2.0) -> None:
        """``stop_app``, stay down ``down_s``, ``start_app`` (always attempted)."""
        try:
            self.ctl("stop_app")
            time.sleep(down_s)
        finally:
            self.ctl("start_app")
            _wait_port(self.port, 60)
        self.restarts += 1

    def stop(self) -> None:
        """Stop the node (the Erlang VM ends)."""
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.ctl("stop", timeout=60)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
