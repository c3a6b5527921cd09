"""`plateau lineage` on an 80-column terminal: no cell folded, each round's patch with its values, the job to keep."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from rich.console import Console

from client.render import patch_changes, print_lineage, round_header
from client.sdk import LineageRead

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)
IDS = [uuid.UUID(f"{c * 8}-0000-4000-8000-{c * 12}") for c in "abcd"]


def step(i: int, best: float, *, lr_before: float, lr_after: float, direction: str, verdict: str) -> dict:
    return {
        "round": i,
        "job_id": str(IDS[i]),
        "parent_id": str(IDS[i - 1]),
        "name": "flowers",
        "status": "succeeded",
        "epochs": 12,
        "best": best,
        "diagnosis": {"verdict": verdict, "primary_cause": None, "confidence": None, "summary": "s"},
        "cause": "learning_rate_too_low",
        "remedies": ["increase_learning_rate"],
        "patch": {"optimizer": {"learning_rate": lr_after}},
        "parent_patch_values": {"optimizer": {"learning_rate": lr_before}},
        "gain": 0.1,
        "comparison": {"direction": direction, "test": "mcnemar_exact", "p_better": 0.002, "p_worse": 0.9},
        "start": "warm",
        "evidence": {},
    }


def lineage() -> LineageRead:
    root = {
        "round": 0,
        "job_id": str(IDS[0]),
        "parent_id": None,
        "name": "flowers",
        "status": "succeeded",
        "epochs": 12,
        "best": 0.12,
        "diagnosis": {
            "verdict": "stagnating",
            "primary_cause": "learning_rate_too_low",
            "confidence": 0.9,
            "summary": "",
        },
    }
    steps = [
        root,
        step(1, 0.48, lr_before=1e-7, lr_after=1e-5, direction="better", verdict="stagnating"),
        step(2, 0.84, lr_before=1e-5, lr_after=1e-4, direction="better", verdict="healthy"),
        step(3, 0.23, lr_before=1e-4, lr_after=3.8e-4, direction="worse", verdict="diverging"),
    ]
    return LineageRead.model_validate(
        {
            "job_id": str(IDS[0]),
            "root_id": str(IDS[0]),
            "metric": "val_accuracy",
            "steps": steps,
            "best_job_id": str(IDS[2]),
            "best": 0.84,
            "autopilot": {
                "id": str(uuid.uuid4()),
                "root_job_id": str(IDS[0]),
                "config": {"max_rounds": 3},
                "state": "ended",
                "end_reason": "max_rounds",
                "end_detail": "3 of 3 rounds done",
                "current_job_id": str(IDS[3]),
                "rounds_done": 3,
                "created_at": NOW.isoformat(),
                "ended_at": NOW.isoformat(),
            },
        }
    )


def test_the_lineage_fits_80_columns_without_folding_a_cell():
    console = Console(width=80, record=True, color_system=None)
    print_lineage(console, lineage())
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in text
    assert lines[1].split() == ["round", "job", "status", "epochs", "best", "gain", "vs", "parent", "start"]
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["0", "1", "2", "3"]  # one line per job: no row folded onto a second line
    for row, job in zip(rows, IDS):
        assert row[1] == str(job)[:8] and row[2] == "succeeded" and row[3] == "12"
    assert rows[2][4] == "0.8400*" and rows[3][6] == "worse" and rows[3][7] == "warm"
    # each round's patch with its values, and the job to keep
    assert "    learning_rate 1e-07 → 1e-05" in lines and "    learning_rate 0.0001 → 0.00038" in lines
    assert f"keep job {IDS[2]}: round 2, val_accuracy 0.8400" in lines
    assert "autopilot ended: max_rounds after 3 of 3 rounds (3 of 3 rounds done)" in lines


def test_patch_changes_read_as_before_and_after():
    assert patch_changes({"epochs": 24, "regularization": {"dropout": 0.2}}, {"epochs": 12, "regularization": {}}) == [
        "epochs 12 → 24",
        "dropout — → 0.2",
    ]
    header = round_header(lineage().steps[1])
    assert header.startswith("── round 1: learning_rate_too_low → increase_learning_rate: learning_rate 1e-07 → 1e-05")


def test_the_cli_target_option_reads_metric_equals_value():
    import typer

    from client.cli import parse_target

    assert parse_target("val_accuracy=0.9") == {"val_accuracy": 0.9}
    for bad in ("val_accuracy", "val_accuracy=high"):
        with pytest.raises(typer.BadParameter):
            parse_target(bad)


def test_a_lineage_waiting_on_a_probe_says_so_and_an_exclusion_reads_as_a_file_count():
    data = lineage().model_dump(mode="json")
    data["autopilot"] = {**data["autopilot"], "state": "active", "end_reason": None, "end_detail": None}
    data["waiting_on"] = [{"probe": "label_check", "probe_id": str(IDS[3]), "job_id": str(IDS[3]), "status": "running"}]
    console = Console(width=80, record=True, color_system=None)
    print_lineage(console, LineageRead.model_validate(data))
    text = console.export_text()
    assert f"waiting on label_check (running), job {IDS[3]}" in text.splitlines()
    files = [f"c0/{i}.png" for i in range(40)]
    assert patch_changes({"dataset": {"exclude": files}}, {"dataset": {}}) == ["exclude — → 40 files"]
