"""The autopilot benchmark's record and summary: the figures and the table from a small hand-made result, the
lineage kept per run, resuming from an --out file, and how "probe only" reads the range test. Nothing trains."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks.autopilot import run, table
from benchmarks.autopilot.strategies import measured_rate


def strategy(reached: bool, epochs: int, rounds: int = 1, best: float = 0.5, **extra) -> dict:
    return {
        "jobs": [f"j{i}" for i in range(rounds + 1)],
        "rounds": rounds,
        "epochs": epochs,
        "epochs_saved_by_warm_starts": extra.pop("saved", 0),
        "best": best,
        "reached": reached,
        **extra,
    }


def step(n: int, remedy: str, direction: str, **extra) -> dict:
    return {
        "round": n,
        "job_id": f"child-{n}-0000",
        "status": "succeeded",
        "epochs": 12,
        "best": 0.6,
        "cause": "learning_rate_too_low",
        "remedies": [remedy],
        "patch": extra.pop("patch", {}),
        "parent_patch_values": extra.pop("before", {}),
        "gain": extra.pop("gain", 0.1),
        "direction": direction,
        "start": extra.pop("start", "cold"),
        "epochs_saved": extra.pop("saved", 0),
        "evidence": extra.pop("evidence", {}),
    }


LOW_LINEAGE = {
    "root_id": "root-1",
    "best_job_id": "bestjob1-aaaa-bbbb",
    "best": 0.85,
    "epochs_saved": 7,
    "end_reason": "target_reached",
    "end_detail": "val_accuracy 0.85 reached the target 0.85",
    "steps": [
        {"round": 0, "job_id": "root-1", "remedies": [], "evidence": {}},
        step(
            1,
            "increase_learning_rate",
            "better",
            patch={"optimizer": {"learning_rate": 3e-4}, "model": {"init_from": {"job": "root-1"}}},
            before={"optimizer": {"learning_rate": 1e-6}, "model": {"init_from": None}},
            start="warm",
            saved=7,
            evidence={
                "learning_rate_from": "range_test",
                "suggested_lr": 3e-4,
                "warm_start": {"from_job": "root-1", "checkpoint": "best", "epochs_saved": 7},
            },
        ),
        step(2, "train_longer", "unclear", evidence={"follow_up": {"why": "still improving"}}),
    ],
}


def plant(family: str, case: str, cause: str, seed: int, **strategies) -> dict:
    return {
        "family": family,
        "case": case,
        "cause": cause,
        "seed": seed,
        "goal": 0.85,
        "manifested": True,
        "strategies": strategies,
    }


def result() -> dict:
    """Two development plants on seed 0 and one on seed 1, one held-out plant, and one that did not manifest."""
    return {
        "epochs": 12,
        "rounds": 3,
        "tolerance": 0.02,
        "held_out": ["scenes"],
        "overhead": {"healthy_epochs": 36, "plant_check_epochs": 60},
        "runs": [
            plant(
                "textures",
                "lr_too_low",
                "learning_rate_too_low",
                0,
                autopilot=strategy(True, 36, 2, 0.85, saved=7, lineage=LOW_LINEAGE, best_job_id="bestjob1-aaaa"),
                random_remedy=strategy(False, 48, 3),
                probe_only=strategy(True, 24, 1, 0.84, probe={"seconds": 40.5}),
            ),
            plant(
                "textures",
                "lr_too_high",
                "learning_rate_too_high",
                0,
                autopilot=strategy(False, 24),
                random_remedy=strategy(True, 36, 2),
                probe_only=strategy(False, 12, 0, probe={"seconds": 20.0}, no_fork="the range test read no rate"),
            ),
            plant(
                "colours",
                "lr_too_low",
                "learning_rate_too_low",
                1,
                autopilot=strategy(True, 48, 3),
                random_remedy=strategy(True, 36, 2),
            ),
            plant("scenes", "lr_too_low", "learning_rate_too_low", 0, autopilot=strategy(False, 48, 3)),
            {**plant("colours", "imbalance_mild", "class_imbalance", 0), "manifested": False},
        ],
    }


def test_wilson_sign_test_and_bootstrap_give_the_textbook_values():
    lo, hi = table.wilson(9, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.5958, 0.9821)
    assert table.wilson(0, 0) is None and table.wilson(0, 5)[0] == 0.0
    # 2 of 10 against: 2 (C(10,0) + C(10,1) + C(10,2)) / 2^10; ties are dropped
    assert table.sign_test([-1] * 8 + [1] * 2 + [0, 0]) == pytest.approx(2 * 56 / 1024)
    assert table.sign_test([0, 0]) is None
    assert table.bootstrap_median([-12.0] * 5) == (-12.0, -12.0)
    lo, hi = table.bootstrap_median([-24, -12, 0, 12, 36])
    assert -24 <= lo <= hi <= 36 and table.bootstrap_median([-24, -12, 0, 12, 36]) == (lo, hi)


def test_held_out_families_are_kept_apart_and_unmanifested_plants_are_not_counted():
    groups = dict(table.groups(result()))
    assert [r["family"] for r in groups["development"]] == ["textures", "textures", "colours"]
    assert [r["family"] for r in groups["held out"]] == ["scenes"]
    # an explicit list replaces the result's own
    assert [name for name, _ in table.groups(result(), held_out=[])] == ["development"]


def test_reach_pools_with_a_wilson_interval_and_spreads_over_seeds():
    dev = dict(table.groups(result()))["development"]
    r = table.reach(dev, "autopilot")
    assert (r["k"], r["n"]) == (2, 3) and r["share"] == pytest.approx(2 / 3)
    assert r["per_seed"] == {0: 0.5, 1: 1.0} and r["spread"] == (0.5, 1.0)
    assert r["interval"] == table.wilson(2, 3)
    # probe only ran on seed 0 alone
    assert table.reach(dev, "probe_only")["per_seed"] == {0: 0.5}


def test_epochs_are_paired_on_the_plants_both_strategies_ran():
    dev = dict(table.groups(result()))["development"]
    e = table.paired_epochs(dev)
    assert (e["plants"], e["a"], e["b"]) == (3, 108, 120)
    assert e["median_difference"] == -12 and (e["fewer"], e["more"], e["equal"]) == (2, 1, 0)
    assert e["sign_test_p"] == pytest.approx(1.0)
    targets = table.targets(dev)
    assert [t["met"] for t in targets] == [False, True]  # 2 of 3 is under 90 %; 108 < 120 epochs
    held = table.targets(dict(table.groups(result()))["held out"])
    assert held[1]["measured"]["plants"] == 0 and held[1]["met"] is False


def test_totals_count_warm_start_savings_and_probe_seconds():
    dev = dict(table.groups(result()))["development"]
    ap, probe = table.totals(dev, "autopilot"), table.totals(dev, "probe_only")
    assert (ap["epochs"], ap["epochs_saved"], ap["probe_seconds"]) == (108, 7, None)
    assert (probe["runs"], probe["epochs"], probe["probe_seconds"]) == (2, 36, 60.5)


def test_per_cause_says_which_remedy_each_round_chose_on_what_evidence():
    dev = dict(table.groups(result()))["development"]
    low = table.per_cause(dev)["learning_rate_too_low"]
    assert (low["plants"], low["reached"], low["saved"]) == (2, 2, 7)
    assert low["rounds"][1] == {"increase_learning_rate (better)": 1}
    assert low["rounds"][2] == {"train_longer (unclear)": 1}
    assert low["evidence"]["range test"] == 1 and low["evidence"]["warm start"] == 1
    assert low["evidence"]["follow-up"] == 1 and low["ended"] == {"target_reached": 1}
    (line,) = low["lines"]  # the colours plant has no lineage recorded
    assert "optimizer.learning_rate 1e-06 → 0.0003" in line and "init_from" not in line
    assert "range test 0.0003" in line and "warm, 7 epochs saved" in line
    assert "best job bestjob1 (0.850)" in line and "**reached**" in line


def test_render_reports_each_target_measured_and_met_per_group():
    text = "\n".join(table.render(result()))
    assert text.index("### development") < text.index("### held out")
    dev, held = text.split("### held out")
    assert "| reaches the healthy baseline in ≥ 90 % of manifested plants | 2 of 3 = 0.67" in dev
    assert "per seed 0.50–1.00" in dev and "| **not met** |" in dev
    assert "108 against 120 on 3 plants; median difference -12" in dev and "| met |" in dev
    assert "| probe_only | 1 of 2 = 0.50" in dev and "| 60 |" in dev  # range-test seconds
    assert "| `learning_rate_too_low` | 2 | 2 | increase_learning_rate (better) ×1 |" in dev
    assert "| bestjob1 |" in dev
    assert "Probe only did not fork (no rate): textures/lr_too_high/s0 (the range test read no rate)." in dev
    assert "1 of 1" not in held and "0 of 1 = 0.00" in held and "no plant ran both" in held
    assert "Not manifested (not counted): colours/imbalance_mild/s0." in held
    assert "36 epochs of healthy runs" in held and "60 of plant checks" in held
    assert "Control" not in held  # no healthy rerun recorded


def test_render_reports_the_healthy_rerun_control_as_the_ceiling_of_the_target():
    data = result()
    data["healthy"] = {
        "textures/s0": {"goal": 0.85, "rerun": {"best": 0.84, "reached": True}},
        "textures/s1": {"goal": 0.9, "rerun": {"best": 0.8, "reached": False}},
        "scenes/s0": {"goal": 0.7},  # an older record without a rerun is left out
    }
    text = "\n".join(table.render(data))
    assert "reached its own goal (within 0.02) in 1 of 2 (family, seed) pairs = 0.50 (95 % 0.09–0.91)" in text


def test_lineage_record_keeps_the_steps_evidence_and_best_job():
    body = {
        "job_id": "r",
        "root_id": "r",
        "metric": "val_accuracy",
        "best_job_id": "c",
        "best": 0.9,
        "epochs_saved": 5,
        "autopilot": {"end_reason": "max_rounds", "end_detail": "3 of 3 rounds done"},
        "steps": [
            {
                "round": 1,
                "job_id": "c",
                "status": "succeeded",
                "epochs": 12,
                "best": 0.9,
                "diagnosis": {"verdict": "healthy", "primary_cause": None, "confidence": None, "summary": "…"},
                "cause": "learning_rate_too_low",
                "remedies": ["increase_learning_rate"],
                "patch": {"optimizer": {"learning_rate": 1e-4}},
                "parent_patch_values": {"optimizer": {"learning_rate": 1e-6}},
                "gain": 0.3,
                "comparison": {"direction": "better", "test": "mcnemar_exact", "evidence": {}},
                "start": "warm",
                "epochs_saved": 5,
                "evidence": {"learning_rate_from": "rule"},
            }
        ],
    }
    kept = run.lineage_record(body)
    assert (kept["best_job_id"], kept["epochs_saved"], kept["end_reason"]) == ("c", 5, "max_rounds")
    (s,) = kept["steps"]
    assert (s["direction"], s["test"], s["start"], s["epochs_saved"]) == ("better", "mcnemar_exact", "warm", 5)
    assert s["diagnosis"] == {"verdict": "healthy", "primary_cause": None, "confidence": None}
    assert s["evidence"] == {"learning_rate_from": "rule"} and s["patch"] == body["steps"][0]["patch"]
    # a chain of manual forks has no autopilot
    assert run.lineage_record({**body, "autopilot": None})["end_reason"] is None


def args(**over) -> argparse.Namespace:
    base = {
        "families": "textures,scenes",
        "held_out": "scenes",
        "cases": "lr_too_low",
        "seeds": 3,
        "first_seed": 0,
        "seed_list": "",
        "epochs": 8,
    }
    return argparse.Namespace(**{**base, **over})


def test_seeds_are_a_count_from_the_first_or_a_list_as_given():
    assert run.seeds_of(args()) == [0, 1, 2]
    assert run.seeds_of(args(seeds=2, first_seed=4)) == [4, 5]
    assert run.seeds_of(args(seed_list="0,2,5")) == [0, 2, 5]


def test_resume_keeps_the_cases_tenants_and_healthy_runs_and_refuses_other_settings(tmp_path):
    out = tmp_path / "autopilot.json"
    first = run.load(out, True, args(), ["autopilot"], "100")  # nothing to resume yet: a new result
    assert first["tenants"] == {"setup": "bench-setup-100", "autopilot": "bench-autopilot-100"}
    assert (first["epochs"], first["seeds"], first["held_out"]) == (8, [0, 1, 2], ["scenes"])
    first["healthy"]["textures/s0"] = {"job_id": "h", "goal": 0.8, "rows": []}
    first["runs"].append(plant("textures", "lr_too_low", "learning_rate_too_low", 0, autopilot=strategy(True, 24)))
    run.save(out, first)
    assert not out.with_name(out.name + ".tmp").exists()
    assert json.loads(out.read_text())["by_cause"]["learning_rate_too_low"]["autopilot"]["reached"] == 1.0

    again = run.load(out, True, args(seed_list="3"), ["autopilot", "probe_only"], "200")
    assert again["tenants"] == {
        "setup": "bench-setup-100",
        "autopilot": "bench-autopilot-100",
        "probe_only": "bench-probe_only-200",
    }
    assert again["seeds"] == [0, 1, 2, 3] and again["healthy"]["textures/s0"]["goal"] == 0.8
    assert len(again["runs"]) == 1
    # without --resume the file is started afresh
    assert run.load(out, False, args(), ["autopilot"], "300")["runs"] == []
    with pytest.raises(SystemExit, match="epochs"):
        run.load(out, True, args(epochs=12), ["autopilot"], "400")


def test_missing_runs_only_the_strategies_a_manifested_case_lacks():
    done = plant("textures", "lr_too_low", "learning_rate_too_low", 0, autopilot=strategy(True, 24))
    assert run.missing(None, ["autopilot", "probe_only"]) == ["autopilot", "probe_only"]
    assert run.missing(done, ["autopilot", "probe_only"]) == ["probe_only"]
    assert run.missing({**done, "manifested": False}, ["autopilot", "probe_only"]) == []


def probe(status: str, result: dict | None, error: str | None = None) -> dict:
    return {"id": "p", "status": status, "result": result, "error": error}


def test_probe_only_takes_the_range_tests_suggested_rate_or_says_why_not():
    found = {"statement": "fastest fall at 3e-4", "suggested_rate": 3e-4, "usable_range": [1e-5, 1e-3]}
    assert measured_rate(probe("succeeded", found)) == (3e-4, None)
    rate, why = measured_rate(probe("succeeded", {**found, "suggested_rate": None}))
    assert rate is None and why == "the range test read no rate: fastest fall at 3e-4"
    rate, why = measured_rate(probe("succeeded", {**found, "suggested_rate": 0.0}))
    assert rate is None and "no rate" in why
    rate, why = measured_rate(probe("failed", None, "out of memory"))
    assert rate is None and why == "the range test failed: out of memory"


def test_a_round_line_names_the_label_check_and_the_cold_start_and_counts_excluded_files():
    excluded = {
        "round": 1,
        "remedies": ["exclude_label_issues"],
        "cause": "label_noise",
        "patch": {"dataset": {"exclude": [f"c0/{i}.png" for i in range(12)]}},
        "parent_patch_values": {},
        "evidence": {"label_check": {"suspects": 12, "noise_rate": 0.4}},
        "start": "cold",
        "direction": "better",
        "gain": 0.06,
    }
    line = table.step_text(excluded)
    assert "dataset.exclude [12 files]" in line and "c0/3.png" not in line
    assert "[label check: 12 suspects, noise 0.40]" in line and line.endswith("better, +0.060")
    lowered = {
        "round": 1,
        "remedies": ["lower_learning_rate"],
        "cause": "learning_rate_too_high",
        "patch": {"optimizer": {"learning_rate": 0.0015}},
        "parent_patch_values": {"optimizer": {"learning_rate": 0.1}},
        "evidence": {"cold_start": "the parent's weights were trained at a rate too high"},
        "start": "cold",
        "direction": "better",
        "gain": 0.2,
    }
    line = table.step_text(lowered)
    assert "optimizer.learning_rate 0.1 → 0.0015" in line and "[cold: rate too high]" in line
