"""The benchmark's cases: data builder, spec change, the cause ids that count as finding the plant, and
the check that says whether the plant manifested (benchmarks/diagnosis/manifest.py).

Recipes were chosen by looking at runs of the "shapes" family only; "textures" runs were never looked at
while choosing recipes, checks, rules or thresholds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.diagnosis import plant


@dataclass(frozen=True)
class Case:
    data: Callable[[Path, str, int], Path]
    changes: dict
    planted: str | None  # the cause id scored for this plant; None: a healthy run
    also_accepted: tuple[str, ...] = ()
    check: str = ""
    unfrozen: bool = False  # trains base layers: minutes per job instead of seconds

    @property
    def accepted(self) -> list[str]:
        return [self.planted, *self.also_accepted] if self.planted else []


BASE_SPEC = {
    "model": {"weights": "base.weights.h5", "trainable": "head", "dense_units": 128},
    "regularization": {"dropout": 0.2},
    "optimizer": {"name": "adam", "learning_rate": 1e-3},
    "batch_size": 16,
}

# The one table of cause ids the benchmark plants and accepts.
CASES: dict[str, Case] = {
    "healthy_converged": Case(plant.base_set, {}, None, check="healthy"),
    "healthy_improving": Case(plant.base_set, {"optimizer": {"learning_rate": 1e-4}}, None, check="healthy"),
    "frozen_random_init": Case(
        plant.base_set, {"model": {"weights": None}}, "base_too_frozen", check="frozen_random_init"
    ),
    "lr_too_high": Case(
        plant.base_set, {"optimizer": {"learning_rate": 1e-1}}, "learning_rate_too_high", check="lr_too_high"
    ),
    "lr_too_high_unfrozen": Case(
        plant.base_set,
        {"model": {"trainable": "mixed8"}, "optimizer": {"learning_rate": 1e-2}},
        "learning_rate_too_high_after_unfreezing",
        ("learning_rate_too_high",),
        check="lr_too_high_unfrozen",
        unfrozen=True,
    ),
    "lr_too_low": Case(
        plant.base_set, {"optimizer": {"learning_rate": 1e-6}}, "learning_rate_too_low", check="lr_too_low"
    ),
    "regularization_too_strong": Case(
        plant.base_set,
        {"regularization": {"dropout": 0.8, "l2": 0.5}},
        "regularization_too_strong",
        check="regularization_too_strong",
    ),
    "overfitting": Case(
        plant.few,
        {"model": {"trainable": "mixed8"}, "regularization": {"dropout": 0.0}},
        "overfitting",
        check="overfitting",
        unfrozen=True,
    ),
    "imbalance_mild": Case(plant.imbalanced, {}, "class_imbalance", check="imbalance_mild"),
    # "label_noise" is the same rule's cause once a label check confirmed it (analysis/rules/label_noise.py)
    "label_noise": Case(plant.noisy, {}, "label_noise_suspected", ("label_noise",), check="label_noise"),
}
BASELINE_CASE = "healthy_converged"  # what every manifestation check compares with


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def spec_for(case: str, data_root: Path, family: str, seed: int, epochs: int) -> dict:
    folder = CASES[case].data(data_root, family, seed).relative_to(data_root)
    spec = merge(BASE_SPEC, CASES[case].changes)
    return {
        **spec,
        "dataset": {"train_dir": f"{folder}/train", "val_dir": f"{folder}/val", "image_size": 75},
        "epochs": epochs,
        "seed": seed,
        "name": f"{family}/{case}/s{seed}",
    }
