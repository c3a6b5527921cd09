"""Resolve user paths strictly inside the data root."""

from pathlib import Path
from urllib.parse import unquote


class PathEscape(ValueError):
    pass


def resolve_under(root: Path, user_path: str) -> Path:
    """The real path of `user_path` below `root`; PathEscape when it points anywhere else.

    Absolute paths, `..`, URL-encoded forms of either and symlinks leading out are all refused:
    the check runs on the fully resolved path, so no spelling gets around it.
    """
    if "\x00" in user_path:
        raise PathEscape("contains a NUL byte")
    decoded = unquote(user_path)
    for form in {user_path, decoded}:
        if form.startswith(("/", "\\")) or (len(form) > 1 and form[1] == ":"):
            raise PathEscape("must be relative to the data root, not absolute")
        if ".." in Path(form.replace("\\", "/")).parts:
            raise PathEscape("must not contain '..'")
    real_root = root.resolve()
    target = (real_root / user_path).resolve()
    if target != real_root and real_root not in target.parents:
        raise PathEscape("resolves outside the data root (symlink)")
    return target
