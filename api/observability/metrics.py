"""Prometheus metrics of the API process.

Request latency is measured as requests pass (see `middleware.py`). Everything about jobs is read from
the database and the broker when Prometheus scrapes, by a custom collector: every API replica reports
the same numbers, and nothing is lost when a process restarts.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import structlog
from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, func
from sqlmodel import select

from models.settings import Settings, get_settings
from models.tables import EpochMetric, Job, JobEvent, JobStatus, WebhookDelivery

log = structlog.get_logger()

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

REQUEST_SECONDS = Histogram(
    "plateau_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status code.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)

EMBEDDED_RESTARTS = Counter(
    "plateau_embedded_restarts",
    "Children of the embedded launcher (worker, reconciler) started again after they exited.",
    ["process"],
    registry=REGISTRY,
)

# Celery's Redis transport keeps messages sent with a priority in sibling lists "<queue>\x06\x16<step>".
_PRIORITY_STEPS = (3, 6, 9)
_KOMBU_SEP = "\x06\x16"


@lru_cache(maxsize=4)
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)


def queue_depth(settings: Settings) -> int | None:
    """Messages waiting in the training queue; None when the broker is not Redis."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    pipe = _redis(settings.broker_url).pipeline(transaction=False)
    for key in (settings.queue, *(f"{settings.queue}{_KOMBU_SEP}{p}" for p in _PRIORITY_STEPS)):
        pipe.llen(key)
    return sum(int(n) for n in pipe.execute())


class JobsCollector(Collector):
    """Jobs by state, state changes, epoch rows, per-job training throughput and queue depth, read at scrape time."""

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        from models.db import session_scope

        settings = get_settings()
        up = GaugeMetricFamily(
            "plateau_metrics_source_up",
            "1 when the source answered during this scrape, 0 when it did not.",
            labels=["source"],
        )
        try:
            with session_scope() as s:
                by_state = dict(s.exec(select(Job.status, func.count()).group_by(Job.status)).all())
                epochs = s.exec(select(func.count()).select_from(EpochMetric)).one()
                # the lifecycle's hook writes one state event per transition, in whichever process made it
                transitions = dict(
                    s.exec(
                        select(JobEvent.to_status, func.count())
                        .where(JobEvent.kind == "state")
                        .group_by(JobEvent.to_status)
                    ).all()
                )
                latest = (
                    select(EpochMetric.job_id, func.max(EpochMetric.epoch).label("epoch"))
                    .join(Job, Job.id == EpochMetric.job_id)
                    .where(Job.status == JobStatus.running.value)
                    .group_by(EpochMetric.job_id)
                    .subquery()
                )
                deliveries = dict(
                    s.exec(select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)).all()
                )
                speeds = s.exec(
                    select(EpochMetric.job_id, EpochMetric.images_per_second).join(
                        latest, and_(EpochMetric.job_id == latest.c.job_id, EpochMetric.epoch == latest.c.epoch)
                    )
                ).all()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even while the database is away
            log.warning("metrics: database unavailable", error=f"{type(exc).__name__}: {exc}")
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            jobs = GaugeMetricFamily("plateau_jobs", "Jobs in the database, by state.", labels=["state"])
            for state in JobStatus:
                jobs.add_metric([state.value], by_state.get(state.value, 0))
            yield jobs
            moved = CounterMetricFamily(
                "plateau_job_transitions", "Job state changes, by the state entered.", labels=["state"]
            )
            for state in JobStatus:
                moved.add_metric([state.value], transitions.get(state.value, 0))
            yield moved
            outbox = GaugeMetricFamily("plateau_webhook_deliveries", "Webhook outbox rows, by state.", labels=["state"])
            for state in ("pending", "sending", "delivered", "dead"):
                outbox.add_metric([state], deliveries.get(state, 0))
            yield outbox
            yield GaugeMetricFamily(
                "plateau_epochs_recorded", "Epoch rows written by workers (one per job and epoch).", value=epochs
            )
            speed = GaugeMetricFamily(
                "plateau_training_images_per_second",
                "Training throughput of each running job in its latest recorded epoch.",
                labels=["job_id"],
            )
            for job_id, ips in speeds:
                if ips is not None:
                    speed.add_metric([str(job_id)], ips)
            yield speed
        try:
            depth = queue_depth(settings)
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: broker unavailable", error=f"{type(exc).__name__}: {exc}")
            up.add_metric(["broker"], 0)
        else:
            if depth is not None:
                up.add_metric(["broker"], 1)
                depth_family = GaugeMetricFamily(
                    "plateau_queue_depth", "Training tasks waiting on the Redis broker.", labels=["queue"]
                )
                depth_family.add_metric([settings.queue], depth)
                yield depth_family
        yield up


REGISTRY.register(JobsCollector())
