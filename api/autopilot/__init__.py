"""Autopilot routes: start, read and stop a lineage; the logic lives in models.autopilot."""
