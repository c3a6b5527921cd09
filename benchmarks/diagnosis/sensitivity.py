"""Which rule parameters sit on a knife-edge of the corpus: each numeric parameter moved by ±10 % (integers by
one), the corpus re-scored and `analysis.evaluate.gate` asked whether it still passes. No training.

    .venv/bin/python -m benchmarks.diagnosis.sensitivity    # about 8 minutes on 2 cores
"""

from __future__ import annotations

import json

from analysis import evaluate
from analysis.rules import RULES


def variants(value: float | int) -> list[float | int]:
    if isinstance(value, int):
        return [value - 1, value + 1]
    return [value * 0.9, value * 1.1]


def main() -> None:
    fixtures = evaluate.load_corpus()
    baseline = json.loads(evaluate.BASELINE.read_text())["gate"]
    tried, failing = 0, []
    for rule_id, rule in RULES.items():
        for name, value in rule.params().model_dump().items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            for new in variants(value):
                try:
                    moved = rule.params({name: new})
                except ValueError:
                    continue  # outside the parameter's range
                rule.params = lambda overrides=None, moved=moved: moved  # noqa: B023 - bound by the default
                try:
                    failures = evaluate.gate(evaluate.score(fixtures), baseline)
                finally:
                    del rule.params
                tried += 1
                if failures:
                    failing.append(f"{rule_id}.{name} {value:g} → {new:g}: {failures[0]}")
                    print(failing[-1], flush=True)
    print(f"{tried} variants, {len(failing)} fail the gate")


if __name__ == "__main__":
    main()
