"""Errors of the domain a caller can act on: unknown, conflicting, over a limit, or invalid in context.

Raised by the services in models/; the API maps them to 404, 409, 429 and 422."""


class NotFound(Exception):
    def __init__(self, what: str):
        self.what = what


class Conflict(Exception):
    def __init__(self, detail: str):
        self.detail = detail


class LimitExceeded(Exception):
    """A per-tenant limit is reached (HTTP 429)."""

    def __init__(self, detail: str):
        self.detail = detail


class InvalidField(Exception):
    """A request that parsed but is invalid in context, reported like FastAPI's own 422s."""

    def __init__(self, errors: list[dict]):
        self.errors = errors


def field_error(loc: tuple[str, ...], msg: str, kind: str = "value_error") -> dict:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}
