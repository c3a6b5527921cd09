"""A job's validation predictions at its best epoch, stored compactly: one byte (or two, past 255 classes) per image.

`{"epoch": 7, "dtype": "B", "predicted": "<base64>", "labels": "<base64>"}`, both in validation-file order, so two
jobs scored on the same images are compared image by image (a McNemar test) rather than by one accuracy each."""

from __future__ import annotations

import base64
from array import array
from collections.abc import Sequence


def encode(epoch: int, predicted: Sequence[int], labels: Sequence[int]) -> dict:
    if len(predicted) != len(labels):
        raise ValueError("one prediction per validation label")
    dtype = "B" if max([*predicted, *labels], default=0) < 256 else "H"

    def pack(values: Sequence[int]) -> str:
        return base64.b64encode(array(dtype, [int(v) for v in values]).tobytes()).decode()

    return {"epoch": int(epoch), "dtype": dtype, "predicted": pack(predicted), "labels": pack(labels)}


def decode(stored: dict) -> tuple[list[int], list[int]]:
    """(predicted, labels) as lists of class indices."""

    def unpack(text: str) -> list[int]:
        return array(stored["dtype"], base64.b64decode(text)).tolist()

    return unpack(stored["predicted"]), unpack(stored["labels"])


def correct(stored: dict) -> tuple[list[bool], list[int]]:
    """Per image, whether the prediction was right; and the labels (to check two jobs saw the same images)."""
    predicted, labels = decode(stored)
    return [p == y for p, y in zip(predicted, labels)], labels
