"""The benchmark's image families write what a plant asks for: the requested number of files per class, each
image of the requested size."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from benchmarks.diagnosis.families import FAMILIES, SIZE, write_split


@pytest.mark.parametrize("name", ["counts", "quality", "layouts"])
def test_a_family_writes_the_requested_files_per_class_at_the_requested_size(name, tmp_path):
    family = FAMILIES[name]
    asked = {cls: n for cls, n in zip(family.classes, (3, 1, 2, 4), strict=True)}
    write_split(family, tmp_path, asked, random.Random(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(family.classes)
    for cls, n in asked.items():
        files = sorted((tmp_path / cls).glob("*.png"))
        assert len(files) == n
        for f in files:
            with Image.open(f) as img:
                assert (img.size, img.mode) == ((SIZE, SIZE), "RGB")
    write_split(family, tmp_path / "small", {family.classes[0]: 2}, random.Random(1), size=40)
    for f in (tmp_path / "small" / family.classes[0]).glob("*.png"):
        with Image.open(f) as img:
            assert img.size == (40, 40)


def test_quality_is_held_out_with_four_classes():
    family = FAMILIES["quality"]
    assert family.held_out and family.classes == ("sharp", "blurred", "pixelated", "speckled")
    assert not FAMILIES["scenes"].held_out and not FAMILIES["counts"].held_out  # development since their scoring


def test_layouts_is_held_out_and_its_classes_differ_in_arrangement_only():
    family = FAMILIES["layouts"]
    assert family.held_out and family.classes == ("row", "column", "diagonal", "ring")
    # every class draws on the same noise and palette: the mean brightness cannot tell the classes apart
    means = {}
    for cls in family.classes:
        rng = random.Random(3)
        means[cls] = sum(sum(family.draw(cls, SIZE, rng).convert("L").getdata()) / SIZE**2 for _ in range(20)) / 20
    assert max(means.values()) - min(means.values()) < 12
