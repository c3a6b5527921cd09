"""Autopilot benchmark: planted causes repaired by the autopilot, against a random remedy and a blind recipe."""
