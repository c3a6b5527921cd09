"""Read recorded range tests again with today's reading of a sweep (worker/probes/lr_range.py `read`).

    .venv/bin/python -m benchmarks.diagnosis.reread tests/analysis/corpus/colours

A recorded range test keeps the rates it tried and its smoothed losses: the measurement. Where the range starts,
the suggested rate and the verdict are a reading of it, so a fixture recorded before a change of that reading is
brought up to date without training again. Rewrites each fixture's `probes.lr_range` in place.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worker.probes.lr_range import read


def reread(result: dict) -> dict:
    again = read(
        result["rates"],
        result["losses"],
        job_rate=result["job_rate"],
        part=result["part"],
        truncated=result.get("truncated", False),
        diverged=result.get("diverged", False),
    )
    return {**result, **again}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    changed = 0
    for folder in args.folders:
        for path in sorted(folder.glob("*.json")):
            fx = json.loads(path.read_text())
            test = (fx.get("probes") or {}).get("lr_range")
            if not test or "rates" not in test or test.get("status", "succeeded") != "succeeded":
                continue
            new = reread(test)
            if new != test:
                fx["probes"]["lr_range"] = new
                path.write_text(json.dumps(fx, separators=(",", ":")) + "\n")
                changed += 1
                print(f"{path}: {test.get('usable_range')} → {new['usable_range']}, {new['job_rate_verdict']}")
    print(f"{changed} fixture(s) read again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
