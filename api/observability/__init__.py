"""Prometheus metrics and per-request JSON logs."""
