"""Check a class-subfolder image directory before any tensor is built, so failures name the file or folder."""

from __future__ import annotations

import os
import random
import stat
from concurrent.futures import ThreadPoolExecutor
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


def scan(
    folder: Path,
    *,
    field_name: str,
    classes: list[str] | None = None,
    root: Path | None = None,
    exclude: list[str] | None = None,
    verify: bool = True,
) -> ImageSet:
    """The images of `folder`, checked. Symlinks may point anywhere inside `root` (the data root; `folder`
    itself when not given), never out of it: a class folder or file leading out fails the job, named.
    `exclude`: files to leave out, as paths relative to `folder` (the spec's `dataset.exclude`). `verify=False`
    skips decoding every image (a probe reads images its job's training already checked)."""
    left_out = {Path(p).as_posix() for p in exclude or []}
    boundary = "the data root" if root is not None else field_name
    root = (root or folder).resolve()
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
        _inside(folder / name, root, boundary, f"{field_name} class folder {name!r}")
        # Everything but folders: a FIFO, socket, device or broken link named like an image is reported, not skipped.
        files = sorted(
            p
            for p in (folder / name).iterdir()
            if not p.name.startswith(".") and not p.is_dir() and f"{name}/{p.name}" not in left_out
        )
        if not files:
            shown = " left after dataset.exclude" if left_out else ""
            raise DataError(f"{field_name} class folder {name!r} has no images{shown}")
        for path in files:
            _inside(path, root, boundary, f"{field_name} file {path.relative_to(folder).as_posix()}")
            _regular(path, f"{field_name} file {path.relative_to(folder).as_posix()}")
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                shown = path.relative_to(folder).as_posix()
                raise DataError(f"file {shown} is not an image (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
            images.paths.append(str(path))
            images.labels.append(label)
    if verify:
        _check_images([Path(p) for p in images.paths], folder)
    return images


def _inside(path: Path, root: Path, boundary: str, what: str) -> None:
    """Refuse a symlink leading out of the data root, before anything below it is listed or read."""
    real = path.resolve()
    if real != root and root not in real.parents:
        raise DataError(f"{what} is a symlink leading outside {boundary}")


def _regular(path: Path, what: str) -> None:
    """Refuse anything but a regular file: reading a FIFO blocks, a device never ends."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise DataError(
            f"{what} cannot be read ({'a broken symlink' if path.is_symlink() else exc.strerror})"
        ) from None
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
        raise DataError(f"{what} is not a regular file ({kind})")


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_images(paths: list[Path], root: Path) -> None:
    """Check every image, a few at a time (the decoders run without the GIL), and name the first bad one.

    Pillow reads the header and checks the structure: it refuses a decompression bomb before any pixels are
    allocated. Then TensorFlow decodes the pixels with the decode training uses, so a file it cannot read
    (a TIFF named x.jpg, a PNG whose pixel data is garbage, a truncated JPEG) fails here naming the file instead
    of failing mid-epoch naming none.
    """
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for path, problem in zip(paths, pool.map(_image_problem, paths)):
            if problem:
                raise DataError(f"file {path.relative_to(root).as_posix()} is not an image ({problem})")


def _image_problem(path: Path) -> str | None:
    try:
        with Image.open(path) as img:  # the header: a decompression bomb is refused here, before any pixels
            img.verify()  # structure and checksums; the pixels are decoded once, below, by TensorFlow
    except UnidentifiedImageError:  # its message holds the absolute path: say it in words
        return "UnidentifiedImageError: not a format Pillow can read"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        text = str(exc).replace(str(path), path.name)
        return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
    return _tensorflow_problem(path)


def _tensorflow_problem(path: Path) -> str | None:
    import tensorflow as tf

    from worker.training.decode import decode_image

    try:
        decode_image(tf.constant(path.read_bytes()))
    except tf.errors.InvalidArgumentError as exc:
        first = exc.message.split("\n", 1)[0].split(" [Op:", 1)[0].strip()
        return f"TensorFlow cannot decode it, as training would: {first}"
    return None


def split(images: ImageSet, fraction: float, seed: int | None) -> tuple[ImageSet, ImageSet]:
    """Stratified hold-out: each class keeps the same share in validation, at least one image."""
    rng = random.Random(seed)
    train, val = ImageSet(images.classes), ImageSet(images.classes)
    for label in range(len(images.classes)):
        members = [p for p, lab in zip(images.paths, images.labels) if lab == label]
        rng.shuffle(members)
        n_val = max(1, round(len(members) * fraction))
        if n_val >= len(members):
            raise DataError(
                f"class {images.classes[label]!r} has {len(members)} image(s), too few for validation_split"
            )
        for i, path in enumerate(members):
            target = val if i < n_val else train
            target.paths.append(path)
            target.labels.append(label)
    return train, val
