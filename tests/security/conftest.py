"""Fixtures of the security tests: the API tests' small project, ledger, tokens and client."""

from tests.conveyor.api.conftest import api_ledger, client, project, settings, tokens

__all__ = ["api_ledger", "client", "project", "settings", "tokens"]
