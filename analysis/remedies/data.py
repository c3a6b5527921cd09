"""Remedies about the data itself; some are advice outside the spec (empty patch)."""

from __future__ import annotations

from analysis.findings import Remedy
from contract.resolved import ResolvedSpec
from contract.spec import MAX_EXCLUDED


def balance_class_weights(spec: ResolvedSpec) -> Remedy | None:
    if spec.class_weight == "balanced":
        return None
    return Remedy(
        id="balance_class_weights",
        patch={"class_weight": "balanced"},
        text="Weight the loss by inverse class frequency so minority classes count as much as the majority.",
    )


def collect_more_data(classes: list[str]) -> Remedy:
    names = ", ".join(classes[:5]) + ("…" if len(classes) > 5 else "")
    return Remedy(
        id="collect_more_data",
        patch={},
        text=f"Collect more training images for the under-represented or poorly recalled classes ({names}).",
    )


def confirm_with_cleanlab() -> Remedy:
    return Remedy(
        id="confirm_with_cleanlab",
        patch={},
        text="Confirm with cleanlab's find_label_issues on out-of-sample predicted probabilities "
        "(cross-validation); a learning curve alone cannot confirm label noise.",
    )


def exclude_label_issues(spec: ResolvedSpec, suspects: list[str]) -> Remedy | None:
    """Leave out the files a label check (confident learning) suspects of a wrong label: `dataset.exclude` gains
    them, kept sorted and within the spec's limit. None when there is nothing new to exclude."""
    dataset = spec.raw.get("dataset") if isinstance(spec.raw.get("dataset"), dict) else {}
    already = list(dataset.get("exclude") or [])
    new = [f for f in dict.fromkeys(suspects) if f not in set(already)]
    if not new:
        return None
    files = sorted(already + new)[:MAX_EXCLUDED]
    return Remedy(
        id="exclude_label_issues",
        patch={"dataset": {"exclude": files}},
        text=f"Leave out the {len(new)} training image(s) a label check suspects of a wrong label "
        "(GET /jobs/{id}/label-issues lists them).",
    )
