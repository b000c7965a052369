"""Benchmarks for threadline (not shipped with the package)."""
