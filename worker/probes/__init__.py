"""Probes: short, budgeted experiments on a job's own data and latest weights, each a plain function here.

`run.run_probe` claims a probe row, loads the job's images and weights into a copy (`context`), runs the probe
within its budget and records the result; the job's own training, checkpoints and files are never touched."""
