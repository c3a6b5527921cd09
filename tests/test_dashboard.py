"""The web dashboard under /ui: served by a real API process and rendered by headless Chromium.

Chromium's `--dump-dom` gives the DOM after the page's scripts ran; the fork button is clicked for real
through the Chrome DevTools Protocol. Set PLATEAU_UPDATE_SCREENSHOTS=1 to rewrite docs/images/dashboard.png.
"""

from __future__ import annotations

import json
import os
import uuid

import httpx
import pytest
from sqlalchemy import update

from models.db import session_scope
from models.lifecycle import upsert_epoch
from models.tables import Job
from tests.browser import Browser, dump_dom, needs_chromium, run, run_chromium
from tests.procs import ROOT, start_api
from tests.specs import small_spec

CLASSES = ("circle", "square", "triangle")
SCREENSHOT = ROOT / "docs" / "images" / "dashboard.png"


# ---------------------------------------------------------------------------------------------------------------
# Data


def overfitting_rows(n: int = 10) -> list[dict]:
    """Training loss falls while validation loss rises: the analysis reports overfitting with remedies."""
    rows = []
    for e in range(1, n + 1):
        recall = {"circle": round(min(1.0, 0.55 + 0.04 * e), 3), "square": 0.75, "triangle": round(0.5 - 0.02 * e, 3)}
        rows.append(
            {
                "epoch": e,
                "loss": 1.0 / e,
                "accuracy": min(1.0, 0.5 + 0.05 * e),
                "learning_rate": 1e-3 if e <= 6 else 1e-4,
                "train_eval_loss": 0.9 / e,
                "train_eval_accuracy": min(1.0, 0.52 + 0.05 * e),
                "val_loss": 0.8 + 0.05 * max(0, e - 3),
                "val_accuracy": 0.6,
                "val_recall": recall,
                "val_support": {c: 4 for c in CLASSES},
            }
        )
    return rows


def make_job(url: str, name: str, rows: list[dict], status: str, epochs: int = 10) -> str:
    r = httpx.post(f"{url}/jobs", json=small_spec(epochs=epochs, name=name), timeout=30)
    assert r.status_code == 202, r.text
    jid = r.json()["id"]
    with session_scope() as s:
        for row in rows:
            upsert_epoch(s, uuid.UUID(jid), row)
        s.execute(update(Job).where(Job.id == uuid.UUID(jid)).values(status=status))
        s.commit()
    return jid


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    proc, url = start_api({}, tmp_path_factory.mktemp("dashboard") / "api.log")
    yield url
    proc.stop()


@pytest.fixture(scope="module")
def jobs(api) -> dict[str, str]:
    return {
        "overfit": make_job(api, "dash-overfit", overfitting_rows(), "succeeded"),
        "running": make_job(api, "dash-running", overfitting_rows(3), "running"),
    }


# ---------------------------------------------------------------------------------------------------------------
# HTTP, without a browser


def test_pages_and_assets_are_served(client):
    r = client.get("/ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert 'id="jobs-table"' in r.text and "/ui/static/jobs.js?v=" in r.text and "{{" not in r.text
    jid = str(uuid.uuid4())
    page = client.get(f"/ui/jobs/{jid}")
    assert page.status_code == 200 and f'data-job-id="{jid}"' in page.text and "{{" not in page.text
    assert client.get("/ui/jobs/not-a-job").status_code == 422
    for name, kind in (
        ("common.js", "text/javascript"),
        ("charts.js", "text/javascript"),
        ("dashboard.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ):
        asset = client.get(f"/ui/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind), name
    for bad in ("../routes.py", "..%2Froutes.py", "%2E%2E%2F__init__.py", "nope.js", "..%2Ftemplates%2Findex.html"):
        assert client.get(f"/ui/static/{bad}").status_code == 404, bad


def test_progress_counts_finished_epochs(client):
    jid = client.post("/jobs", json=small_spec(epochs=10)).json()["id"]
    with session_scope() as s:
        for row in overfitting_rows(4):
            upsert_epoch(s, uuid.UUID(jid), row)
    empty = client.post("/jobs", json=small_spec(epochs=2)).json()["id"]
    missing = str(uuid.uuid4())
    body = client.get("/ui/api/progress", params={"ids": f"{jid},{empty},{missing}"}).json()
    assert body == {"items": {jid: 4, empty: 0}}
    assert client.get("/ui/api/progress", params={"ids": "x"}).status_code == 422
    assert client.get("/ui/api/progress").json() == {"items": {}}


# ---------------------------------------------------------------------------------------------------------------
# Rendered by Chromium


@needs_chromium
def test_job_list_renders_rows(api, jobs):
    dom = dump_dom(f"{api}/ui")
    over = dom.one("tr", data_testid="job-row", data_job_id=jobs["overfit"])
    assert over.attrs["data-status"] == "succeeded"
    assert over.one(data_testid="job-name").text().strip() == "dash-overfit"
    assert over.one(data_testid="job-status").text() == "succeeded"
    assert over.one(data_testid="epochs-done").text() == "10 / 10"
    assert over.one(data_testid="job-created").one("time").attrs["datetime"]
    link = over.one("a")
    assert link.attrs["href"] == f"/ui/jobs/{jobs['overfit']}"
    running = dom.one("tr", data_testid="job-row", data_job_id=jobs["running"])
    assert running.one(data_testid="job-status").text() == "running"
    assert running.one(data_testid="epochs-done").text() == "3 / 10"
    assert dom.by_id("error").attrs.get("hidden") is not None


@needs_chromium
def test_job_list_refreshes_itself_and_filters_by_status(api, jobs):
    async def scenario() -> None:
        async with Browser() as b:
            await b.goto(f"{api}/ui")
            await b.until(f"document.querySelector('[data-job-id=\"{jobs['overfit']}\"]') !== null")
            newcomer = make_job(api, "dash-newcomer", [], "queued")
            await b.until(f"document.querySelector('[data-job-id=\"{newcomer}\"]') !== null", timeout=20)
            await b.eval(
                "(() => { const s = document.getElementById('status-filter');"
                " s.value = 'running'; s.dispatchEvent(new Event('change')); })()"
            )
            statuses = await b.until(
                "(() => { const rows = [...document.querySelectorAll('[data-testid=job-row]')];"
                " const s = rows.map(r => r.dataset.status);"
                " return s.length && s.every(x => x === 'running') && s; })()"
            )
            assert set(statuses) == {"running"}
            assert b.errors == []

    run(scenario())


@needs_chromium
def test_job_page_renders_curves_recall_and_diagnosis(api, jobs):
    jid = jobs["overfit"]
    analysis = httpx.get(f"{api}/jobs/{jid}/analysis", timeout=30).json()
    assert analysis["primary_cause"] and analysis["findings"]
    dom = dump_dom(f"{api}/ui/jobs/{jid}")

    assert dom.one(data_testid="job-title").text() == "dash-overfit"
    assert dom.one(data_testid="job-status").text() == "succeeded"
    assert dom.one(data_testid="epochs-done").text() == "10 / 10"

    charts = {
        "chart-loss": ("loss", "train_eval_loss", "val_loss"),
        "chart-accuracy": ("accuracy", "train_eval_accuracy", "val_accuracy"),
        "chart-lr": ("learning_rate",),
    }
    for chart, series in charts.items():
        svg = dom.one("svg", data_testid=f"{chart}-svg")
        assert svg.attrs["role"] == "img" and svg.attrs["aria-label"]
        for key in series:
            group = svg.one("g", data_series=key)
            assert group.attrs["data-points"] == "10", (chart, key)
            assert len(group.all("circle")) == 10, (chart, key)
            if chart != "chart-lr":
                assert group.one("path").attrs["d"].count("L") == 9
        legend = dom.one(data_testid=f"{chart}-legend")
        assert [li.attrs["data-series"] for li in legend.all("li")] == list(series)

    lr_path = dom.one("svg", data_testid="chart-lr-svg").one("path").attrs["d"]
    assert lr_path.count("L") == 10  # a step: the one drop (epoch 6 → 7) is drawn across, then down

    bars = dom.one(data_testid="recall-bars").all("li", data_testid="recall-bar")
    last = overfitting_rows()[-1]["val_recall"]
    assert {b.attrs["data-class"]: float(b.attrs["data-recall"]) for b in bars} == last
    assert dom.by_id("recall-epoch").text() == "(epoch 10)"

    assert dom.one(data_testid="verdict").attrs["data-verdict"] == analysis["verdict"]
    assert dom.one(data_testid="primary-cause").attrs["data-cause"] == analysis["primary_cause"]
    assert dom.one(data_testid="diagnosis-summary").text() == analysis["summary"]
    cards = dom.all("article", data_testid="finding")
    assert [c.attrs["data-cause"] for c in cards] == [f["cause"] for f in analysis["findings"]]
    for card, finding in zip(cards, analysis["findings"]):
        assert card.attrs["data-rule"] == finding["rule"]
        if finding["thresholds"]:
            shown = {dd.attrs["data-key"] for dd in card.one(data_testid="thresholds").all("dd")}
            assert shown == set(finding["thresholds"])
        if finding["observed"]:
            shown = {dd.attrs["data-key"] for dd in card.one(data_testid="observed").all("dd")}
            assert shown == set(finding["observed"])
        if finding["epochs"]:
            assert card.one(data_testid="finding-epochs").text() == ", ".join(map(str, finding["epochs"]))
        buttons = card.all("button", data_testid="fork-button")
        assert [b.attrs["data-remedy"] for b in buttons] == [r["id"] for r in finding["remedies"]]
        assert all(b.text() == "Fork with this remedy" for b in buttons)
        for item, remedy in zip(card.all("li", data_testid="remedy"), finding["remedies"]):
            assert remedy["text"] in item.text()
            if remedy["patch"]:
                assert json.loads(item.one(data_testid="remedy-patch").text()) == remedy["patch"]


@needs_chromium
def test_fork_button_click_queues_child_and_opens_it(api, jobs):
    jid = jobs["overfit"]
    analysis = httpx.get(f"{api}/jobs/{jid}/analysis", timeout=30).json()
    finding = next(f for f in analysis["findings"] if f["cause"] == analysis["primary_cause"])
    remedy = next((r for r in finding["remedies"] if r["patch"]), finding["remedies"][0])
    children_before = set(httpx.get(f"{api}/jobs/{jid}", timeout=30).json()["children"])

    async def scenario() -> str:
        async with Browser() as b:
            await b.goto(f"{api}/ui/jobs/{jid}")
            await b.until(
                "document.body.dataset.loaded === 'true' && "
                "document.querySelectorAll('[data-testid=fork-button]').length > 0"
            )
            await b.click(f'[data-testid=fork-button][data-remedy="{remedy["id"]}"]')
            path = await b.until(
                f"location.pathname !== '/ui/jobs/{jid}' && "
                "location.pathname.startsWith('/ui/jobs/') && location.pathname"
            )
            child = path.rsplit("/", 1)[1]
            await b.until(
                f"document.body.dataset.loaded === 'true' && document.body.dataset.jobId === {json.dumps(child)}"
            )
            shown = await b.eval(
                "[document.querySelector('[data-testid=job-status]').textContent,"
                " document.querySelector('[data-testid=ancestors]').textContent]"
            )
            assert shown[0] == "queued" and jid[:8] in shown[1], shown
            await b.goto(f"{api}/ui/jobs/{jid}")
            links = await b.until(
                "document.body.dataset.loaded === 'true' && "
                "[...document.querySelectorAll('[data-testid=children] a')].map(a => a.title)"
            )
            assert child in links, links
            assert b.errors == []
            return child

    child_id = run(scenario())
    child = httpx.get(f"{api}/jobs/{child_id}", timeout=30).json()
    assert child["parent_id"] == jid and child["ancestors"] == [jid]
    assert set(httpx.get(f"{api}/jobs/{jid}", timeout=30).json()["children"]) == children_before | {child_id}
    for section, values in remedy["patch"].items():
        if isinstance(values, dict):
            for key, value in values.items():
                if not isinstance(value, dict):
                    assert child["spec"][section][key] == value
        else:
            assert child["spec"][section] == values


@needs_chromium
def test_api_key_is_stored_and_sent_as_bearer_token(api, tmp_path, jobs):
    from api.auth import create_key, revoke_key

    with session_scope() as s:
        key = create_key(session=s, tenant="default", label="dashboard test")
    proc, url = start_api({"PLATEAU_AUTH_ENABLED": "true"}, tmp_path / "api-auth.log")
    try:
        assert httpx.get(f"{url}/ui", timeout=30).status_code == 200  # the page itself holds no data

        async def scenario() -> None:
            async with Browser() as b:
                await b.goto(f"{url}/ui")
                message = await b.until(
                    "!document.getElementById('error').hidden && document.getElementById('error').textContent"
                )
                assert "API key" in message, message
                await b.type_into("#api-key", key)
                await b.click("#api-key-save")
                await b.until(f"document.querySelector('[data-job-id=\"{jobs['overfit']}\"]') !== null")
                assert await b.eval("localStorage.getItem('plateau.apiKey')") == key
                assert await b.eval("document.getElementById('error').hidden") is True
                await b.goto(f"{url}/ui/jobs/{jobs['overfit']}")
                await b.until("document.body.dataset.loaded === 'true'")
                assert await b.eval("document.querySelectorAll('[data-testid=recall-bar]').length") == 3
                # A refused fork says why next to the button and leaves the buttons usable.
                children = httpx.get(f"{api}/jobs/{jobs['overfit']}", timeout=30).json()["children"]
                with session_scope() as s:
                    assert revoke_key(session=s, key=key)
                await b.click("[data-testid=fork-button]")
                note = await b.until(
                    "[...document.querySelectorAll('[data-testid=fork-note]')].map(n => n.textContent).join('')"
                )
                assert "revoked" in note, note
                assert (
                    await b.eval(
                        "[...document.querySelectorAll('[data-testid=fork-button]')].every(btn => !btn.disabled)"
                    )
                    is True
                )
                assert await b.eval("location.pathname") == f"/ui/jobs/{jobs['overfit']}"
                assert httpx.get(f"{api}/jobs/{jobs['overfit']}", timeout=30).json()["children"] == children
                assert b.errors == []

        run(scenario())
    finally:
        proc.stop()


@needs_chromium
def test_screenshot(api, jobs, tmp_path):
    shot = tmp_path / "dashboard.png"
    run_chromium(
        [
            "--virtual-time-budget=8000",
            "--window-size=1280,1600",
            f"--screenshot={shot}",
            f"{api}/ui/jobs/{jobs['overfit']}",
        ]
    )
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 1600)
        colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is None or len(colors) > 50  # something was drawn
        if os.environ.get("PLATEAU_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(SCREENSHOT, optimize=True)


@needs_chromium
def test_lineage_cards_overlay_parent_and_child_curves(api, jobs):
    from models.autopilot.hooks import after_job_end

    parent = jobs["overfit"]
    r = httpx.post(
        f"{api}/jobs/{parent}/fork", json={"apply": [], "patch": {"regularization": {"dropout": 0.5}}}, timeout=30
    )
    assert r.status_code == 202, r.text
    child = r.json()["id"]
    rows = [{**row, "val_accuracy": 0.6 + 0.02 * row["epoch"]} for row in overfitting_rows(7)]
    with session_scope() as s:
        for row in rows:
            upsert_epoch(s, uuid.UUID(child), row)
        s.execute(update(Job).where(Job.id == uuid.UUID(child)).values(status="succeeded"))
        s.commit()
    after_job_end(uuid.UUID(child))  # what the worker does when a job ends: the fork's outcome is measured
    lineage = httpx.get(f"{api}/jobs/{child}/lineage", timeout=30).json()
    step = lineage["steps"][-1]
    assert step["gain"] == pytest.approx(0.74 - 0.6, abs=1e-6)

    dom = dump_dom(f"{api}/ui/jobs/{child}")
    assert dom.by_id("lineage").attrs.get("hidden") is None
    card = dom.one("article", data_testid="lineage-card")
    assert card.attrs["data-job-id"] == child
    text = card.text()
    assert "patch only" in text and "gain +0.14 ·" in text and "best 0.74 vs parent 0.6" in text and "7 epochs" in text
    svg = card.one("svg", data_testid=f"lineage-chart-{child}-svg")
    assert svg.one("g", data_series="parent").attrs["data-points"] == "10"
    assert svg.one("g", data_series="child").attrs["data-points"] == "7"
    assert "Forks from" in dom.by_id("lineage-state").text()


@needs_chromium
def test_job_page_shows_probes_and_label_issue_thumbnails(api, jobs):
    from tests.test_probes_api import SUSPECTS, finished_label_check

    jid = jobs["overfit"]
    finished_label_check(jid, SUSPECTS[:3])
    dom = dump_dom(f"{api}/ui/jobs/{jid}")
    rows = dom.one(data_testid="probes-table").all("tr", data_probe="label_check")
    assert rows and "succeeded" in rows[0].text()
    items = dom.one(data_testid="label-issues").all("li")
    assert [li.attrs["data-file"] for li in items] == [s["file"] for s in SUSPECTS[:3]]
    for li in items:  # each thumbnail was fetched (with the API key, when one is set) and shown
        assert li.one("img").attrs.get("src", "").startswith("blob:"), li.attrs
