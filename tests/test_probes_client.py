"""`plateau probes` and `plateau label-issues`, and the SDK calls behind them, against a real API process."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from client.cli import app
from client.sdk import PlateauClient, PlateauError
from models.db import session_scope
from models.tables import Job
from tests.procs import start_api
from tests.specs import small_spec
from tests.test_probes_api import SUSPECTS, finished_label_check


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    proc, url = start_api({}, tmp_path_factory.mktemp("probes-client") / "api.log")
    yield url
    proc.stop()
    with session_scope() as s:  # leave no active jobs behind for the per-tenant limit
        s.execute(
            update(Job)
            .where(Job.name == "probes-cli", Job.status.in_(["queued", "running"]))
            .values(status="cancelled")
        )
        s.commit()


def plateau(api: str, *args: str):
    return CliRunner().invoke(app, ["--url", api, *args])


def test_sdk_and_cli_run_list_and_page_probes(api):
    with PlateauClient(api) as client:
        job = client.submit(small_spec(name="probes-cli"))
        queued = client.run_probes(job.id, ["linear_probe"], budget_seconds=30)
        assert [p.name for p in queued] == ["linear_probe"] and queued[0].inputs == {"budget_seconds": 30}
        with pytest.raises(PlateauError) as bad:
            client.run_probes(job.id, ["crystal_ball"])
        assert bad.value.status_code == 422 and "probes" in bad.value.message
        with pytest.raises(PlateauError) as busy:
            client.run_probes(job.id, ["linear_probe"])
        assert busy.value.status_code == 409
        assert client.cancel_probe(job.id, queued[0].id).status == "cancelled"
        assert list(client.label_issues(job.id)) == []
    jid = str(job.id)

    r = plateau(api, "probes", jid, "--run", "label_check", "--budget", "20")
    assert r.exit_code == 0, r.output
    assert "queued: label_check" in r.output and "linear_probe" in r.output and "cancelled" in r.output
    listed = json.loads(plateau(api, "probes", jid, "--json").output)
    assert {p["name"]: p["status"] for p in listed} == {"label_check": "queued", "linear_probe": "cancelled"}
    assert plateau(api, "probes", jid, "--run", "label_check").exit_code == 5  # already queued: 409

    empty = plateau(api, "label-issues", jid)
    assert empty.exit_code == 0 and "no label issues" in empty.output
    finished_label_check(jid, SUSPECTS)
    shown = plateau(api, "label-issues", jid, "--limit", "3")
    assert shown.exit_code == 0 and SUSPECTS[0]["file"] in shown.output and SUSPECTS[3]["file"] not in shown.output
    with PlateauClient(api) as client:  # the SDK follows the cursor across pages
        assert [i.file for i in client.label_issues(jid, page_size=2)] == [s["file"] for s in SUSPECTS]
    as_json = json.loads(plateau(api, "label-issues", jid, "--json", "--limit", "2").output)
    assert [i["n"] for i in as_json] == [0, 1] and as_json[0]["suspected"] == "square"
    assert plateau(api, "label-issues", "00000000-0000-0000-0000-000000000000").exit_code == 3
