#!/usr/bin/env bash
# What Plateau is for: install, then a job that stalls, its diagnosis, a fork with the suggested remedy, and the better child.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
