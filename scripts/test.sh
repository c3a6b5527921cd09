#!/usr/bin/env bash
# Run the whole test suite. Needs PostgreSQL (127.0.0.1:5432, database `test`) and Redis (127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
