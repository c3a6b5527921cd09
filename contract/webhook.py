"""The spec's webhook field: its shape only. Which targets this service may reach depends on its settings
and is checked at submit (`models.jobs.service.check_spec_in_context`) and again at delivery."""

from __future__ import annotations

from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contract.status import JobStatusName

Event = Literal[JobStatusName, "finding"]
"""Every state a job enters, and a finding of the in-training analysis."""
EVENTS: tuple[str, ...] = get_args(Event)


class WebhookSpec(BaseModel):
    """Where to POST a job's state changes and findings."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="http:// or https:// URL that receives the POSTs.")
    events: list[Event] | None = Field(
        None,
        min_length=1,
        description=f"Which events to send: {', '.join(EVENTS)}. All when null.",
    )

    @field_validator("url")
    @classmethod
    def _shape(cls, v: str) -> str:
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, not {parts.scheme or 'missing'!r}")
        if not parts.hostname:
            raise ValueError("has no host")
        return v

    @field_validator("events")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(v)) if v is not None else None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def wants(self, event: str) -> bool:
        return self.events is None or event in self.events
