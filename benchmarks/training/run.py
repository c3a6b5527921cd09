"""Training speed on this machine: input pipelines, mixed precision, XLA, and head-only feature caching.

    .venv/bin/python -m benchmarks.training.run [--per-class 96] [--repeats 3] [--out benchmarks/results/training.json]

1. Input pipelines, each feeding `model.fit` on the same compiled model (Inception-V3 at 75 px, random init,
   base frozen, so every step runs the whole network forward and the head backward: the path of a head-only
   job with augmentation or `cache_features: "off"`), no augmentation, batch 32:
     a. classic: `tf.keras.preprocessing.image.ImageDataGenerator(preprocessing_function=preprocess_input)
        .flow_from_directory(train_dir, target_size, batch_size=32, class_mode="categorical", shuffle=True)`, the
        widely copied recipe, as TensorFlow still ships it (Keras' legacy preprocessing): per image and per epoch a
        PIL load, a nearest-neighbour resize, a float array, preprocess_input; one background worker;
     b. ours: `worker.training.pipeline.make_dataset` (tf.data: parallel decode, cache, batch, prefetch);
     c. the same images already decoded and preprocessed, as in-memory arrays passed to `model.fit`.
   Besides, each pipeline alone (no model): how many images per second it can deliver.
2. Precision and XLA on (c)'s input: the same model built under mixed_bfloat16, and compiled with
   jit_compile=True (its first epoch is the XLA compile).
3. Head-only jobs through `worker.training.fit.train`: `cache_features` "off" against "auto", epoch seconds
   (training and validation) from the 2nd epoch on, at 75 px and at the spec's default 299 px (fewer images).

Variants of 1 and 2 run interleaved, one epoch each per round after one warm-up epoch, so load that comes and goes
hits all of them alike; speeds are medians over rounds, and ratios are medians over rounds of the two variants'
speeds in the same round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import threading
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import ROOT, busy_processes, load_average

WORK = ROOT / "var" / "bench-training"
IMAGE_SIZE = 75
BATCH = 32
SOURCE_SIZE = 299  # side of the generated PNG files
TARGETS = {"ours_vs_classic": 2.0, "ours_vs_in_memory": 0.9, "cached_vs_uncached": 10.0}


def machine() -> dict:
    """The shared machine facts, and what TensorFlow sees and can run here."""
    import tensorflow as tf

    try:
        a = tf.ones((64, 64), tf.bfloat16)
        bf16_matmul = bool(tf.reduce_all(tf.matmul(a, a) == 64.0))
    except Exception:  # noqa: BLE001
        bf16_matmul = False
    return {
        **common.machine(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "bf16_matmul_runs": bf16_matmul,
        "tensorflow": tf.__version__,
    }


def build(policy: str = "float32", jit_compile: bool = False):
    import keras

    from contract.spec import JobSpec
    from worker.training.model import build_model
    from worker.training.performance import precision_policy

    spec = JobSpec.model_validate(
        {
            "dataset": {"train_dir": "x", "val_dir": "y", "image_size": IMAGE_SIZE},
            "model": {"weights": None, "trainable": "head"},
            "seed": 0,
        }
    )
    keras.utils.set_random_seed(0)
    with precision_policy(policy):
        model = build_model(spec, 3)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=jit_compile,
        )
    return model


def flow_from_directory(train_dir: Path):
    """The classic input: ImageDataGenerator(...).flow_from_directory(...), exactly as the Keras recipe writes it."""
    import tensorflow as tf

    generator = tf.keras.preprocessing.image.ImageDataGenerator(
        preprocessing_function=tf.keras.applications.inception_v3.preprocess_input
    )
    return generator.flow_from_directory(
        str(train_dir),
        target_size=(IMAGE_SIZE, IMAGE_SIZE),
        batch_size=BATCH,
        class_mode="categorical",
        shuffle=True,
        seed=0,
    )


def epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t0)

    return EpochTimer()


def throughput_of_input(make_iterable, n: int, passes: int) -> float:
    """Images per second a pipeline delivers with nothing consuming them (after one warm-up pass)."""
    rates = []
    for i in range(passes + 1):
        t0 = time.perf_counter()
        for _ in make_iterable():
            pass
        if i:
            rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def pipelines(data: Path, repeats: int) -> dict:
    import numpy as np

    from worker.training.pipeline import make_dataset
    from worker.training.scan import scan

    images = scan(data / "train", field_name="train_dir")
    n, k = len(images), len(images.classes)
    classic = flow_from_directory(data / "train")
    assert classic.samples == n and classic.num_classes == k, (classic.samples, classic.num_classes)
    ours = make_dataset(images, image_size=IMAGE_SIZE, batch_size=BATCH, training=True, seed=0)
    xs, ys = zip(
        *[
            (x.numpy(), y.numpy())
            for x, y in make_dataset(images, image_size=IMAGE_SIZE, batch_size=BATCH, training=False, seed=0)
        ]
    )
    x_mem, y_mem = np.concatenate(xs), np.concatenate(ys)

    def classic_batches():
        for i in range(len(classic)):
            yield classic[i]
        classic.on_epoch_end()

    input_only = {
        "classic": throughput_of_input(classic_batches, n, repeats),
        "ours": throughput_of_input(lambda: ours, n, repeats),
    }

    t0 = time.perf_counter()
    fp32 = build("float32")
    bf16 = build("mixed_bfloat16")
    xla = build("float32", jit_compile=True)
    build_seconds = time.perf_counter() - t0
    variants = {
        "a_classic": (fp32, lambda m, cb: m.fit(classic, epochs=1, verbose=0, callbacks=[cb])),
        "b_ours": (fp32, lambda m, cb: m.fit(ours, epochs=1, verbose=0, callbacks=[cb])),
        "c_in_memory": (
            fp32,
            lambda m, cb: m.fit(x_mem, y_mem, batch_size=BATCH, shuffle=True, epochs=1, verbose=0, callbacks=[cb]),
        ),
        "c_in_memory_bf16": (
            bf16,
            lambda m, cb: m.fit(x_mem, y_mem, batch_size=BATCH, shuffle=True, epochs=1, verbose=0, callbacks=[cb]),
        ),
        "c_in_memory_xla": (
            xla,
            lambda m, cb: m.fit(x_mem, y_mem, batch_size=BATCH, shuffle=True, epochs=1, verbose=0, callbacks=[cb]),
        ),
    }
    first, seconds = {}, {name: [] for name in variants}
    for name, (model, fit) in variants.items():  # warm-up: traces (and XLA-compiles) the step, fills the cache
        timer = epoch_timer()
        fit(model, timer)
        first[name] = timer.seconds[0]
        print(f"  warm-up {name}: {first[name]:.1f} s", flush=True)
    for r in range(repeats):
        for name, (model, fit) in variants.items():
            timer = epoch_timer()
            fit(model, timer)
            seconds[name].append(timer.seconds[0])
        print(f"  round {r + 1}: " + ", ".join(f"{k} {n / v[-1]:.1f} img/s" for k, v in seconds.items()), flush=True)
    per_s = {name: statistics.median(n / s for s in v) for name, v in seconds.items()}

    def paired(a: str, b: str) -> float:
        """Median over rounds of a's speed over b's in the same round: load that comes and goes hits both."""
        return statistics.median(sb / sa for sa, sb in zip(seconds[a], seconds[b]))

    return {
        "setting": "Inception-V3 75 px, weights None, trainable head without feature caching (whole network "
        "forward, head backward), Adam, batch 32, no augmentation, float32 unless named",
        "train_images": n,
        "source_images": f"{SOURCE_SIZE}x{SOURCE_SIZE} PNG",
        "repeats": repeats,
        "model_build_seconds": build_seconds,
        "first_epoch_seconds": first,
        "epoch_seconds": seconds,
        "images_per_second": per_s,
        "input_only_images_per_second": input_only,
        "ratios": {  # paired: median over rounds of the two variants' speeds in that round
            "ours_vs_classic": paired("b_ours", "a_classic"),
            "ours_vs_in_memory": paired("b_ours", "c_in_memory"),
            "bf16_vs_fp32": paired("c_in_memory_bf16", "c_in_memory"),
            "xla_vs_fp32": paired("c_in_memory_xla", "c_in_memory"),
            "input_only_ours_vs_classic": input_only["ours"] / input_only["classic"],
        },
    }


def feature_caching(data_root: Path, dataset: str, image_size: int, epochs: int) -> dict:
    from contract.spec import JobSpec
    from worker.training.fit import train
    from worker.training.sink import MemorySink

    out = {}
    for mode in ("off", "auto"):
        spec = JobSpec.model_validate(
            {
                "dataset": {"train_dir": f"{dataset}/train", "val_dir": f"{dataset}/val", "image_size": image_size},
                "model": {"weights": None, "trainable": "head"},
                "regularization": {"dropout": 0.2},
                "batch_size": BATCH,
                "epochs": epochs,
                "seed": 0,
                "performance": {"cache_features": mode},
            }
        )
        sink = MemorySink()
        workdir = WORK / f"job-{image_size}-{mode}"
        shutil.rmtree(workdir, ignore_errors=True)
        t0 = time.perf_counter()
        result = train(spec, data_root=data_root, workdir=workdir, sink=sink, stop=threading.Event())
        wall = time.perf_counter() - t0
        shutil.rmtree(workdir, ignore_errors=True)
        assert result.status == "succeeded", result
        [perf] = [d for kind, _, d in sink.events if kind == "performance"]
        rows = sorted(sink.rows, key=lambda r: r["epoch"])
        out[mode] = {
            "wall_seconds": wall,
            "train_images": sum(sink.counts["train"].values()),
            "feature_seconds": perf.get("feature_seconds"),
            "epoch_seconds": [r["epoch_seconds"] for r in rows],
            "train_images_per_second": [r["images_per_second"] for r in rows],
            "val_loss": [r["val_loss"] for r in rows],
        }
        print(
            f"  {image_size} px, cache_features {mode}: epochs {[round(s, 2) for s in out[mode]['epoch_seconds']]} s",
            flush=True,
        )
    off, auto = (statistics.median(out[m]["epoch_seconds"][1:]) for m in ("off", "auto"))
    return {
        "setting": f"worker.training.fit.train, Inception-V3 {image_size} px, weights None, trainable head, "
        "dense_units 1024, dropout 0.2, batch 32, no augmentation; epoch seconds: training and validation "
        "(the per-epoch probe runs after them)",
        "image_size": image_size,
        "train_images": out["off"]["train_images"],
        "epochs": epochs,
        "runs": out,
        "median_epoch_seconds_from_2nd": {"off": off, "auto": auto},
        "ratio_uncached_vs_cached": off / auto,
        "whole_job_ratio": out["off"]["wall_seconds"] / out["auto"]["wall_seconds"],
        "max_val_loss_difference": max(abs(a - b) for a, b in zip(out["off"]["val_loss"], out["auto"]["val_loss"])),
    }


def verdicts(result: dict) -> dict:
    from worker.training.performance import resolve_precision

    r = result["pipelines"]["ratios"]
    return {
        "ours_vs_classic": {
            "target": ">= 2.0",
            "measured": r["ours_vs_classic"],
            "met": r["ours_vs_classic"] >= TARGETS["ours_vs_classic"],
        },
        "ours_vs_in_memory": {
            "target": ">= 0.9",
            "measured": r["ours_vs_in_memory"],
            "met": r["ours_vs_in_memory"] >= TARGETS["ours_vs_in_memory"],
        },
        **{
            f"cached_vs_uncached_{fc['image_size']}px": {
                "target": ">= 10",
                "measured": fc["ratio_uncached_vs_cached"],
                "met": fc["ratio_uncached_vs_cached"] >= TARGETS["cached_vs_uncached"],
            }
            for fc in result["feature_caching"]
        },
        "auto_precision_on_cpu": {
            "chosen": resolve_precision("auto", gpus=0),
            "bf16_vs_fp32": r["bf16_vs_fp32"],
            "bf16_faster": r["bf16_vs_fp32"] > 1.0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=96, help="training images per class (3 classes)")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each head-only job at 75 px")
    parser.add_argument("--per-class-299", type=int, default=6, help="training images per class of the 299 px jobs")
    parser.add_argument("--epochs-299", type=int, default=3, help="epochs of each head-only job at 299 px")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "training.json")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from samples.shapes import generate

    t_start = time.perf_counter()
    data_root = WORK / "data"
    shutil.rmtree(data_root, ignore_errors=True)
    generate(data_root / "shapes", classes=3, train=args.per_class, val=16, size=SOURCE_SIZE, seed=0)
    generate(data_root / "shapes-small", classes=3, train=args.per_class_299, val=4, size=SOURCE_SIZE, seed=1)
    result = {
        "command": "python -m benchmarks.training.run "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": machine(),
        "load_average_before": load_average(),
        "busy_processes_before": busy_processes(),
    }
    print("pipelines, precision, XLA", flush=True)
    result["pipelines"] = pipelines(data_root / "shapes", args.repeats)
    print("head-only feature caching", flush=True)
    result["feature_caching"] = [
        feature_caching(data_root, "shapes", IMAGE_SIZE, args.epochs),
        feature_caching(data_root, "shapes-small", 299, args.epochs_299),
    ]
    result["load_average_after"] = load_average()
    result["busy_processes_after"] = busy_processes()
    result["total_seconds"] = time.perf_counter() - t_start
    result["verdicts"] = verdicts(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["verdicts"], indent=2))
    print(f"wrote {args.out} in {result['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
