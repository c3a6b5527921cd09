#!/usr/bin/env bash
# Quick start: install, generate a sample image set, start the embedded service, train one job, show each epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
