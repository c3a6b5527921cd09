"""Webhooks: the spec rule on targets, signed delivery with retries, the notifier (no Celery, no training)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from api.errors import InvalidField
from api.jobs.service import check_spec_in_context
from contract.spec import JobSpec
from models import webhooks as hooks
from models.db import session_scope
from models.settings import Settings
from models.tables import Job, utcnow
from models.webhooks import delivery as webhooks
from models.webhooks import targets
from models.webhooks.delivery import Notifier, deliver, send_event
from tests.procs import free_port
from tests.specs import small_spec

SECRET = "test-webhook-secret"


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers with the next scripted status."""

    def __init__(self, statuses: list[int] | None = None):
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def settings(**kw) -> Settings:
    return Settings(
        **{
            "webhook_secret": SECRET,
            "webhook_allow_private": True,
            "webhook_backoff_seconds": 0.01,
            "webhook_timeout_seconds": 5,
            **kw,
        }
    )


def body_of(event: str = "succeeded") -> dict:
    return hooks.payload(event, uuid.uuid4(), event, utcnow(), {"stop_reason": None})


def spec_with(webhook: dict) -> dict:
    return small_spec(webhook=webhook)


def add_job(webhook: dict | None) -> uuid.UUID:
    spec = small_spec(webhook=webhook) if webhook is not None else small_spec()
    with session_scope() as s:
        job = Job(owner="default", spec=spec, spec_hash="0" * 64, status="running")
        s.add(job)
        s.commit()
        return job.id


# --- the spec ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://api.localhost/hook",
        "http://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "http://172.16.5.5/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fd00::5]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://2130706433/hook",
        "http://127.1/hook",
        "http://0x7f.0.0.1/hook",
        "http://100.64.0.1/hook",
    ],
)
def test_private_targets_are_refused_at_submit(client, url):
    r = client.post("/jobs", json=spec_with({"url": url}))
    assert r.status_code == 422, (url, r.text)
    errors = r.json()["detail"]
    assert any(
        e["loc"] == ["body", "webhook", "url"] and "PLATEAU_WEBHOOK_ALLOW_PRIVATE" in e["msg"] for e in errors
    ), errors


@pytest.mark.parametrize(
    "webhook, fragment",
    [
        ({"url": "ftp://example.com/hook"}, "scheme must be http or https"),
        ({"url": "file:///etc/passwd"}, "scheme must be http or https"),
        ({"url": "example.com/hook"}, "scheme must be http or https"),
        ({"url": "http:///hook"}, "has no host"),
        ({"url": "http://example.com:99999/hook"}, "not a valid URL"),
        ({"url": "https://example.com/hook", "events": ["succeeded", "exploded"]}, "Input should be"),
        ({"url": "https://example.com/hook", "events": []}, "at least 1"),
        ({"url": "https://example.com/hook", "secret": "x"}, "Extra inputs"),
    ],
)
def test_bad_webhook_fields_are_422(client, webhook, fragment):
    r = client.post("/jobs", json=spec_with(webhook))
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(e["loc"][:2] == ["body", "webhook"] and fragment in e["msg"] for e in errors), errors


def test_public_webhook_is_accepted_and_stored(client):
    hook = {"url": "https://hooks.example.com/plateau?token=abc", "events": ["succeeded", "failed", "succeeded"]}
    r = client.post("/jobs", json=spec_with(hook))
    assert r.status_code == 202, r.text
    assert r.json()["spec"]["webhook"] == {"url": hook["url"], "events": ["succeeded", "failed"]}
    assert client.post("/jobs", json=small_spec()).json()["spec"]["webhook"] is None


def test_private_targets_allowed_by_setting(tmp_path):
    """The spec model knows no settings: the service's submit check decides which targets it may reach."""
    spec = JobSpec.model_validate(spec_with({"url": "http://127.0.0.1:9/hook"}))
    assert spec.webhook.url == "http://127.0.0.1:9/hook"

    def webhook_errors(allow_private: bool) -> list[dict]:
        try:
            check_spec_in_context(spec=spec, settings=settings(webhook_allow_private=allow_private, data_root=tmp_path))
        except InvalidField as exc:
            return [e for e in exc.errors if e["loc"] == ["body", "webhook", "url"]]
        return []

    refused = webhook_errors(False)
    assert len(refused) == 1 and "PLATEAU_WEBHOOK_ALLOW_PRIVATE" in refused[0]["msg"], refused
    assert webhook_errors(True) == []


@pytest.mark.parametrize(
    "address, refused",
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("169.254.1.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("::ffff:10.0.0.1", True),
        ("2002:7f00:1::", True),
        ("64:ff9b::a00:1", True),
        ("224.0.0.1", True),
        ("93.184.216.34", False),
        ("2606:2800:220:1:248:1893:25c8:1946", False),
        ("8.8.8.8", False),
    ],
)
def test_address_rule(address, refused):
    assert (hooks.address_refusal(ipaddress.ip_address(address)) is not None) is refused


# --- delivery ------------------------------------------------------------------------------------------


def test_delivery_is_signed_and_carries_the_payload():
    body = body_of("succeeded")
    with Receiver() as rx:
        result = deliver(rx.url, body, settings=settings())
    assert result.ok and result.attempts == 1 and result.status_code == 200
    ((headers, raw),) = rx.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-plateau-signature"], expected)
    assert hooks.verify(SECRET, raw, headers["x-plateau-signature"])
    assert not hooks.verify("another-secret", raw, headers["x-plateau-signature"])
    assert abs(int(headers["x-plateau-timestamp"]) - time.time()) < 60
    assert headers["content-type"] == "application/json" and headers["x-plateau-event"] == "succeeded"
    sent = json.loads(raw)
    assert set(sent) == {"event", "job_id", "status", "at", "data"} and sent == json.loads(hooks.encode(body))


def test_5xx_is_retried_with_backoff_until_it_succeeds():
    waits: list[float] = []
    with Receiver([500, 503, 200]) as rx:
        result = deliver(rx.url, body_of(), settings=settings(webhook_backoff_seconds=0.5), sleep=waits.append)
    assert result.ok and result.attempts == 3
    assert len(rx.requests) == 3
    assert len({raw for _, raw in rx.requests}) == 1  # the same body, so the same signature, each time
    assert len({h["x-plateau-delivery"] for h, _ in rx.requests}) == 1
    assert waits == [0.5, 1.0]  # exponential


def test_two_500s_then_200_really_waits_and_delivers():
    with Receiver([500, 500, 200]) as rx:
        started = time.monotonic()
        result = deliver(rx.url, body_of(), settings=settings(webhook_backoff_seconds=0.05))
        elapsed = time.monotonic() - started
    assert result.ok and result.attempts == 3 and len(rx.requests) == 3
    assert elapsed >= 0.05 + 0.1 - 0.01
    headers, raw = rx.requests[-1]
    assert hooks.verify(SECRET, raw, headers["x-plateau-signature"])


def test_attempts_are_bounded():
    with Receiver([500] * 10) as rx:
        result = deliver(rx.url, body_of(), settings=settings(webhook_max_attempts=3))
    assert not result.ok and result.attempts == 3 and result.status_code == 500 and len(rx.requests) == 3


def test_4xx_is_not_retried():
    with Receiver([400, 200]) as rx:
        result = deliver(rx.url, body_of(), settings=settings())
    assert not result.ok and result.attempts == 1 and result.status_code == 400 and "not retried" in result.error


def test_connection_errors_are_retried():
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens
    result = deliver(url, body_of(), settings=settings(webhook_max_attempts=3))
    assert not result.ok and result.attempts == 3 and "ConnectError" in result.error


def test_private_target_refused_at_send_time_after_resolution():
    with Receiver() as rx:
        strict = settings(webhook_allow_private=False)
        for url in (rx.url, rx.url.replace("127.0.0.1", "localhost")):  # a name resolving to loopback too
            result = deliver(url, body_of(), settings=strict)
            assert not result.ok and result.attempts == 1 and "target refused" in result.error, result
            assert "loopback" in result.error
    assert rx.requests == []


def test_unsigned_without_a_secret():
    with Receiver() as rx:
        assert deliver(rx.url, body_of(), settings=settings(webhook_secret=None)).ok
    ((headers, _),) = rx.requests
    assert "x-plateau-signature" not in headers and "x-plateau-timestamp" in headers


# --- events of a job ---------------------------------------------------------------------------------


def test_send_event_uses_the_jobs_webhook_and_its_event_filter():
    with Receiver() as rx:
        job_id = add_job({"url": rx.url, "events": ["succeeded", "finding"]})
        result = send_event(job_id, "succeeded", status="succeeded", data={"stop_reason": "done"}, settings=settings())
        assert result is not None and result.ok
        assert send_event(job_id, "running", settings=settings()) is None  # not subscribed
        assert send_event(add_job(None), "succeeded", settings=settings()) is None  # no webhook
        assert send_event(uuid.uuid4(), "succeeded", settings=settings()) is None  # no such job
    ((headers, raw),) = rx.requests
    sent = json.loads(raw)
    assert sent["event"] == "succeeded" and sent["job_id"] == str(job_id) and sent["status"] == "succeeded"
    assert sent["data"] == {"stop_reason": "done"} and sent["at"]
    assert hooks.verify(SECRET, raw, headers["x-plateau-signature"])


def test_notifier_returns_at_once_and_sends_in_order(monkeypatch):
    monkeypatch.setattr(webhooks, "get_settings", lambda: settings())
    with Receiver([500, 200]) as rx:
        job_id = add_job({"url": rx.url})
        notifier = Notifier()
        started = time.monotonic()
        notifier.notify(job_id, "running", status="running", data={"attempt": 1})
        notifier.notify(job_id, "finding", status="running", data={"reason": "plateau"})
        notifier.notify(job_id, "succeeded", status="succeeded")
        assert time.monotonic() - started < 0.5
        assert notifier.flush(timeout=20)
    events = [json.loads(raw)["event"] for _, raw in rx.requests]
    assert events == ["running", "running", "finding", "succeeded"]  # the first was retried after a 500


def test_notifier_survives_a_failing_sender():
    calls = []

    def sender(job_id, event, **kw):
        calls.append(event)
        if event == "bad":
            raise RuntimeError("database away")

    notifier = Notifier(send=sender)
    notifier.notify(uuid.uuid4(), "bad")
    notifier.notify(uuid.uuid4(), "good")
    assert notifier.flush(timeout=5) and calls == ["bad", "good"]


def test_worker_sink_notifies_findings(monkeypatch):
    from worker import db_sink

    sent = []
    monkeypatch.setattr(webhooks, "notify", lambda *a, **kw: sent.append((a, kw)))
    from models.lifecycle import Fence

    def sink(job_id):  # a worker's sink writes only while its attempt holds the job
        with session_scope() as s:
            s.get(Job, job_id).sqlmodel_update({"worker_host": "w:1", "attempts": 1})
            s.commit()
        return db_sink.DbSink(Fence(job_id, 1, "w:1"))

    job_id = add_job({"url": "https://hooks.example.com/plateau"})
    sink(job_id).event("finding", "val_loss plateaued", {"rule": "plateau"})
    sink(job_id).event("lr_reduced", "learning rate 1e-3 → 1e-4")
    sink(add_job(None)).event("finding", "no webhook, nothing sent", {"rule": "plateau"})
    assert sent == [
        (
            (job_id, "finding"),
            {"status": None, "data": {"reason": "val_loss plateaued", "finding": {"rule": "plateau"}}},
        )
    ]


def test_connection_is_pinned_to_the_checked_address(monkeypatch):
    public = ipaddress.ip_address("93.184.216.34")
    monkeypatch.setattr(targets, "resolve_target", lambda host, port: [public])
    target, headers, extensions = webhooks._pinned("https://hooks.example.com:8443/x?y=1", allow_private=False)
    assert str(target) == "https://93.184.216.34:8443/x?y=1"
    assert headers == {"Host": "hooks.example.com:8443"} and extensions == {"sni_hostname": "hooks.example.com"}
    target, headers, extensions = webhooks._pinned("http://hooks.example.com/x", allow_private=False)
    assert str(target) == "http://93.184.216.34/x" and headers == {"Host": "hooks.example.com"} and extensions == {}


def test_a_name_with_any_private_address_is_refused(monkeypatch):
    monkeypatch.setattr(
        targets,
        "resolve_target",
        lambda host, port: [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.7")],
    )
    result = deliver("https://rebind.example.com/hook", body_of(), settings=settings(webhook_allow_private=False))
    assert not result.ok and result.attempts == 1 and "10.0.0.7" in result.error


def test_api_side_transitions_are_sent(client, monkeypatch):
    sent = []
    monkeypatch.setattr(webhooks, "notify", lambda job_id, event, **kw: sent.append((str(job_id), event)))
    job = client.post("/jobs", json={**small_spec(), "webhook": {"url": "https://hooks.example.com/plateau"}}).json()
    client.post(f"/jobs/{job['id']}/cancel")
    plain = client.post("/jobs", json=small_spec()).json()
    client.post(f"/jobs/{plain['id']}/cancel")
    assert sent == [(job["id"], "queued"), (job["id"], "cancelled")]
