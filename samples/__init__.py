"""Generated image sets for demos, tests and benchmarks (`python -m samples.shapes OUT_DIR`)."""
