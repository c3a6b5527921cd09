"""Job specs the tests submit."""

from __future__ import annotations


def small_spec(epochs: int = 3, **overrides) -> dict:
    """A job that trains in about a minute on this machine: 75×75, frozen random-init base, 24 images."""
    spec = {
        "name": "shapes",
        "dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val", "image_size": 75},
        "model": {"weights": None, "trainable": "head", "dense_units": 32},
        "batch_size": 8,
        "epochs": epochs,
        "seed": 7,
    }
    spec.update(overrides)
    return spec
