"""One small uncached job through `worker.training.fit.train`: the whole Inception-V3 runs every epoch, so the
per-epoch measuring (the inference pass over a training subset and the validation set, one batch's gradient norm)
weighs as much as the training steps. Timed from outside, against another checkout, with farm-bench:

    farm-bench -n 3 --timeout 900 -- .venv/bin/python -m benchmarks.training.epoch_measuring \\
        --vs "sh -c 'cd OTHER_CHECKOUT && exec .venv/bin/python -m benchmarks.training.epoch_measuring'"

Generated shapes (3 classes, 8 training and 4 validation images each), 150 px, weights None, head trainable,
`cache_features` off, batch 8, `--epochs` epochs (default 6).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args(argv)
    from contract.spec import JobSpec
    from samples.shapes import generate
    from worker.training.fit import train
    from worker.training.sink import MemorySink

    root = Path(tempfile.mkdtemp(prefix="epoch-measuring-"))
    generate(root / "shapes", classes=3, train=8, val=4, size=80, seed=1)
    spec = JobSpec.model_validate(
        {
            "name": "epoch-measuring",
            "dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val", "image_size": 150},
            "model": {"weights": None, "trainable": "head", "dense_units": 32},
            "performance": {"cache_features": "off"},
            "batch_size": 8,
            "epochs": args.epochs,
            "seed": 7,
        }
    )
    sink = MemorySink()
    train(spec, data_root=root, workdir=root / "job", sink=sink, stop=threading.Event())
    assert len(sink.rows) == args.epochs, len(sink.rows)


if __name__ == "__main__":
    main()
