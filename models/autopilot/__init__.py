"""Autopilot lineages: diagnose a job when it ends, fork it with the best untried remedy, measure the effect."""
