"""Fixtures: real HTTP servers on loopback (``tests.support.scripted``)."""

from tests.support.scripted import server, tls_server

__all__ = ["server", "tls_server"]
