"""A test connector with declared secrets and a live check: ``check()`` logs in with its secrets
(and, to prove redaction, says the password back), or hangs when ``hang_s`` is set."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from conveyor.connector import Connector


class CheckedSource(Connector):
    """Secrets ``password`` and ``api_key``; a live check that uses them."""

    kind = "checked"
    capabilities = frozenset({"health"})
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "url": {"type": "string"},
            "hang_s": {"type": "number", "minimum": 0},
            "password": {"type": "string", "secret": True},
            "api_key": {"type": "string", "secret": True},
        },
        "required": ["url"],
        "additionalProperties": False,
    }

    def check(self) -> str:
        if self.settings.get("hang_s"):
            time.sleep(float(self.settings["hang_s"]))
        password = self.secret("password")
        if password is None:
            raise PermissionError(f"{self.settings['url']}: login refused (no password)")
        return f"{self.settings['url']}: logged in with password {password}"
