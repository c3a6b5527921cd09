"""The training set's pooled base features, kept with a head-only job for its probes.

A job that trains its head on cached features (`features.py`) has already paid for one forward pass of the frozen
base over its training images. It keeps those features in its folder (`TRAIN_FEATURES`), with what they were
computed from: each image's path, label and file stamp (size, modification time), the class names, the image size
and the base (its weights: ImageNet, a file by its SHA-256, or the job's own pinned random base; a warm start's
source). A probe of the job reads them instead of building Inception-V3 and running it again, when all of that
still holds; otherwise it computes them as before.

The base is frozen and runs in inference mode, so its features are the same whichever head the job has: the
weights the job started with and its latest ones share them. Stored in 16 bits a value over each feature's
own range (each within 1/131070 of that range: half the size of float32; the linear probe's out-of-fold
probabilities move by 0.002 at most on the job of tests/test_probe_features.py, so only an image at a near tie
between two classes may change),
as float32 when a value is not finite.

numpy and the standard library only: the probes read this without TensorFlow's cost when they need nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.spec import JobSpec
from models.artifacts import written_atomically

FORMAT = 1
_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: a weights file is hashed once


def sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


def base_identity(spec: JobSpec, weights_file: Path | None) -> dict:
    """What the features depend on besides the images: the image size and where the base's weights came from."""
    init = spec.model.init_from
    return {
        "format": FORMAT,
        "image_size": spec.dataset.image_size,
        "weights": spec.model.weights,  # "imagenet", a file under the data root, or None (the job's pinned base)
        "weights_sha256": sha256_of(weights_file) if weights_file is not None else None,
        "init_from": init.model_dump(mode="json") if init is not None else None,
    }


def file_stamps(paths: list[str]) -> np.ndarray:
    """(size, mtime_ns) of each image: a file replaced under the same name is not the image the features are of."""
    out = np.zeros((len(paths), 2), dtype="int64")
    for i, p in enumerate(paths):
        st = os.stat(p)
        out[i] = (st.st_size, st.st_mtime_ns)
    return out


def save(
    path: Path,
    *,
    features: np.ndarray,
    paths: list[str],
    labels: list[int],
    classes: list[str],
    identity: dict,
) -> int:
    """Writes the artifact whole or not at all; returns its size in bytes."""
    # 16 bits a value, over each feature's own range: within 1/131070 of that range, what a standardising reader
    # (the linear probe's scaler) needs even for the near-constant features of a random base
    features = np.asarray(features, dtype="float32")
    if features.size and np.all(np.isfinite(features)):
        low, high = features.min(axis=0), features.max(axis=0)
        step = np.where(high > low, (high - low) / 65535, 1.0).astype("float32")
        stored = np.clip(np.round((features - low) / step), 0, 65535).astype("uint16")
    else:  # nothing to quantise, or a non-finite value: as it is
        stored, low, step = features, np.zeros(features.shape[1:], "float32"), np.ones(features.shape[1:], "float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path) as tmp, open(tmp, "wb") as f:  # closed before the rename
        np.savez(
            f,
            features=stored,
            low=low,
            step=step,
            paths=np.asarray(paths, dtype=str),
            labels=np.asarray(labels, dtype="int32"),
            classes=np.asarray(classes, dtype=str),
            stamps=file_stamps(paths),
            identity=np.asarray(json.dumps(identity, sort_keys=True)),
        )
    return path.stat().st_size


def _decoded(z) -> np.ndarray:
    return (z["low"] + z["features"].astype("float32") * z["step"]).astype("float32")


def read(path: Path) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """(features, paths, labels, classes) as stored, with no check against the images: for reading a job's features
    offline (`benchmarks/diagnosis/label_check_eval.py`), never for a probe (`load` checks what they are of)."""
    with np.load(path, allow_pickle=False) as z:
        return _decoded(z), z["paths"].tolist(), z["labels"].astype("int64"), z["classes"].tolist()


@dataclass(frozen=True)
class Found:
    features: np.ndarray | None  # float32, one row per training image in the job's order; None: not usable
    reason: str  # why not, or "stored features"


def load(path: Path, *, paths: list[str], labels: list[int], classes: list[str], identity: dict) -> Found:
    """The stored features if they are of exactly these images (same files, order, labels, classes and stamps) through
    the same base at the same size; else why not."""
    if not path.is_file():
        return Found(None, "no stored features")
    try:
        with np.load(path, allow_pickle=False) as z:
            stored_identity = json.loads(str(z["identity"]))
            if stored_identity != identity:
                return Found(None, "stored features are of another base or image size")
            if z["paths"].tolist() != list(paths) or z["classes"].tolist() != list(classes):
                return Found(None, "stored features are of other files")
            if not np.array_equal(z["labels"], np.asarray(labels, dtype="int32")):
                return Found(None, "stored features have other labels")
            if not np.array_equal(z["stamps"], file_stamps(paths)):
                return Found(None, "training images changed since their features were stored")
            features = _decoded(z)
    except (OSError, ValueError, KeyError) as exc:  # unreadable or from an older format: compute them again
        return Found(None, f"stored features unreadable ({type(exc).__name__})")
    if features.shape[0] != len(paths):
        return Found(None, "stored features do not match the image count")
    return Found(features, "stored features")
