#!/usr/bin/env bash
# Create .venv and install Plateau (client, server, CPU worker) with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[server,worker,test]"
# The service's packages, a distribution of their own (server/pyproject.toml); their dependencies came above.
.venv/bin/python -m pip install --quiet --no-deps -e ./server
