"""The tables of docs/benchmarks.md's Training section, from a stored run.

.venv/bin/python -m benchmarks.training.table [benchmarks/results/training.json]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "training.json"
NAMES = {
    "a_classic": "(a) classic: `ImageDataGenerator(...).flow_from_directory(...)` (PIL per image, every epoch)",
    "b_ours": "(b) ours: `make_dataset` (tf.data, parallel decode, cache, prefetch)",
    "c_in_memory": "(c) decoded arrays in memory",
    "c_in_memory_bf16": "(c) with `mixed_bfloat16`",
    "c_in_memory_xla": "(c) with `jit_compile=True`",
}


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def render(r: dict) -> str:
    p, v = r["pipelines"], r["verdicts"]
    rates = p["images_per_second"]
    lines = [
        f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, {r['machine']['memory_gib']} GiB, "
        f"{r['machine']['gpus']} GPU; AVX2 {r['machine']['avx2']}, AVX512-BF16 {r['machine']['avx512_bf16']}, "
        f"AMX-BF16 {r['machine']['amx_bf16']}; TensorFlow {r['machine']['tensorflow']}. "
        f"Load average before / after: {r['load_average_before']} / {r['load_average_after']}; "
        f"whole run {r['total_seconds']:.0f} s. Other processes at ≥ 10 % CPU at the start: "
        f"{'; '.join(r.get('busy_processes_before') or []) or 'none'}; at the end: "
        f"{'; '.join(r.get('busy_processes_after') or []) or 'none'}.",
        "",
        f"Pipelines: {p['train_images']} training images ({p['source_images']}), {p['setting']}; "
        f"{p['repeats']} rounds of one epoch per input, interleaved, after one warm-up epoch each. Speeds are medians "
        "over rounds; ratios are medians over rounds of the two speeds in the same round.",
        "",
        "| input | images/s (median) | epochs (s) | warm-up epoch (s) |",
        "|---|---|---|---|",
    ]
    for key, name in NAMES.items():
        lines.append(
            f"| {name} | {rates[key]:.1f} | {', '.join(f'{s:.2f}' for s in p['epoch_seconds'][key])} | "
            f"{p['first_epoch_seconds'][key]:.1f} |"
        )
    io = p["input_only_images_per_second"]
    lines += [
        "",
        f"The pipelines alone, nothing consuming the batches: classic {io['classic']:.0f} images/s, "
        f"ours {io['ours']:.0f} images/s (cache warm), {p['ratios']['input_only_ours_vs_classic']:.1f}×.",
        "",
        "| comparison | target | measured | |",
        "|---|---|---|---|",
        f"| (b) / (a) | ≥ 2 | {v['ours_vs_classic']['measured']:.2f} | {verdict(v['ours_vs_classic']['met'])} |",
        f"| (c) / (a): the most any input could gain over (a) here | — | "
        f"{statistics.median(a / c for a, c in zip(p['epoch_seconds']['a_classic'], p['epoch_seconds']['c_in_memory'])):.2f} | |",
        f"| (b) / (c) | ≥ 0.9 | {v['ours_vs_in_memory']['measured']:.2f} | {verdict(v['ours_vs_in_memory']['met'])} |",
        f"| `mixed_bfloat16` / float32 | > 1 to make it the CPU default | {p['ratios']['bf16_vs_fp32']:.2f} | "
        f"{'faster' if p['ratios']['bf16_vs_fp32'] > 1 else 'slower: `auto` stays float32 on a CPU'} |",
        f"| XLA / no XLA, steady state | — | {p['ratios']['xla_vs_fp32']:.2f} | first epoch "
        f"{p['first_epoch_seconds']['c_in_memory_xla']:.0f} s against {p['first_epoch_seconds']['c_in_memory']:.0f} s |",
    ]
    for fc in r["feature_caching"]:
        key = f"cached_vs_uncached_{fc['image_size']}px"
        runs = fc["runs"]
        lines += [
            "",
            f"Head-only feature caching at {fc['image_size']} px: {fc['train_images']} training images, "
            f"{fc['epochs']} epochs, {fc['setting']}.",
            "",
            "| `cache_features` | epoch seconds | median from the 2nd epoch | feature pass (s) | whole job (s) |",
            "|---|---|---|---|---|",
        ]
        for mode in ("off", "auto"):
            run = runs[mode]
            feat = f"{run['feature_seconds']:.1f}" if run["feature_seconds"] is not None else "—"
            lines.append(
                f"| `{mode}` | {', '.join(f'{s:.2f}' for s in run['epoch_seconds'])} | "
                f"{fc['median_epoch_seconds_from_2nd'][mode]:.2f} | {feat} | {run['wall_seconds']:.0f} |"
            )
        lines += [
            "",
            f"Epoch time off / auto: **{fc['ratio_uncached_vs_cached']:.1f}×** (target ≥ 10: {verdict(v[key]['met'])}); "
            f"whole job {fc['whole_job_ratio']:.1f}×; largest val_loss difference between the two "
            f"{fc['max_val_loss_difference']:.1e}.",
        ]
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    print(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
