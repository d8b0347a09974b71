"""Helpers shared by tests and benches (a recording HTTP target)."""
