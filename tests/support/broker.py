"""RabbitMQ for tests: a broker URL with a prefix unique to the test, its names deleted afterwards,
and a helper that stops and restarts the broker app (always restarting it)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

BROKER = os.environ.get("CONVEYOR_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672/%2F")


def broker_available() -> bool:
    """True when something answers AMQP on 127.0.0.1:5672 and accepts a connection."""
    try:
        import pika

        connection = pika.BlockingConnection(
            pika.URLParameters(BROKER + "?socket_timeout=3&connection_attempts=1")
        )
        connection.close()
        return True
    except Exception:
        return False


def unique_url(**options: object) -> str:
    """The test broker with a fresh name prefix (and extra query options)."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    prefix = f"conveyor.test.{uuid.uuid4().hex[:10]}"
    return f"{BROKER}?prefix={prefix}" + (f"&{query}" if query else "")


def wait_for_broker(timeout: float = 60.0) -> None:
    """Block until the broker accepts AMQP connections again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", 5672), timeout=2):
                pass
            if broker_available():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("RabbitMQ did not come back")


def rabbitmqctl(*args: str) -> None:
    """Run ``rabbitmqctl`` (needs root on this machine)."""
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def restart_app(down_s: float = 2.0) -> None:
    """``stop_app``, wait, ``start_app`` — the start is attempted even when the stop failed."""
    try:
        rabbitmqctl("stop_app")
        time.sleep(down_s)
    finally:
        rabbitmqctl("start_app")
        wait_for_broker()
