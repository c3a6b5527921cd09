"""Start the embedded service, submit a job on a generated image set, and print each epoch as it arrives."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: the repository's packages (devtools) sit one level up

from devtools.service import start_embedded  # noqa: E402

TERMINAL = {"succeeded", "failed", "cancelled"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    data = ROOT / "var" / "data" / "shapes"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "samples.shapes", str(data), "--train", "24", "--val", "8"],
                       cwd=ROOT, check=True)
    try:
        service, base = start_embedded({"TF_CPP_MIN_LOG_LEVEL": "2"}, ROOT / "var" / "embedded.log", port=args.port)
    except AssertionError as exc:
        raise SystemExit(f"the service did not become ready; see var/embedded.log\n{exc}") from None
    try:
        with httpx.Client(base_url=base, timeout=30) as api:
            spec = json.loads((ROOT / "docs" / "examples" / "shapes.json").read_text())
            spec["epochs"] = args.epochs
            job = api.post("/jobs", json=spec).json()
            print(f"submitted job {job['id']} ({base}/jobs/{job['id']}); logs: var/embedded.log")
            return _follow(api, job["id"])
    finally:
        service.stop(timeout=120)


def _follow(api: httpx.Client, job_id: str) -> int:
    after, status = 0, "queued"
    print(f"{'epoch':>5} {'loss':>8} {'accuracy':>9} {'val_loss':>9} {'val_acc':>8} {'lr':>9} {'sec':>6}")
    while True:
        page = api.get(f"/jobs/{job_id}/metrics", params={"after_epoch": after}).json()
        for r in page["items"]:
            print(f"{r['epoch']:>5} {r['loss']:>8.4f} {r['accuracy']:>9.4f} {r['val_loss']:>9.4f} "
                  f"{r['val_accuracy']:>8.4f} {r['learning_rate']:>9.2e} {r['epoch_seconds']:>6.1f}", flush=True)
        after = page["next_after_epoch"] or after
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] != status:
            status = job["status"]
            print(f"status: {status}", flush=True)
        if status in TERMINAL and not page["items"]:
            if job.get("error"):
                print(f"error: {job['error']}")
            _print_diagnosis(api.get(f"/jobs/{job_id}/analysis").json())
            return 0 if status == "succeeded" else 1
        time.sleep(1)


def _print_diagnosis(diagnosis: dict) -> None:
    print(f"diagnosis: {diagnosis['verdict']} — {diagnosis['summary']}")
    for finding in diagnosis["findings"][:3]:
        print(f"  {finding['cause']} (rule {finding['rule']}, confidence {finding['confidence']:.2f}): "
              f"{finding['summary']}")
        for remedy in finding["remedies"][:2]:
            print(f"    remedy {remedy['id']}: {remedy['text']} patch={json.dumps(remedy['patch'])}")


if __name__ == "__main__":
    sys.exit(main())
