#!/usr/bin/env bash
# Run the whole test suite. Needs PostgreSQL (127.0.0.1:5432, database `test`) and Redis (127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two xdist workers (PLATEAU_TEST_WORKERS): the fault and flow tests spend much of their time waiting on
# processes they start, stop and restart, so two of them side by side use the two cores better than one.
# Each worker has its own databases, queues and folders (tests/conftest.py); the longest modules start first.
exec .venv/bin/python -m pytest -n "${PLATEAU_TEST_WORKERS:-2}" --dist load "$@"
