"""Secrets through one door: ``secret(connection, field)``.

In order: an Airflow Connection named ``connection`` when running inside Airflow (Airflow is
imported lazily, only there), then the environment variable ``CONVEYOR_<CONNECTION>_<FIELD>``.
An Airflow Connection's ``login`` answers the ``USERNAME`` field and its ``password`` the
``PASSWORD`` field; every other field comes from its ``extra`` (case-insensitive). A field the
Airflow Connection lacks (or a connection Airflow does not have) falls back to the environment.

Every value handed out is remembered by ``conveyor.redact`` (with its HTTP Basic form when a
username of the same connection is known), so no text the hub stores or prints can carry it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from conveyor import redact

log = logging.getLogger(__name__)


def env_name(connection: str, field: str) -> str:
    """The environment variable that holds ``field`` of ``connection``."""
    prefix = connection.upper().replace("-", "_").replace(".", "_")
    return f"CONVEYOR_{prefix}_{field.upper()}"


def in_airflow() -> bool:
    """True inside an Airflow task or process (never imports Airflow to find out)."""
    return "airflow" in sys.modules or any(k.startswith("AIRFLOW_CTX_") for k in os.environ)


_LOGIN_FIELDS = frozenset({"username", "login", "user"})


def _from_airflow(connection: str, field: str) -> str | None:
    try:
        from airflow.sdk import BaseHook  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # Airflow < 3 or not installed: the environment answers
        return None
    try:
        conn: Any = BaseHook.get_connection(connection)
    except Exception as exc:  # no such connection (or no API to ask): the environment answers
        log.debug("no Airflow connection %r: %s", connection, type(exc).__name__)
        return None
    wanted = field.lower()
    if wanted in _LOGIN_FIELDS:
        return conn.login or None
    if wanted == "password":
        return conn.password or None
    extra = {str(k).lower(): v for k, v in (conn.extra_dejson or {}).items()}
    value = extra.get(wanted)
    return None if value in (None, "") else str(value)


def _lookup(connection: str, field: str) -> str | None:
    """``field`` of ``connection``: the Airflow Connection first (inside Airflow), then the
    environment. Not remembered: usernames pass through here too."""
    value = _from_airflow(connection, field) if in_airflow() else None
    if value is None:
        value = os.environ.get(env_name(connection, field)) or None
    return value


def secret(connection: str, field: str) -> str | None:
    """The secret ``field`` of ``connection``, or None when it is set nowhere."""
    value = _lookup(connection, field)
    if value is not None:
        user = _lookup(connection, "username") if field.lower() == "password" else None
        redact.remember(value, user=user)
        if in_airflow():
            _mask_in_airflow(value)
    return value


def is_set(connection: str, field: str) -> bool:
    """True when ``field`` of ``connection`` is set somewhere (for ``systems check``: the value
    is read through the same door, so it is remembered for redaction, and never returned)."""
    return secret(connection, field) is not None


def _mask_in_airflow(value: str) -> None:
    """Also mask the value in Airflow's task logs (Airflow masks passwords by itself, not
    values from ``extra`` or the environment)."""
    try:
        from airflow.sdk.log import mask_secret  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return
    mask_secret(value)


def remember_environment() -> None:
    """Remember every ``CONVEYOR_*`` secret-looking variable of the environment for redaction,
    so a secret is masked even in texts written before a connector first read it."""
    for name, value in os.environ.items():
        if name.startswith("CONVEYOR_") and name.rsplit("_", 1)[-1] in _SECRET_SUFFIXES:
            redact.remember(value)
        elif name.startswith("CONVEYOR_") and "://" in value:
            _remember_url_password(value)


def _remember_url_password(url: str) -> None:
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return
    redact.remember(password)


_SECRET_SUFFIXES = frozenset(
    {"PASSWORD", "SECRET", "TOKEN", "KEY", "APP_SECRET", "APP_KEY", "PASSPHRASE"}
)
