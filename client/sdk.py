"""A typed Python client for the Plateau HTTP API.

    from client import PlateauClient

    with PlateauClient("http://127.0.0.1:8000") as plateau:
        job = plateau.submit({"dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val"}, "epochs": 5})
        for row in plateau.follow_metrics(job.id):
            print(row.epoch, row.val_accuracy)
        print(plateau.analysis(job.id).summary)

Every method returns the service's own response models (pydantic), and raises `PlateauError`
on an HTTP error and `PlateauConnectionError` when the service cannot be reached.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from contract.analysis import AnalysisRead
from contract.autopilot import AutopilotRead, AutopilotSpec, LineageRead, LineageStep, OutcomesRead
from contract.epoch import EpochRead
from contract.jobs import JobDetail, JobRead, MetricsPage
from contract.probes import LabelIssueRead, ProbeRead, ProbeRequest
from contract.spec import JobSpec
from contract.status import TERMINAL_STATUSES

__all__ = [
    "TERMINAL",
    "AnalysisRead",
    "AutopilotRead",
    "AutopilotSpec",
    "EpochRead",
    "JobDetail",
    "JobRead",
    "LabelIssueRead",
    "LineageRead",
    "LineageStep",
    "OutcomesRead",
    "PlateauClient",
    "PlateauConnectionError",
    "PlateauError",
    "ProbeRead",
    "ServerEvent",
    "parse_sse",
]

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = TERMINAL_STATUSES
JobId = str | uuid.UUID


class PlateauError(Exception):
    """The service answered with an HTTP error. `detail` is its `detail` field: a message, or for 422 a list of
    `{"loc": [...], "msg": ..., "type": ...}` field errors."""

    def __init__(self, status_code: int | None, detail: Any):
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {self.message}" if status_code else self.message)

    @property
    def field_errors(self) -> list[dict[str, Any]]:
        """The 422 field errors, if this is one."""
        if isinstance(self.detail, list):
            return [e for e in self.detail if isinstance(e, dict)]
        return []

    @property
    def message(self) -> str:
        if self.field_errors:
            return "; ".join(f"{field_name(e.get('loc', []))}: {e.get('msg')}" for e in self.field_errors)
        return str(self.detail)


class PlateauConnectionError(PlateauError):
    """No HTTP answer: the service is down, unreachable, or too slow."""

    def __init__(self, detail: str):
        super().__init__(None, detail)


def field_name(loc: Iterable[Any]) -> str:
    """`["body", "dataset", "image_size"]` → `dataset.image_size`."""
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "(request)"


@dataclass(frozen=True)
class ServerEvent:
    """One Server-Sent Event: its type, its id (pass back to resume), and its data (parsed JSON when it is JSON)."""

    event: str
    data: Any
    id: str | None = None


def parse_sse(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Events from the lines of a `text/event-stream` body (WHATWG rules: comments, multi-line data, id, event)."""
    data: list[str] = []
    event_type = ""
    last_id: str | None = None
    for line in lines:
        if line == "":
            if data:
                text = "\n".join(data)
                try:
                    value: Any = json.loads(text)
                except ValueError:
                    value = text
                yield ServerEvent(event=event_type or "message", data=value, id=last_id)
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            continue  # a comment: keep-alive pings
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
        # "retry" and unknown fields are ignored


def _job_path(job_id: JobId) -> str:
    return f"/jobs/{job_id}"


class PlateauClient:
    """A connection to one Plateau service. Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"Accept": "application/json", "User-Agent": "plateau-client/0.1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers, transport=transport)

    def __enter__(self) -> PlateauClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise PlateauConnectionError(
                f"cannot reach Plateau at {self.base_url}: {exc or type(exc).__name__}"
            ) from exc
        if response.is_error:
            raise _http_error(response)
        return response

    # -- jobs -----------------------------------------------------------------------------------------------------

    def submit(
        self,
        spec: Mapping[str, Any] | JobSpec,
        idempotency_key: str | None = None,
        autopilot: Mapping[str, Any] | AutopilotSpec | None = None,
    ) -> JobRead:
        """Queue a job. The spec is validated here first; invalid specs raise `PlateauError(422, field errors)`
        without a request. A repeated `idempotency_key` with the same spec returns the job it first created.
        `autopilot` (e.g. `{"max_rounds": 3}`) puts the job under autopilot: see `lineage`."""
        body = validate_spec(spec)
        if autopilot is not None:
            body = {**body, "autopilot": validate_autopilot(autopilot)}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return JobRead.model_validate(self._request("POST", "/jobs", json=body, headers=headers).json())

    def jobs(self, status: str | None = None, limit: int | None = None, page_size: int = 100) -> Iterator[JobRead]:
        """Jobs, newest first, following the service's cursor page by page; at most `limit` of them (all if None)."""
        cursor: str | None = None
        seen = 0
        while True:
            size = page_size if limit is None else max(1, min(page_size, limit - seen))
            params: dict[str, Any] = {"limit": size}
            if status:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor
            page = self._request("GET", "/jobs", params=params).json()
            for item in page["items"]:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield JobRead.model_validate(item)
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and seen >= limit):
                return

    def job(self, job_id: JobId) -> JobDetail:
        """One job with its events, children and ancestors."""
        return JobDetail.model_validate(self._request("GET", _job_path(job_id)).json())

    def metrics(self, job_id: JobId, after_epoch: int | None = None, page_size: int = 1000) -> list[EpochRead]:
        """Every epoch row after `after_epoch` (all when None), ascending."""
        rows: list[EpochRead] = []
        cursor = after_epoch
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if cursor is not None:
                params["after_epoch"] = cursor
            page = MetricsPage.model_validate(
                self._request("GET", f"{_job_path(job_id)}/metrics", params=params).json()
            )
            if not page.items:  # the service may cap the page below page_size: only an empty page is the end
                return rows
            rows.extend(page.items)
            cursor = page.next_after_epoch

    def follow_metrics(self, job_id: JobId, poll: float = 1.0, after_epoch: int | None = None) -> Iterator[EpochRead]:
        """Yield epoch rows as they are recorded; returns once the job is terminal and every row was yielded."""
        cursor = after_epoch
        while True:
            status = self.job(job_id).status  # read before the rows: a terminal status means no row is missing
            for row in self.metrics(job_id, after_epoch=cursor):
                cursor = row.epoch
                yield row
            if status in TERMINAL:
                return
            time.sleep(poll)

    def cancel(self, job_id: JobId) -> JobRead:
        """Cancel a queued job, or ask a running one to stop; a finished job raises `PlateauError(409)`."""
        return JobRead.model_validate(self._request("POST", f"{_job_path(job_id)}/cancel").json())

    # -- analysis ---------------------------------------------------------------------------------------------------

    def analysis(
        self, job_id: JobId, rules: Iterable[str] | None = None, params: Mapping[str, Any] | None = None
    ) -> AnalysisRead:
        """The job's stagnation diagnosis. `params` overrides rule parameters, either flat
        (`{"overfitting.ratio_threshold": 0.2}`) or nested (`{"overfitting": {"ratio_threshold": 0.2}}`)."""
        query: dict[str, Any] = {}
        if rules:
            query["rules"] = ",".join(rules)
        for key, value in (params or {}).items():
            if isinstance(value, Mapping):
                for inner, v in value.items():
                    query[f"{key}.{inner}"] = _query_value(v)
            else:
                query[key] = _query_value(value)
        return AnalysisRead.model_validate(self._request("GET", f"{_job_path(job_id)}/analysis", params=query).json())

    def fork(self, job_id: JobId, apply: Iterable[str] = (), patch: Mapping[str, Any] | None = None) -> JobRead:
        """Queue a new job from this job's spec with the remedies `apply` (ids from its analysis) and a JSON merge
        `patch` applied, linked to this job as its parent."""
        body = {"apply": list(apply), "patch": dict(patch or {})}
        return JobRead.model_validate(self._request("POST", f"{_job_path(job_id)}/fork", json=body).json())

    # -- probes -----------------------------------------------------------------------------------------------------

    def run_probes(
        self, job_id: JobId, probes: Iterable[str] | None = None, budget_seconds: int | None = None
    ) -> list[ProbeRead]:
        """Queue probes (all when `probes` is None) on the job's data and latest weights; they run on the worker
        queue and never change the job. 409 when one of them is already queued or running."""
        try:
            request = ProbeRequest.model_validate(
                {"probes": None if probes is None else list(probes), "budget_seconds": budget_seconds}
            )
        except ValidationError as exc:
            raise PlateauError(422, [{"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors()]) from None
        body = request.model_dump(exclude_none=True)
        page = self._request("POST", f"{_job_path(job_id)}/probes", json=body).json()
        return [ProbeRead.model_validate(p) for p in page["items"]]

    def probes(self, job_id: JobId) -> list[ProbeRead]:
        """The job's probes, newest first, with their results."""
        page = self._request("GET", f"{_job_path(job_id)}/probes").json()
        return [ProbeRead.model_validate(p) for p in page["items"]]

    def cancel_probe(self, job_id: JobId, probe_id: str | uuid.UUID) -> ProbeRead:
        """Cancel a queued probe, or ask a running one to stop; an ended probe raises `PlateauError(409)`."""
        return ProbeRead.model_validate(self._request("POST", f"{_job_path(job_id)}/probes/{probe_id}/cancel").json())

    def label_issues(self, job_id: JobId, limit: int | None = None, page_size: int = 200) -> Iterator[LabelIssueRead]:
        """Suspect labels of the latest label check, most suspect first, following the cursor; at most `limit`."""
        cursor: str | None = None
        seen = 0
        while True:
            params: dict[str, Any] = {"limit": page_size if limit is None else max(1, min(page_size, limit - seen))}
            if cursor:
                params["cursor"] = cursor
            page = self._request("GET", f"{_job_path(job_id)}/label-issues", params=params).json()
            for item in page["items"]:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield LabelIssueRead.model_validate(item)
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and seen >= limit):
                return

    # -- autopilot --------------------------------------------------------------------------------------------------

    def start_autopilot(
        self, job_id: JobId, autopilot: Mapping[str, Any] | AutopilotSpec | None = None, **config: Any
    ) -> AutopilotRead:
        """Put an existing job under autopilot (`max_rounds`, `metric`, `min_gain`, `min_confidence`); 409 when it
        already is part of an autopilot lineage."""
        body = validate_autopilot(
            {**dict(autopilot or {}), **config} if not isinstance(autopilot, AutopilotSpec) else autopilot
        )
        return AutopilotRead.model_validate(self._request("POST", f"{_job_path(job_id)}/autopilot", json=body).json())

    def lineage(self, job_id: JobId) -> LineageRead:
        """The chain from the root: each job's diagnosis, the remedy its fork applied, and the measured gain."""
        return LineageRead.model_validate(self._request("GET", f"{_job_path(job_id)}/lineage").json())

    def remedy_outcomes(self, metric: str | None = None) -> OutcomesRead:
        """Measured fork outcomes of this tenant per (cause, remedy, metric)."""
        params = {"metric": metric} if metric else {}
        return OutcomesRead.model_validate(self._request("GET", "/remedies/outcomes", params=params).json())

    # -- events -----------------------------------------------------------------------------------------------------

    def events(
        self, job_id: JobId, last_event_id: str | None = None, *, poll: float | None = None, reconnect: int = 3
    ) -> Iterator[ServerEvent]:
        """The job's Server-Sent Events (`state`, `epoch`, `lr_reduced`, `finding`, …, and a final `end`).

        Starts after `last_event_id` when given. The iterator ends when the service ends the stream, after the
        job is terminal. A dropped connection is resumed from the last id received, up to `reconnect` times in a
        row; each event's `id` can also be stored and passed back later.
        """
        params = {"poll": poll} if poll is not None else {}
        failures, connected = 0, False
        # Keep-alive pings arrive every 15 s; a longer silence means the connection is gone.
        timeout = httpx.Timeout(self.timeout, read=max(self.timeout, 60.0))
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                with self._http.stream(
                    "GET", f"{_job_path(job_id)}/events", params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.is_error:
                        response.read()
                        raise _http_error(response)
                    connected = True
                    for event in parse_sse(response.iter_lines()):
                        failures = 0
                        if event.id is not None:
                            last_event_id = event.id
                        yield event
                return
            except httpx.TransportError as exc:
                failures += 1
                if not connected or failures > reconnect:
                    raise PlateauConnectionError(
                        f"event stream from {self.base_url} lost: {exc or type(exc).__name__}"
                    ) from exc
                time.sleep(min(0.5 * 2 ** (failures - 1), 5.0))


def validate_autopilot(config: Mapping[str, Any] | AutopilotSpec) -> dict[str, Any]:
    """The JSON body of an autopilot config, checked with the service's schema; raises `PlateauError(422)`."""
    if isinstance(config, AutopilotSpec):
        return config.model_dump(mode="json")
    try:
        return AutopilotSpec.model_validate(dict(config)).model_dump(mode="json")
    except ValidationError as exc:
        errors = json.loads(exc.json(include_url=False))
        raise PlateauError(
            422, [{"loc": ["body", "autopilot", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]
        ) from exc


def validate_spec(spec: Mapping[str, Any] | JobSpec) -> dict[str, Any]:
    """The JSON body for a spec, after checking it with the service's own schema; raises `PlateauError(422)`."""
    if isinstance(spec, JobSpec):
        return spec.model_dump(mode="json", exclude_unset=True)
    try:
        JobSpec.model_validate(spec)
    except ValidationError as exc:
        errors = json.loads(exc.json(include_url=False))
        raise PlateauError(
            422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]
        ) from exc
    return dict(spec)


def _query_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _http_error(response: httpx.Response) -> PlateauError:
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = response.text or response.reason_phrase
    return PlateauError(response.status_code, detail)
