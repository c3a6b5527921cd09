"""What Plateau is for, end to end, with real training: a job that stalls, the cause named with its evidence, a fork
with the suggested remedy, and the child job clearly better than its parent.

Inception-V3 needs pre-trained weights to fine-tune, and ImageNet's cannot be downloaded everywhere, so the first
run pre-trains a base on a generated source task once (a few minutes on two cores) and saves it to a weights file
under the data root, the path a user with a local weights file takes. Every later step is the `plateau` CLI
against the embedded service (SQLite, filesystem broker, one Celery worker).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: the repository's packages sit one level up

from benchmarks.diagnosis import plant  # noqa: E402
from benchmarks.diagnosis.pretrain import pretrain  # noqa: E402
from client.sdk import PlateauClient  # noqa: E402
from devtools.service import start_embedded  # noqa: E402

WORK = ROOT / "var" / "demo"
PLATEAU = str(Path(sys.executable).with_name("plateau"))


def stalled_spec(data: Path, epochs: int) -> dict:
    """Head-only fine-tuning from the weights file at a learning rate a hundred times too small: it stalls."""
    return {
        "name": "demo: shapes, lr 1e-6",
        "dataset": {"train_dir": f"{data.as_posix()}/train", "val_dir": f"{data.as_posix()}/val", "image_size": 75},
        "model": {"weights": "base.weights.h5", "trainable": "head", "dense_units": 128},
        "regularization": {"dropout": 0.2},
        "optimizer": {"name": "adam", "learning_rate": 1e-6},
        "batch_size": 16,
        "epochs": epochs,
        "seed": 0,
    }


def shell(*args: str, env: dict) -> None:
    """Run a `plateau` command, showing it as typed and its output as printed."""
    print(f"\n$ plateau {' '.join(shlex.quote(a) for a in args)}", flush=True)
    done = subprocess.run([PLATEAU, *args], env=env, text=True, capture_output=True)
    print(done.stdout, end="", flush=True)
    if done.returncode not in (0, 1):
        print(done.stderr, end="", file=sys.stderr)
        raise SystemExit(f"plateau {args[0]} failed with exit code {done.returncode}")


def best(sdk: PlateauClient, job_id: str) -> float:
    return max(r.val_accuracy for r in sdk.metrics(job_id) if r.val_accuracy is not None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    data_root = WORK / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    print("pre-training a base on a generated source task (once; cached in var/demo) …", flush=True)
    pretrain(data_root / "base.weights.h5", WORK / "source", per_class=32, epochs=6)
    data = plant.base_set(data_root, "shapes", 0)
    env = {
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PLATEAU_DATA_ROOT": str(data_root),
        "PLATEAU_DATABASE_URL": f"sqlite:///{WORK}/plateau.db",
        "PLATEAU_BROKER_DIR": str(WORK / "broker"),
        "PLATEAU_ARTIFACTS_DIR": str(WORK / "artifacts"),
    }
    try:
        service, base = start_embedded(env, WORK / "embedded.log", port=args.port)
    except AssertionError as exc:
        raise SystemExit(f"the service did not become ready; see var/demo/embedded.log\n{exc}") from None
    cli_env = {**os.environ, "PLATEAU_URL": base, "COLUMNS": "120", "NO_COLOR": "1"}
    try:
        spec_file = WORK / "stalled.json"
        spec_file.write_text(json.dumps(stalled_spec(data.relative_to(data_root), args.epochs), indent=2))
        with PlateauClient(base) as sdk:
            seen = {job.id for job in sdk.jobs()}
            shell("submit", str(spec_file), "--watch", env=cli_env)
            parent = next(job.id for job in sdk.jobs() if job.id not in seen)
            findings = sdk.analysis(parent).findings
            if not findings or not findings[0].remedies:
                raise SystemExit("no remedy was suggested; see the diagnosis above")
            remedy = findings[0].remedies[0].id
            seen = {job.id for job in sdk.jobs()}
            shell("fork", str(parent), "--apply", remedy, "--watch", env=cli_env)
            child = next(job.id for job in sdk.jobs() if job.id not in seen)
            before, after = best(sdk, parent), best(sdk, child)
        print(
            f"\nbest val_accuracy: parent {before:.3f} → child {after:.3f} ({after - before:+.3f}) "
            f"after {remedy} for {findings[0].cause}"
        )
        return 0 if after > before else 1
    finally:
        service.stop(timeout=120)


if __name__ == "__main__":
    sys.exit(main())
