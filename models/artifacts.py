"""Artifact files on disk: each is written whole or not at all, and a full disk is told apart from a bug.

A checkpoint or model is written under a temporary name in its own folder and renamed over the real one
(`os.replace`, atomic on one file system), so a reader, a resumed attempt or the artifacts listing never sees
a truncated file; the temporary file is removed when the write fails. A full artifacts volume is an
infrastructure fault: the worker hands the job back (see `worker.runner`) and `/readyz` reports it.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_PREFIX = ".partial-"
# Earlier releases wrote the frozen base to '<name>.partial.weights.h5' before renaming it.
_LEGACY_PARTIAL = ".partial."
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# h5py and TensorFlow report a full disk in their message only, without an errno.
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")


def partial_path(path: Path) -> Path:
    """The temporary name `path` is written under: same folder (so the rename is atomic), same ending (Keras
    picks the format from it), a leading dot and a prefix that marks it unfinished."""
    return path.with_name(PARTIAL_PREFIX + path.name)


def is_partial(name: str) -> bool:
    return name.startswith(PARTIAL_PREFIX) or _LEGACY_PARTIAL in name


@contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """Yields the temporary name to write; renames it to `path` when the block ends, removes it on any error."""
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # h5py names no file: say which artifact could not be written
        raise


def keep_copy(source: Path, target: Path) -> None:
    """`target` becomes a whole copy of `source`: a hard link where the file system has them (no extra space),
    else a byte copy, either way under a temporary name first."""
    with written_atomically(target) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def remove_partials(folder: Path) -> list[Path]:
    """Deletes what a killed or failed write left below `folder`; returns what it removed."""
    removed = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            if is_partial(name):
                path = Path(root) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def disk_full(exc: BaseException) -> OSError | BaseException | None:
    """The error in `exc`'s chain that says the disk (or the quota) is full, or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current
        if any(text in str(current) for text in _DISK_FULL_TEXT):
            return current
        current = current.__cause__ or current.__context__
    return None


def free_bytes(path: Path) -> int:
    """Free space on the volume holding `path` (or its nearest existing parent), for unprivileged writers."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def checkpoint_bytes(workdir: Path) -> int:
    """The size of the largest finished file under the job's checkpoints: what the next save needs at least."""
    sizes = [0]
    for root, _dirs, names in os.walk(Path(workdir) / "backup"):
        for name in names:
            if not is_partial(name):
                try:
                    sizes.append((Path(root) / name).stat().st_size)
                except OSError:
                    pass
    return max(sizes)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def space_problem(artifacts_dir: Path, min_free_bytes: int) -> str | None:
    """For `/readyz`: the artifacts volume has less free space than one checkpoint needs (`min_free_bytes`)."""
    try:
        free = free_bytes(artifacts_dir)
    except OSError as exc:
        return f"artifacts volume unreadable: {type(exc).__name__}"
    if free < min_free_bytes:
        return (
            f"artifacts volume {artifacts_dir} has {human_bytes(free)} free, "
            f"less than one checkpoint needs ({human_bytes(min_free_bytes)})"
        )
    return None
