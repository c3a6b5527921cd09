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


def running_spec(epochs: int, **overrides) -> dict:
    """A job still running a while after its first epochs, however fast the machine: tests that act on a running
    job (kill its worker, stop its database) need that. Feature caching off, so every epoch runs the whole base,
    at 150 px: about 1 s an epoch on a 2-core Xeon, where a cached 75 px epoch takes under 0.1 s."""
    spec = small_spec(epochs, performance={"cache_features": "off"}, **overrides)
    spec["dataset"] = {**spec["dataset"], "image_size": 150}
    return spec
