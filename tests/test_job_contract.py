"""The job, its events and the autopilot are declared once in contract/: the tables generate their public columns
from it, the API answers with it, and every list of statuses is derived from one Literal (no database)."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from contract.autopilot import END_REASONS, AutopilotRead, AutopilotRecord, EndReason
from contract.jobs import JobEventRead, JobEventRecord, JobRead, JobRecord
from contract.status import JOB_STATUSES, TERMINAL_STATUSES, JobStatusName
from contract.webhook import EVENTS, WebhookSpec
from models.tables import Autopilot, Job, JobEvent, JobStatus


@pytest.mark.parametrize(
    ("record", "table", "private"),
    [
        (JobRecord, Job, {"owner", "spec_hash", "idempotency_key", "lease_until", "metrics_version"}),
        (JobEventRecord, JobEvent, {"id", "job_id"}),
        (AutopilotRecord, Autopilot, {"owner"}),
    ],
)
def test_each_table_has_a_column_per_contract_field_and_only_its_private_ones_besides(record, table, private):
    columns = set(table.__table__.columns.keys())
    assert set(record.model_fields) <= columns
    assert columns - set(record.model_fields) == private


def test_the_public_models_extend_the_records_instead_of_restating_them():
    assert set(JobRead.model_fields) - set(JobRecord.model_fields) == {"links"}
    assert set(JobEventRead.model_fields) == set(JobEventRecord.model_fields)
    assert set(AutopilotRead.model_fields) == set(AutopilotRecord.model_fields)


def test_every_status_list_is_derived_from_the_literal():
    assert JOB_STATUSES == get_args(JobStatusName) == ("queued", "running", "succeeded", "failed", "cancelled")
    assert [s.value for s in JobStatus] == list(JOB_STATUSES)
    assert {s.value for s in JobStatus if s.terminal} == TERMINAL_STATUSES
    assert EVENTS == (*JOB_STATUSES, "finding")
    assert END_REASONS == get_args(EndReason)
    assert isinstance(JobStatus.queued, str) and JobStatus.queued == "queued"


def test_a_status_outside_the_literal_is_refused():
    with pytest.raises(ValidationError, match="status"):
        JobRecord.model_validate(
            {
                "id": "00000000-0000-0000-0000-000000000001",
                "spec": {},
                "created_at": "2026-01-01T00:00:00Z",
                "status": "paused",
            }
        )
    with pytest.raises(ValidationError, match="events"):
        WebhookSpec(url="https://example.com/hook", events=["paused"])
