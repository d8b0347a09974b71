"""Reconciliation: do book stock (ERP), physical stock (WMS) and production stock (MES, and the
hub's own ledger) agree — and where they do not, show an auditor exactly where and why.

- ``sources``: one module per snapshot source (canonical CSV and JSON, a system's own files
  through its mapping, connectors, the hub), over a shared ``Chunk``/``Snapshot`` base;
- ``lines``: the rules, written once (per material × location × lot: tolerances, variance and
  value, in-transit explanation) and the result;
- ``compare``: the one engine (whole columns with Arrow and numpy; every source feeds it);
- ``reports``: ``report.html``, ``report.xlsx``, ``report.csv``, ``report.json``;
- ``runs``: stored, append-only runs with resolutions and approvals;
- ``alerts``: ``stock_alert`` messages for safety stock and short components;
- ``service.run_reconciliation``: one run from start to end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.reconcile.lines import Line, Result, Summary
from conveyor.reconcile.service import HUB, RunOptions, RunOutcome, run_reconciliation
from conveyor.reconcile.tolerance import Rule, Tolerance

if TYPE_CHECKING:
    from conveyor.reconcile.compare import Comparison


def __getattr__(name: str) -> Any:
    """``Comparison`` on first use: the engine imports Arrow and numpy, which a command that
    only reads the reconciliation records does not need."""
    if name == "Comparison":
        from conveyor.reconcile.compare import Comparison

        return Comparison
    raise AttributeError(name)


__all__ = [
    "HUB",
    "Comparison",
    "Line",
    "Result",
    "Rule",
    "RunOptions",
    "RunOutcome",
    "Summary",
    "Tolerance",
    "run_reconciliation",
]
