"""Benchmarks of the local target on SQLite, measured beside DBOS; run ``bench/run`` (see README)."""
