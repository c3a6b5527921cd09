"""Refuse JSON that parses but that the service can neither store nor send back, naming where it is.

Python's JSON parser accepts `NaN` and `Infinity`, lone surrogates (`"\\ud800"`) and NULs, and any
nesting depth. None of them is a sensible value of any field, and each fails far from the request:
PostgreSQL refuses NUL in text and non-finite numbers in JSON, no database can encode a lone
surrogate, the response renderer refuses NaN, and a deep patch overflows the stack when merged.
One walk over the parsed body, before any model sees it, turns all of them into 422s.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

MAX_DEPTH = 32  # the spec nests 4 deep; a patch on it needs no more


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        return "contains a lone surrogate (not valid Unicode)"
    return None


def problems(value: Any, loc: tuple = ()) -> list[dict]:
    """Pydantic-style errors for every non-finite number, bad string and too-deep nesting in `value`.

    Iterative, so the walk itself cannot overflow the stack; a too-deep value is named at its
    top-level field (for a fork, `patch`) and not walked further.
    """
    found: list[dict] = []
    stack: list[tuple[Any, tuple, int]] = [(value, loc, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                found.append(_error(where[:1], f"is nested deeper than {MAX_DEPTH} levels", "too_deep"))
                continue
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and (msg := _string_problem(key)):
                    found.append(_error(where, f"has a key that {msg}", "string_unicode"))
                    continue
                stack.append((child, (*where, key), depth + 1))
        elif isinstance(item, float) and not math.isfinite(item):
            found.append(_error(where, f"must be a finite number, not {item}", "finite_number"))
        elif isinstance(item, str) and (msg := _string_problem(item)):
            found.append(_error(where, msg, "string_unicode"))
    # one error per top-level field for depth: a wide deep body would otherwise list the same field many times
    unique = {(tuple(e["loc"]), e["msg"]): e for e in found}
    return sorted(unique.values(), key=lambda e: [str(p) for p in e["loc"]])


def _error(loc: tuple, msg: str, kind: str) -> dict:
    # Strings in loc are keys already checked above; a bad key is reported at its parent.
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


async def refuse_hostile_json(request: Request) -> None:
    """A dependency of every route: runs after FastAPI parsed the body and before the body is validated."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type.split(";")[0]:
        return
    try:
        body = await request.json()  # already parsed by FastAPI for routes with a body: cached, not parsed again
    except Exception:  # noqa: BLE001 - not JSON: the route's own parsing answers that
        return
    errors = problems(body)
    if errors:
        raise RequestValidationError(errors)
