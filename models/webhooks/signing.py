"""The webhook body and its signature: what a receiver verifies."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import datetime
from typing import Any

SIGNATURE_HEADER = "X-Plateau-Signature"
TIMESTAMP_HEADER = "X-Plateau-Timestamp"
EVENT_HEADER = "X-Plateau-Event"
DELIVERY_HEADER = "X-Plateau-Delivery"


def payload(event: str, job_id: uuid.UUID | str, status: str | None, at: datetime, data: dict[str, Any] | None) -> dict:
    return {"event": event, "job_id": str(job_id), "status": status, "at": at.isoformat(), "data": data or {}}


def encode(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True, default=str).encode()


def sign(secret: str, body: bytes) -> str:
    """The X-Plateau-Signature value: HMAC-SHA256 of the raw body, hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute over the raw body and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)
