"""Probes of a job and the label issues they found."""
