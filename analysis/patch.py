"""RFC 7386 JSON merge patch, the format every remedy's `patch` uses."""

from __future__ import annotations

import copy
from typing import Any


def apply_patch(spec: dict, patch: dict) -> dict:
    """Return `spec` with `patch` merged in (RFC 7386); neither argument is modified.

    Objects merge key by key, a null value deletes the key, anything else replaces the target.
    """
    return _merge(copy.deepcopy(spec), patch)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result
