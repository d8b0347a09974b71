"""Benchmarks: ``python -m bench <name> [--quick]`` (conventions in shared/BENCH.md)."""
