"""Data sets with planted causes, written as class-subfolder directories under <root>/<family>/s<seed>/.

Each seed draws its own base set (32 training and 12 validation images per class, 75×75); the planted
variants are copies of it with images dropped or moved, so a plant differs from its healthy run of the
same family and seed only in what was planted.
"""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

from benchmarks.diagnosis.families import FAMILIES, write_split

TRAIN, VAL = 32, 12
NOISE_FRACTION = 0.4  # of each class's training images moved to another class
IMBALANCE_RATIO = 5.0  # majority : each other class, below the rule's count threshold (checked below)
FEW_PER_CLASS = 4


def base_set(root: Path, family: str, seed: int) -> Path:
    out = root / family / f"s{seed}" / "base"
    if not (out / "val").exists():
        fam = FAMILIES[family]
        rng = random.Random(fam.seed * 1000 + seed)
        tmp = out.with_name("base.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write_split(fam, tmp / "train", {c: TRAIN for c in fam.classes}, rng)
        write_split(fam, tmp / "val", {c: VAL for c in fam.classes}, rng)
        tmp.rename(out)  # whole or absent: an interrupted run never leaves half a set
    return out


def _variant(root: Path, family: str, seed: int, name: str, fill) -> Path:
    src = base_set(root, family, seed)
    out = src.with_name(name)
    if not out.exists():
        tmp = out.with_name(name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src / "val", tmp / "val")
        fill(src / "train", tmp / "train", sorted(p.name for p in (src / "train").iterdir()), random.Random(seed))
        tmp.rename(out)
    return out


def _keep(src: Path, dst: Path, keep: dict[str, int]) -> None:
    for cls, n in keep.items():
        (dst / cls).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / cls).iterdir())[:n]:
            shutil.copy(f, dst / cls / f.name)


def few(root: Path, family: str, seed: int) -> Path:
    return _variant(
        root, family, seed, "few", lambda s, d, classes, _rng: _keep(s, d, {c: FEW_PER_CLASS for c in classes})
    )


def count_threshold() -> float:
    from analysis.rules import RULES

    return RULES["class_imbalance"].params().ratio_threshold


def imbalanced(root: Path, family: str, seed: int) -> Path:
    """The first class keeps all its images, every other class 1/IMBALANCE_RATIO of them; validation balanced."""
    minority = math.ceil(TRAIN / IMBALANCE_RATIO)
    if TRAIN / minority >= count_threshold():
        raise ValueError("the mild imbalance must stay below the class-imbalance rule's count threshold")
    return _variant(
        root,
        family,
        seed,
        "imbalanced",
        lambda s, d, classes, _rng: _keep(s, d, {c: TRAIN if i == 0 else minority for i, c in enumerate(classes)}),
    )


def noisy(root: Path, family: str, seed: int) -> Path:
    def fill(src: Path, dst: Path, classes: list[str], rng: random.Random) -> None:
        for cls in classes:
            (dst / cls).mkdir(parents=True, exist_ok=True)
        for cls in classes:
            files = sorted((src / cls).iterdir())
            rng.shuffle(files)
            moved = round(NOISE_FRACTION * len(files))
            for i, f in enumerate(files):
                dest = rng.choice([c for c in classes if c != cls]) if i < moved else cls
                shutil.copy(f, dst / dest / f"{cls}-{f.name}")

    return _variant(root, family, seed, "noisy", fill)
