"""Target data sets with planted causes, written as class-subfolder directories."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from worker.sample_data import SHAPES, write_split

TARGETS = {
    # thresholds are the rules' published defaults; A and B are reported separately
    "A": {"classes": SHAPES[:4], "seed": 11},
    "B": {"classes": SHAPES[4:8], "seed": 22},
}


def base_set(root: Path, target: str, *, train: int = 40, val: int = 16) -> Path:
    out = root / f"target{target}"
    if not out.exists():
        rng = random.Random(TARGETS[target]["seed"])
        classes = TARGETS[target]["classes"]
        write_split(out / "train", {c: train for c in classes}, 80, rng)
        write_split(out / "val", {c: val for c in classes}, 80, rng)
    return out


def _copy_subset(src: Path, dst: Path, keep: dict[str, int]) -> None:
    for cls, n in keep.items():
        (dst / cls).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / cls).iterdir())[:n]:
            shutil.copy(f, dst / cls / f.name)


def noisy(root: Path, target: str, fraction: float = 0.5, seed: int = 0) -> Path:
    """Move `fraction` of each class's training images into a random other class."""
    src = base_set(root, target)
    out = root / f"target{target}-noise"
    if out.exists():
        return out
    shutil.copytree(src / "val", out / "val")
    classes = sorted(p.name for p in (src / "train").iterdir())
    rng = random.Random(seed)
    for cls in classes:
        (out / "train" / cls).mkdir(parents=True, exist_ok=True)
    for cls in classes:
        files = sorted((src / "train" / cls).iterdir())
        rng.shuffle(files)
        for i, f in enumerate(files):
            dest = rng.choice([c for c in classes if c != cls]) if i < fraction * len(files) else cls
            shutil.copy(f, out / "train" / dest / f"{cls}-{f.name}")
    return out


def imbalanced(root: Path, target: str) -> Path:
    src = base_set(root, target)
    out = root / f"target{target}-imbalanced"
    if not out.exists():
        classes = sorted(p.name for p in (src / "train").iterdir())
        _copy_subset(src / "train", out / "train", {c: (40 if i == 0 else 3) for i, c in enumerate(classes)})
        shutil.copytree(src / "val", out / "val")
    return out


def shrunken(root: Path, target: str, per_class: int = 3) -> Path:
    src = base_set(root, target)
    out = root / f"target{target}-small"
    if not out.exists():
        classes = sorted(p.name for p in (src / "train").iterdir())
        _copy_subset(src / "train", out / "train", {c: per_class for c in classes})
        shutil.copytree(src / "val", out / "val")
    return out
