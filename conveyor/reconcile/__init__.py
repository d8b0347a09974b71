"""Reconciliation: do book stock (ERP), physical stock (WMS) and production stock (MES, and the
hub's own ledger) agree — and where they do not, show an auditor exactly where and why.

- ``snapshots``: a system's stock from a file, its connector or the hub's ledger, mapped to
  canonical rows, hashed and kept;
- ``compare``: the engine (per material × location × lot, tolerances, variance and value,
  in-transit explanation);
- ``columnar``: the same comparison by whole columns for runs of canonical CSV files (Arrow's
  CSV reader; exact matches found without a Python object per row, every other line through
  ``compare``);
- ``reports``: ``report.html``, ``report.xlsx``, ``report.csv``, ``report.json``;
- ``runs``: stored, append-only runs with resolutions and approvals;
- ``alerts``: ``stock_alert`` messages for safety stock and short components;
- ``service.run_reconciliation``: one run from start to end.
"""

from __future__ import annotations

from conveyor.reconcile.compare import Comparison, Line, Result, Summary
from conveyor.reconcile.service import HUB, RunOptions, RunOutcome, run_reconciliation
from conveyor.reconcile.tolerance import Rule, Tolerance

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
