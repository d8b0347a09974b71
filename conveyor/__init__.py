"""Conveyor: an integration hub between ERP, MES and WMS.

Canonical messages in the middle, a stock ledger that makes every delivery idempotent, pluggable
connectors at the edges. See ``ARCHITECTURE.md`` for the picture and ``README.md`` to start.
"""

from __future__ import annotations

__version__ = "0.1.0"
