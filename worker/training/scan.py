"""Check a class-subfolder image directory before any tensor is built, so failures name the file or folder."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from worker.training.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}


@dataclass
class ImageSet:
    classes: list[str]
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in self.classes}
        for label in self.labels:
            out[self.classes[label]] += 1
        return out

    def __len__(self) -> int:
        return len(self.paths)


def scan(folder: Path, *, field_name: str, classes: list[str] | None = None) -> ImageSet:
    if not folder.is_dir():
        raise DataError(f"{field_name} {folder.name!r} is not a directory")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{field_name} has no class subfolders (expected one folder of images per class)")
    if classes is None:
        if len(found) < 2:
            raise DataError(f"{field_name} has a single class ({found[0]!r}); a classifier needs at least 2")
        classes = found
    elif found != classes:
        raise DataError(f"{field_name} classes {found} differ from train_dir classes {classes}")
    images = ImageSet(classes=classes)
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"{field_name} class folder {name!r} has no images")
        for path in files:
            _check_image(path, folder)
            images.paths.append(str(path))
            images.labels.append(label)
    return images


def _check_image(path: Path, root: Path) -> None:
    shown = path.relative_to(root).as_posix()
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"file {shown} is not an image (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        with Image.open(path) as img:  # reads the header only; decoding happens in tf.data
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"file {shown} is not an image ({exc.__class__.__name__})") from exc


def split(images: ImageSet, fraction: float, seed: int | None) -> tuple[ImageSet, ImageSet]:
    """Stratified hold-out: each class keeps the same share in validation, at least one image."""
    rng = random.Random(seed)
    train, val = ImageSet(images.classes), ImageSet(images.classes)
    for label in range(len(images.classes)):
        members = [p for p, l in zip(images.paths, images.labels) if l == label]
        rng.shuffle(members)
        n_val = max(1, round(len(members) * fraction))
        if n_val >= len(members):
            raise DataError(f"class {images.classes[label]!r} has {len(members)} image(s), too few for validation_split")
        for i, path in enumerate(members):
            target = val if i < n_val else train
            target.paths.append(path)
            target.labels.append(label)
    return train, val
