"""Helpers for development tools (tests, benchmarks, scripts); not part of the installed service."""
