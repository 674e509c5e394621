"""Benchmarks of langarith: ``PYTHONPATH=. .venv/bin/python benchmarks/run.py [--quick]``."""
