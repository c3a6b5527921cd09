"""Resolve user paths strictly inside the data root."""

import os
from pathlib import Path
from urllib.parse import unquote

NAME_MAX = 255  # bytes in one path part (Linux, macOS and every common file system)
PATH_MAX = 4096  # bytes in a whole path (Linux)


class PathEscape(ValueError):
    pass


class NameTooLong(PathEscape):
    """A part of the path is longer than any file system allows: it cannot exist."""


def resolve_under(root: Path, user_path: str) -> Path:
    """The real path of `user_path` below `root`; PathEscape when it points anywhere else.

    Absolute paths, `..`, URL-encoded forms of either and symlinks leading out are all refused:
    the check runs on the fully resolved path, so no spelling gets around it. Names no file system
    can hold are refused before the file system is asked (it would answer ENAMETOOLONG).
    """
    if "\x00" in user_path:
        raise PathEscape("contains a NUL byte")
    decoded = unquote(user_path)
    for form in {user_path, decoded}:
        if form.startswith(("/", "\\")) or (len(form) > 1 and form[1] == ":"):
            raise PathEscape("must be relative to the data root, not absolute")
        if ".." in Path(form.replace("\\", "/")).parts:
            raise PathEscape("must not contain '..'")
    if any(len(os.fsencode(part)) > NAME_MAX for part in Path(user_path).parts):
        raise NameTooLong(f"has a name longer than {NAME_MAX} bytes")
    real_root = root.resolve()
    if len(os.fsencode(str(real_root / user_path))) >= PATH_MAX:
        raise NameTooLong(f"is longer than {PATH_MAX} bytes below the data root")
    try:
        target = (real_root / user_path).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise PathEscape("cannot be resolved (a symlink loop)") from exc
    if target != real_root and real_root not in target.parents:
        raise PathEscape("resolves outside the data root (symlink)")
    return target
