"""Generate small labelled image sets (coloured shapes on noise) for demos, tests and benchmarks.

`python -m samples.shapes OUT_DIR --classes 3 --train 20 --val 8 --size 96`
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar", "diamond", "dots")


def draw(shape: str, size: int, rng: random.Random) -> Image.Image:
    noise = np.random.default_rng(rng.randrange(2**32)).integers(0, 90, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(noise)
    d = ImageDraw.Draw(img)
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    color = tuple(rng.randrange(140, 256) for _ in range(3))
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=color)
    elif shape == "square":
        d.rectangle(box, fill=color)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    elif shape == "cross":
        w = r / 3
        d.rectangle((cx - w, cy - r, cx + w, cy + r), fill=color)
        d.rectangle((cx - r, cy - w, cx + r, cy + w), fill=color)
    elif shape == "ring":
        d.ellipse(box, outline=color, width=max(2, int(r / 3)))
    elif shape == "bar":
        d.rectangle((cx - r, cy - r / 4, cx + r, cy + r / 4), fill=color)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=color)
    else:
        for _ in range(6):
            x, y = rng.uniform(cx - r, cx + r), rng.uniform(cy - r, cy + r)
            d.ellipse((x - r / 6, y - r / 6, x + r / 6, y + r / 6), fill=color)
    return img


def write_split(out: Path, counts: dict[str, int], size: int, rng: random.Random) -> None:
    for shape, n in counts.items():
        folder = out / shape
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            draw(shape, size, rng).save(folder / f"{shape}_{i:04d}.png")


def generate(
    out: Path,
    *,
    classes: int = 3,
    train: int = 20,
    val: int = 8,
    size: int = 96,
    seed: int = 0,
    train_counts: dict[str, int] | None = None,
) -> Path:
    """Writes OUT/train/<class>/*.png and OUT/val/<class>/*.png; returns OUT."""
    if not 2 <= classes <= len(SHAPES):
        raise ValueError(f"classes must be between 2 and {len(SHAPES)}")
    rng = random.Random(seed)
    names = SHAPES[:classes]
    write_split(out / "train", train_counts or {s: train for s in names}, size, rng)
    write_split(out / "val", {s: val for s in names}, size, rng)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--train", type=int, default=20, help="training images per class")
    parser.add_argument("--val", type=int, default=8, help="validation images per class")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, classes=args.classes, train=args.train, val=args.val, size=args.size, seed=args.seed)
    print(args.out)


if __name__ == "__main__":
    main()
