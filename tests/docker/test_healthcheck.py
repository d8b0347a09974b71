"""docker/healthcheck.py, the hub image's health check, against the real local PostgreSQL and
RabbitMQ and a real HTTP listener: healthy when they answer, exit 1 with a reason (and no secret)
when they do not."""

from __future__ import annotations

import http.server
import importlib.util
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import PG_ADMIN_URL
from tests.support.broker import BROKER, broker_available

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conveyor_healthcheck", SCRIPT)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def api_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_api_healthy_and_down(healthcheck: ModuleType, api_port: int) -> None:
    assert healthcheck.main(["api", str(api_port)]) == 0
    closed = free_port()
    assert healthcheck.check_api(closed) == f"http://127.0.0.1:{closed}/healthz: URLError"


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_worker_healthy_with_ledger_and_broker(
    healthcheck: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not broker_available():
        pytest.skip("RabbitMQ not reachable")
    monkeypatch.setenv("CONVEYOR_DB_URL", PG_ADMIN_URL)
    monkeypatch.setenv("CONVEYOR_BROKER_URL", BROKER)
    assert healthcheck.check_ledger() is None
    assert healthcheck.check_broker() is None
    assert healthcheck.main([]) == 0


@pytest.mark.postgres
def test_unreachable_broker_fails_without_its_password(
    healthcheck: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVEYOR_DB_URL", PG_ADMIN_URL)
    monkeypatch.setenv("CONVEYOR_BROKER_URL", f"amqp://hub:s3cret-pw@127.0.0.1:{free_port()}/%2F")
    assert healthcheck.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("broker unreachable: ")
    assert "s3cret-pw" not in err


def test_unreachable_ledger_fails_without_its_password(
    healthcheck: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "CONVEYOR_DB_URL", f"postgresql://hub:s3cret-pw@127.0.0.1:{free_port()}/conveyor"
    )
    problem = healthcheck.check_ledger()
    assert problem == "ledger unreachable: OperationalError"


def test_runs_as_a_script(api_port: int) -> None:
    """The image runs it as ``python /usr/local/bin/conveyor-healthcheck api PORT``."""
    ok = subprocess.run(
        [sys.executable, str(SCRIPT), "api", str(api_port)], timeout=30, check=False
    )
    assert ok.returncode == 0
    closed = subprocess.run(
        [sys.executable, str(SCRIPT), "api", str(free_port())],
        timeout=30,
        capture_output=True,
        text=True,
        check=False,
    )
    assert closed.returncode == 1
    assert "/healthz: URLError" in closed.stderr
