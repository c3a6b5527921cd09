"""The autopilot benchmark's "probe only" strategy against the real embedded service, on a tiny job (no
pre-trained base): the planted job, the learning-rate range test requested through POST /jobs/{id}/probes,
and one fork at its suggested rate, recorded as the benchmark records every strategy; then what a resumed run
does with the jobs an interrupted one left going."""

from __future__ import annotations

import httpx
import pytest

from benchmarks.autopilot import run
from tests.procs import embedded_env, start_embedded, wait_for
from tests.specs import running_spec, small_spec

pytestmark = pytest.mark.slow


def test_probe_only_forks_once_at_the_range_tests_rate_and_counts_the_probe_apart_and_resume_cancels_left_overs(
    tmp_path,
):
    proc, url = start_embedded(embedded_env(tmp_path / "home", PLATEAU_RECONCILE_INTERVAL="1"), tmp_path / "e.log")
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            spec = small_spec(epochs=2, optimizer={"learning_rate": 1e-6})
            record = run.run_strategy(api, "probe_only", spec, goal=0.0, seed=0)
            probe = record["probe"]
            listed = api.get(f"/jobs/{record['jobs'][0]}/probes").json()["items"]
            assert [(p["id"], p["name"], p["status"]) for p in listed] == [(probe["id"], "lr_range", probe["status"])]
            assert probe["seconds"] == listed[0]["duration_seconds"] and probe["wall_seconds"] >= probe["seconds"] > 0
            lineage = record["lineage"]
            assert [s["job_id"] for s in lineage["steps"]] == record["jobs"]
            assert lineage["best_job_id"] in record["jobs"] and record["best_job_id"] == lineage["best_job_id"]
            if record["learning_rate"] is None:  # the range test read no rate: the root alone, and why
                assert record["jobs"] and len(record["jobs"]) == 1 and record["no_fork"], (record, proc.tail())
                assert record["epochs"] == 2
            else:
                root, child = record["jobs"]
                assert record["learning_rate"] == pytest.approx(probe["suggested_rate"])
                forked = api.get(f"/jobs/{child}").json()
                assert forked["parent_id"] == root and forked["status"] == "succeeded", (forked, proc.tail())
                assert forked["spec"]["optimizer"]["learning_rate"] == pytest.approx(record["learning_rate"])
                assert lineage["steps"][1]["patch"] == {"optimizer": {"learning_rate": record["learning_rate"]}}
                assert (record["rounds"], record["epochs"]) == (1, 4)
            assert record["reached"] is True and record["epochs_saved_by_warm_starts"] == 0

            left = api.post("/jobs", json=running_spec(epochs=30)).json()["id"]
            assert run.cancel_left_over(api) == [left]
            wait_for(lambda: api.get(f"/jobs/{left}").json()["status"] == "cancelled", 120, proc.tail, interval=1)
            assert run.cancel_left_over(api) == []  # the ended jobs are left alone
    finally:
        proc.stop(timeout=60)
