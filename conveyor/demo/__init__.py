"""A plant in a box: ``conveyor demo`` plays one shift of plant 1000 with simulators standing in for
the ERP, the MES and the WMS and the hub between them (``conveyor.demo.run``), then reconciles."""

from __future__ import annotations

from conveyor.demo.run import DemoOptions, Summary, run_demo

__all__ = ["DemoOptions", "Summary", "run_demo"]
