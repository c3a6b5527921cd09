"""SYNTHETIC runs for the analysis corpus: seeded, realistic learning curves, generated without training.

Real training runs of every configuration practitioners use are too slow for this corpus, so these runs are
drawn from a model of a healthy learning curve and written under tests/analysis/corpus/synthetic/ (development)
and synthetic_heldout/ (never used to fit the calibration), each marked `"synthetic": true`:

- accuracy follows a noisy concave curve p(e) = p∞ − (p∞ − p0)·exp(−e/τ) towards a ceiling that depends on the
  number of classes; validation accuracy is Binomial(n_val, p(e)) / n_val, train_eval accuracy is binomial on the
  real subset size (`contract.resolved.train_eval_size`), so small validation sets are as noisy as real ones;
- losses follow the accuracy with a floor raised by label smoothing; Keras' training-mode metrics trail the
  inference-mode ones under dropout or augmentation;
- ReduceLROnPlateau is replayed as Keras does (monitor, patience, factor, min_delta) and cuts the rate at the
  epochs it would, after which progress slows; EarlyStopping is replayed and ends the run where Keras would;
- configurations: ReduceLROnPlateau, EarlyStopping, augmentation, label smoothing, class weights on mildly
  imbalanced counts, SGD with momentum, unfrozen fine-tunes at fine-tuning rates, 2–10 classes, validation sets
  of 5–100 images per class, 3–30 epochs.

A few planted premature learning-rate cuts (a linear rise, a cut by a short patience, then a stall) and BatchNorm
collapses after unfreezing (training mode fits, inference mode at chance) are drawn the same way, so the rules that
name them are scored too.

    .venv/bin/python -m benchmarks.diagnosis.synthetic      # rewrite the synthetic corpus (deterministic)
"""

from __future__ import annotations

import json
import math
import random

from benchmarks.common import ROOT
from contract.resolved import train_eval_size

CORPUS = ROOT / "tests" / "analysis" / "corpus"
SEED = 20
HEALTHY_DEV, HEALTHY_HELD_OUT, PREMATURE, BATCHNORM = 48, 16, 6, 4


def _binomial(rng: random.Random, n: int, p: float) -> float:
    p = min(1.0, max(0.0, p))
    return sum(rng.random() < p for _ in range(n)) / n if n else p


def _config(rng: random.Random, i: int) -> dict:
    k = rng.choice([2, 3, 3, 4, 4, 5, 6, 10])
    val_per_class = rng.choice([5, 8, 10, 12, 16, 20, 30, 50, 100])
    epochs = rng.randint(3, 30)
    kind = ["plain", "rlrop", "early_stopping", "augment", "smoothing", "class_weight", "sgd", "fine_tune"][i % 8]
    spec: dict = {
        "model": {"weights": "imagenet", "trainable": "head", "dense_units": 256, "batchnorm": "auto"},
        "regularization": {"dropout": rng.choice([0.0, 0.2, 0.3, 0.5]), "l2": 0.0, "label_smoothing": 0.0},
        "optimizer": {"name": "adam", "learning_rate": rng.choice([3e-4, 1e-3]), "momentum": 0.0},
        "callbacks": {"reduce_lr_on_plateau": None, "early_stopping": None},
        "epochs": epochs,
        "batch_size": rng.choice([16, 32, 64]),
        "class_weight": "none",
    }
    per_class = rng.choice([30, 60, 120, 300])
    train = {f"c{j}": per_class for j in range(k)}
    if kind == "rlrop" or (kind == "early_stopping" and rng.random() < 0.5):
        spec["callbacks"]["reduce_lr_on_plateau"] = {
            "monitor": "val_loss",
            "factor": rng.choice([0.1, 0.2, 0.5]),
            "patience": rng.choice([1, 2, 3, 5]),
            "min_delta": 1e-4,
            "cooldown": 0,
            "min_lr": 0.0,
        }
    if kind == "early_stopping":
        spec["callbacks"]["early_stopping"] = {
            "monitor": "val_loss",
            "patience": rng.choice([2, 3, 5]),
            "min_delta": 0.0,
        }
        spec["epochs"] = epochs = max(epochs, 12)
    if kind == "augment":
        spec["regularization"]["augmentation"] = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.1}
    if kind == "smoothing":
        spec["regularization"]["label_smoothing"] = rng.choice([0.1, 0.2])
    if kind == "class_weight":
        spec["class_weight"] = "balanced"
        train = {f"c{j}": int(per_class * (1 if j else rng.uniform(2, 4))) for j in range(k)}
    if kind == "sgd":
        spec["optimizer"] = {"name": "sgd", "learning_rate": rng.choice([1e-2, 3e-2]), "momentum": 0.9}
    if kind == "fine_tune":
        spec["model"].update(trainable=rng.choice(["mixed8", "mixed9", "all"]), batchnorm="frozen")
        spec["optimizer"]["learning_rate"] = rng.choice([1e-5, 3e-5, 1e-4])
    return {"kind": kind, "k": k, "train": train, "val": {c: val_per_class for c in train}, "spec": spec}


def _replay_plateau(best: float, wait: int, current: float, min_delta: float) -> tuple[float, int, bool]:
    """Keras' min-mode improvement test; returns (best, wait, improved)."""
    if current < best - min_delta:
        return current, 0, True
    return best, wait + 1, False


def healthy_run(rng: random.Random, i: int) -> dict:
    cfg = _config(rng, i)
    k, spec = cfg["k"], cfg["spec"]
    chance = 1 / k
    ceiling = rng.uniform(0.55, 0.9) if k >= 6 else rng.uniform(0.78, 0.98)
    start = chance + rng.uniform(0.05, 0.3) * (ceiling - chance)
    tau = rng.uniform(1.5, 6.0) if cfg["kind"] != "fine_tune" else rng.uniform(2.0, 5.0)
    gap = rng.uniform(0.0, 0.06)
    n_val, n_train = sum(cfg["val"].values()), sum(cfg["train"].values())
    n_eval = train_eval_size(n_train)
    smoothing = spec["regularization"]["label_smoothing"]
    train_mode_penalty = 0.04 * (spec["regularization"]["dropout"] > 0) + 0.05 * (
        "augmentation" in spec["regularization"]
    )
    lr = spec["optimizer"]["learning_rate"]
    rlrop, es = spec["callbacks"]["reduce_lr_on_plateau"], spec["callbacks"]["early_stopping"]
    progress, speed = 0.0, 1.0
    rl_best, rl_wait, es_best, es_wait = math.inf, 0, math.inf, 0
    rows, cuts = [], []
    for e in range(1, spec["epochs"] + 1):
        progress += speed
        p = ceiling - (ceiling - start) * math.exp(-progress / tau)
        val_acc = _binomial(rng, n_val, p)
        te_acc = _binomial(rng, n_eval, min(0.995, p + gap))
        floor = 0.05 + smoothing * math.log(k) * 1.2
        val_loss = (floor + (math.log(k) - floor) * (1 - (p - chance) / (1 - chance)) ** 1.3) * math.exp(
            rng.gauss(0, 0.5 / math.sqrt(n_val))
        )
        te_loss = max(floor * 0.9, val_loss * (1 - gap) * math.exp(rng.gauss(0, 0.02)))
        ratio = (3e-3 if cfg["kind"] != "fine_tune" else 4e-4) * (lr / spec["optimizer"]["learning_rate"]) ** 0.5
        row = {
            "epoch": e,
            "loss": round(te_loss * (1 + train_mode_penalty * 3) + rng.gauss(0, 0.01), 5),
            # Keras' running accuracy covers the whole training set: binomial noise on n_train images
            "accuracy": round(max(chance, _binomial(rng, n_train, min(0.995, p + gap)) - train_mode_penalty), 5),
            "val_loss": round(val_loss, 5),
            "val_accuracy": round(val_acc, 5),
            "learning_rate": lr,
            "train_eval_loss": round(te_loss, 5),
            "train_eval_accuracy": round(te_acc, 5),
            "regularization_loss": 0.0,
            "nonfinite_batches": 0,
            "update_ratio_head": round(ratio * math.exp(-e / 20), 7),
            "val_recall": {c: round(_binomial(rng, n, p), 4) for c, n in cfg["val"].items()},
            "val_support": dict(cfg["val"]),
        }
        if cfg["kind"] == "fine_tune":
            row["update_ratio_base"] = round(ratio * 0.2, 7)
        rows.append(row)
        if es:
            es_best, es_wait, _ = _replay_plateau(es_best, es_wait, val_loss, es["min_delta"])
            if es_wait >= es["patience"] and e > 1:
                break  # Keras EarlyStopping ends the run here
        if rlrop:
            rl_best, rl_wait, _ = _replay_plateau(rl_best, rl_wait, val_loss, rlrop["min_delta"])
            if rl_wait >= rlrop["patience"]:
                lr, rl_wait = lr * rlrop["factor"], 0
                cuts.append(e + 1)
                speed *= 0.6  # a lower rate keeps learning, more slowly
    return _fixture(cfg, rows, cuts, f"healthy_{cfg['kind']}", None, i)


def premature_run(rng: random.Random, i: int) -> dict:
    """A linear rise cut by a patience-1 ReduceLROnPlateau on a noisy epoch, then a stall far from converged."""
    cfg = _config(rng, 1)
    k, spec = 3, cfg["spec"]
    cfg.update(k=k, train={f"c{j}": 120 for j in range(k)}, val={f"c{j}": 50 for j in range(k)})
    spec["callbacks"]["reduce_lr_on_plateau"] = {"monitor": "val_loss", "factor": 0.1, "patience": 1, "min_lr": 0.0}
    spec["epochs"] = 30  # warm-up lasts 0.3 × 30 = 9 epochs: the cut at 5–7 is well inside it
    cut = rng.choice([5, 6, 7])
    lr = spec["optimizer"]["learning_rate"]
    rows = []
    level, step = 0.3, rng.uniform(4e-3, 1e-2)
    for e in range(1, 17):
        level = level + 0.08 if e < cut else level + rng.uniform(-0.005, 0.006)
        rate = lr if e < cut else lr * 0.1
        val = _binomial(rng, 150, level)
        rows.append(
            {
                "epoch": e,
                "loss": round(1.1 - level, 5),
                "accuracy": round(level, 5),
                "val_loss": round(1.12 - level, 5),
                "val_accuracy": round(val, 5),
                "learning_rate": rate,
                "train_eval_loss": round(1.08 - level, 5),
                "train_eval_accuracy": round(min(0.99, level + 0.02), 5),
                "nonfinite_batches": 0,
                "update_ratio_head": round(step if e < cut else step * 0.1, 7),  # Adam's step scales with the rate
            }
        )
    return _fixture(cfg, rows, [cut], "premature_lr_cut", "premature_lr_cut", i)


def batchnorm_run(rng: random.Random, i: int) -> dict:
    """Every layer unfrozen with BatchNorm training on batches of 8: training mode fits, inference mode collapses
    to chance with an exploding val_loss (the collapse seen on this kind of machine)."""
    cfg = _config(rng, 7)
    k, spec = rng.choice([3, 4]), cfg["spec"]
    cfg.update(k=k, train={f"c{j}": 40 for j in range(k)}, val={f"c{j}": 12 for j in range(k)})
    spec["model"].update(trainable="all", batchnorm="train")
    spec.update(batch_size=8, epochs=12)
    spec["optimizer"]["learning_rate"] = 1e-4
    rows = []
    for e in range(1, 13):
        acc = min(0.98, 0.45 + 0.07 * e + rng.gauss(0, 0.02))
        rows.append(
            {
                "epoch": e,
                "loss": round(max(0.05, 1.0 - 0.08 * e), 5),
                "accuracy": round(acc, 5),
                "val_loss": round(math.log(k) * (1 + e * rng.uniform(2, 40)), 5),
                "val_accuracy": round(_binomial(rng, 12 * k, 1 / k), 5),
                "learning_rate": 1e-4,
                "train_eval_loss": round(math.log(k) * (1 + e * rng.uniform(2, 30)), 5),
                "train_eval_accuracy": round(_binomial(rng, 40 * k, 1 / k), 5),
                "nonfinite_batches": 0,
                "update_ratio_head": 2e-3,
                "update_ratio_base": 5e-4,
            }
        )
    return _fixture(cfg, rows, [], "batchnorm_mismatch", "batchnorm_mismatch", i)


def _fixture(cfg: dict, rows: list[dict], cuts: list[int], case: str, planted: str | None, i: int) -> dict:
    return {
        "format": 1,
        "synthetic": True,
        "generator": "benchmarks.diagnosis.synthetic",
        "family": "synthetic",
        "case": case,
        "seed": i,
        "held_out": False,
        "planted": planted,
        "accepted": [planted] if planted else [],
        "manifested": True,
        "manifest": {"check": "synthetic", "observed": {"kind": cfg["kind"], "classes": cfg["k"]}},
        "context": {
            "spec": cfg["spec"],
            "class_counts_train": cfg["train"],
            "class_counts_val": cfg["val"],
            "planned_epochs": cfg["spec"]["epochs"],
            "lr_reductions": cuts,
            "status": "succeeded",
        },
        "history": rows,
    }


def generate() -> list[dict]:
    rng = random.Random(SEED)
    runs = [healthy_run(rng, i) for i in range(HEALTHY_DEV + HEALTHY_HELD_OUT)]
    runs += [premature_run(rng, HEALTHY_DEV + HEALTHY_HELD_OUT + j) for j in range(PREMATURE)]
    runs += [batchnorm_run(rng, HEALTHY_DEV + HEALTHY_HELD_OUT + PREMATURE + j) for j in range(BATCHNORM)]
    for j, fx in enumerate(runs):
        # every fourth run is held out: never used to fit the calibration
        if j % 4 == 3:
            fx.update(family="synthetic_heldout", held_out=True)
    return runs


def main() -> None:
    for family in ("synthetic", "synthetic_heldout"):
        folder = CORPUS / family
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.json"):
            old.unlink()
    runs = generate()
    for fx in runs:
        (CORPUS / fx["family"] / f"{fx['case']}-s{fx['seed']}.json").write_text(json.dumps(fx, separators=(",", ":")))
    print(f"{len(runs)} synthetic runs written under {CORPUS.relative_to(ROOT)}/synthetic*/")


if __name__ == "__main__":
    main()
