"""Which file, if any, the base's weights come from: the spec's own file under the data root, or for "imagenet"
the operator's local copy of the ImageNet weights (Settings.imagenet_weights_file), so air-gapped workers never
download. None: Keras builds the base itself (random, or the ImageNet download)."""

from __future__ import annotations

from pathlib import Path

from contract.spec import JobSpec
from models.paths import resolve_under
from models.settings import get_settings


def weights_file_for(spec: JobSpec, *, data_root: Path) -> Path | None:
    """The path the base loads its weights from; not checked for existence here (callers say what is missing)."""
    weights = spec.model.weights
    if weights is None:
        return None
    if weights == "imagenet":
        local = get_settings().imagenet_weights_file
        return Path(local).expanduser().resolve() if local is not None else None
    return resolve_under(data_root, weights)


def missing_reason(spec: JobSpec, path: Path) -> str:
    if spec.model.weights == "imagenet":
        return f"the local ImageNet weights file {str(path)!r} (PLATEAU_IMAGENET_WEIGHTS_FILE) does not exist"
    return f"weights file {spec.model.weights!r} does not exist under the data root"
