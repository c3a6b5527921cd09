"""The autopilot's choice for the next round, as a pure function of what was measured (models.autopilot.measure).

No database here: `decide(config, facts)` is the whole policy, so every branch is tested on plain values."""

from __future__ import annotations

from dataclasses import dataclass, field

from analysis import Diagnosis, Remedy, apply_patch
from contract.autopilot import AutopilotSpec, higher_is_better

LEARNING_RATE_REMEDIES = {"increase_learning_rate": 1, "lower_learning_rate": -1}
# Brakes on fitting that a confident finding on the child may name again, with the child's value: loosened once
# more (a penalty of 0.5 cut to 0.05 can still be the brake). The learning rate goes further through its
# follow-up (analysis.followup, from the measured step sizes) instead.
LOOSENED_AGAIN = frozenset({"reduce_l2", "reduce_dropout"})
# Remedies that keep the architecture and the data: their child starts from the parent's weights. Changes to the
# data (augmentation, class weights) or to the pre-trained base start cold, as a different experiment.
WARM_REMEDIES = frozenset(
    {
        "increase_learning_rate",
        "lower_learning_rate",
        "add_reduce_lr_on_plateau",
        "lengthen_reduce_lr_patience",
        "raise_min_lr",
        "switch_to_adam",
        "increase_batch_size",
        "add_early_stopping",
        "train_longer",
        "unfreeze_top_blocks",
        "unfreeze_fewer_at_low_lr",
        "freeze_more_layers",
        "reduce_l2",
        "add_l2",
        "reduce_dropout",
        "increase_dropout",
        "add_label_smoothing",
    }
)

# Causes whose job's weights are the damage: a rate too high wrecks the head (and, unfrozen, the base) in its first
# steps, so any fork against them starts cold, from the spec's weights, whatever its remedy.
DAMAGED_WEIGHTS_CAUSES = frozenset({"learning_rate_too_high", "learning_rate_too_high_after_unfreezing"})


@dataclass(frozen=True)
class End:
    reason: str
    detail: str


@dataclass(frozen=True)
class Fork:
    cause: str | None
    confidence: float | None  # None for a follow-up: it acts on the last round's measured gain, not on a finding
    remedy: Remedy
    follow_up: dict | None = None  # a follow-up's evidence (analysis.followup): why the last remedy goes further
    evidence: dict = field(default_factory=dict)  # what chose the remedy's values (e.g. a measured learning rate)
    start: str = "cold"  # warm: from the parent's weights (model.init_from in the patch)


@dataclass(frozen=True)
class LastRound:
    """A round of the lineage, measured: which remedy, on which cause, whether its child beat its parent beyond
    noise, and by how much on the point estimates."""

    cause: str | None
    remedies: tuple[str, ...]
    direction: str | None  # better | worse | unclear (analysis.significance); None while not comparable
    gain: float | None = None  # child's best minus parent's, signed so that above 0 is better; None: not comparable


@dataclass(frozen=True)
class Facts:
    """Everything `decide` needs, loaded in one pass by models.autopilot.measure."""

    rounds_done: int
    current: Diagnosis  # of the job that just ended (the last child, or the root)
    base: Diagnosis  # of the job the next fork would start from: the last child when go_on_from_child, else its parent
    last: LastRound | None = None
    previous: LastRound | None = None  # the round before the last one
    tried: frozenset[str] = frozenset()
    worse: frozenset[str] = frozenset()  # remedies whose round made things worse: never carried further
    follow_up: tuple[Remedy, dict] | None = None
    current_bests: dict[str, float | None] = field(default_factory=dict)  # the current job's best per metric
    learning_rate: float | None = None  # the base job's learning rate
    measured_lr: tuple[float, dict] | None = None  # a range test's suggested rate, with its evidence
    base_job_id: str | None = None
    base_checkpoints: frozenset[str] = frozenset()  # "best" / "last" where the base job has them on disk
    base_epochs: int = 0
    base_best_epoch: int | None = None
    base_warm: bool = False  # the base job itself started from another job's weights
    imagenet_available: bool = True  # workers can load the ImageNet weights (Settings.imagenet_loadable)
    remedy_evidence: dict[str, dict] = field(default_factory=dict)  # remedies a probe built, with what it measured


IMAGENET_UNAVAILABLE = "the workers cannot load the ImageNet weights (PLATEAU_IMAGENET_AVAILABLE=false)"


def helped(last: LastRound | None) -> bool:
    """Whether the last round's child beat its parent beyond noise (no fork yet: yes). What a lineage reports as
    a fix; where the lineage goes on from is `go_on_from_child`."""
    return last is None or last.direction == "better"


def go_on_from_child(last: LastRound | None) -> bool:
    """Whether the next round starts from the last round's child rather than its parent: when the child is better
    beyond noise, or when the test cannot tell and the child's point estimate is at least its parent's (on a
    tie the child, which a warm start has trained for longer). A worse child, an unclear one that scored lower,
    or one not compared (failed before an epoch, other validation images) hands the lineage back to its parent."""
    if helped(last):
        return True
    return last.direction == "unclear" and last.gain is not None and last.gain >= 0


def _no_point_gain(round_: LastRound | None) -> bool:
    return round_ is not None and round_.direction == "unclear" and (round_.gain is None or round_.gain <= 0)


def plateaued(last: LastRound | None, previous: LastRound | None) -> bool:
    """Two rounds in a row that the test could not tell from their parents and that did not raise the point
    estimate either: the remedies stopped moving the metric, whatever is left to try."""
    return _no_point_gain(last) and _no_point_gain(previous)


def needs_imagenet(remedy: Remedy) -> bool:
    return (remedy.patch.get("model") or {}).get("weights") == "imagenet"


def without_imagenet(diagnosis: Diagnosis) -> Diagnosis:
    """The diagnosis without the remedies that load the ImageNet weights."""
    findings = [
        f.model_copy(update={"remedies": [r for r in f.remedies if not needs_imagenet(r)]}) for f in diagnosis.findings
    ]
    return diagnosis.model_copy(update={"findings": findings})


def with_skipped(step: End | Fork, skipped: str) -> End | Fork:
    """The step taken instead of `skipped`, a remedy that could not run, with the reason recorded: in the fork's
    evidence, or in the detail of the end."""
    if isinstance(step, End):
        return End(step.reason, f"{step.detail}; skipped {skipped}: {IMAGENET_UNAVAILABLE}")
    evidence = {**step.evidence, "skipped": {skipped: IMAGENET_UNAVAILABLE}}
    return Fork(step.cause, step.confidence, step.remedy, step.follow_up, evidence, step.start)


def target_reached(target: dict[str, float] | None, bests: dict[str, float | None]) -> str | None:
    for metric, wanted in (target or {}).items():
        value = bests.get(metric)
        if value is not None and (value >= wanted if higher_is_better(metric) else value <= wanted):
            return f"{metric} {value:.4g} reached the target {wanted:g}"
    return None


def with_measured_rate(step: Fork, facts: Facts) -> Fork:
    """A learning-rate remedy takes the range test's suggested rate over its ×N rule, when one was measured and it
    moves the rate the way the remedy does; the round records which evidence chose the value."""
    sign = LEARNING_RATE_REMEDIES.get(step.remedy.id)
    if sign is None or facts.measured_lr is None or facts.learning_rate is None:
        return step
    rate, evidence = facts.measured_lr
    if (rate - facts.learning_rate) * sign <= 0:
        return Fork(
            step.cause,
            step.confidence,
            step.remedy,
            step.follow_up,
            {**step.evidence, "learning_rate_from": "rule", "measured_lr_ignored": {"suggested_lr": rate, **evidence}},
        )
    patch = {**step.remedy.patch, "optimizer": {**step.remedy.patch.get("optimizer", {}), "learning_rate": rate}}
    remedy = step.remedy.model_copy(
        update={"patch": patch, "text": f"Set the learning rate to {rate:.3g}, the range test's suggestion."}
    )
    chosen = {"learning_rate_from": "range_test", "suggested_lr": rate, **evidence}
    return Fork(step.cause, step.confidence, remedy, step.follow_up, {**step.evidence, **chosen})


def _with(step: Fork, *, patch: dict, start: str, evidence: dict) -> Fork:
    remedy = step.remedy.model_copy(update={"patch": patch})
    return Fork(step.cause, step.confidence, remedy, step.follow_up, {**step.evidence, **evidence}, start)


def with_start(step: Fork, facts: Facts) -> Fork:
    """Warm where the remedy keeps the architecture and the data and the base has the checkpoint: from its best
    epoch, or for more epochs from where it ended, training only the epochs still missing. Cold otherwise, and
    then without the base's own init_from (a cold child starts from its spec's weights); cold as well, with the
    reason in its evidence, against a cause whose parent's weights are the damage (DAMAGED_WEIGHTS_CAUSES)."""
    patch = step.remedy.patch
    # more epochs after a lowered rate go on from that child's sane weights; every other fork of the cause is cold
    damaged = step.cause in DAMAGED_WEIGHTS_CAUSES and step.remedy.id != "train_longer"
    if step.remedy.id in WARM_REMEDIES and facts.base_job_id is not None and not damaged:
        if step.remedy.id == "train_longer" and "last" in facts.base_checkpoints:
            extra = int(patch.get("epochs", 0)) - facts.base_epochs
            if extra >= 1:
                warm = {"epochs": extra, "model": {"init_from": {"job": facts.base_job_id, "checkpoint": "last"}}}
                saved = {"from_job": facts.base_job_id, "checkpoint": "last", "epochs_saved": facts.base_epochs}
                return _with(step, patch=apply_patch(patch, warm), start="warm", evidence={"warm_start": saved})
        elif step.remedy.id != "train_longer" and "best" in facts.base_checkpoints:
            warm = {"model": {"init_from": {"job": facts.base_job_id, "checkpoint": "best"}}}
            saved = {"from_job": facts.base_job_id, "checkpoint": "best", "epochs_saved": facts.base_best_epoch or 0}
            return _with(step, patch=apply_patch(patch, warm), start="warm", evidence={"warm_start": saved})
    why = {"cold_start": f"the parent's weights were trained at a rate too high ({step.cause})"} if damaged else {}
    if facts.base_warm:
        cold = {**patch, "model": {**patch.get("model", {}), "init_from": None}}  # a null deletes it in the spec
        return _with(step, patch=cold, start="cold", evidence=why)
    return _with(step, patch=patch, start="cold", evidence=why) if why else step


def decide(config: AutopilotSpec, facts: Facts) -> End | Fork:
    """In order: a target reached ends the lineage; the last round allowed is judged on its own child before the
    lineage ends on max_rounds (fixed in its last round, i.e. better beyond noise and healthy, is `healthy`);
    otherwise `next_step`, from the job `go_on_from_child` picks (`facts.base`).

    A round the test cannot tell from its parent ("unclear") does not end the lineage: it goes on from the child
    when the child's point estimate did not drop, and the follow-up in the same direction stays open; a round
    that made things worse is never carried further in its direction. Without the ImageNet weights, remedies
    that switch to them are skipped and the round (or the end) records them."""
    reached = target_reached(config.target, facts.current_bests)
    if reached:
        return End("target_reached", reached)
    last_helped = helped(facts.last)
    if facts.rounds_done >= config.max_rounds:
        if last_helped and facts.current.verdict == "healthy":
            return End("healthy", facts.current.summary)
        return End("max_rounds", f"{facts.rounds_done} of {config.max_rounds} rounds done")
    follow = facts.follow_up
    if follow is not None and follow[0].id in facts.worse:
        follow = None  # a direction that made things worse is never taken again
    choose = {
        "rounds_done": facts.rounds_done,
        "last_helped": last_helped,
        "from_child": go_on_from_child(facts.last),
        "plateau": plateaued(facts.last, facts.previous),
        "tried": set(facts.tried) | set(facts.worse),
        "again": (set(facts.tried) - set(facts.worse)) & LOOSENED_AGAIN if go_on_from_child(facts.last) else set(),
        "follow_up": follow,
        "last_cause": facts.last.cause if facts.last else None,
    }
    step = next_step(config, diagnosis=facts.base, **choose)
    if not facts.imagenet_available and isinstance(step, Fork) and needs_imagenet(step.remedy):
        step = with_skipped(next_step(config, diagnosis=without_imagenet(facts.base), **choose), step.remedy.id)
    if not isinstance(step, Fork):
        return step
    measured = facts.remedy_evidence.get(step.remedy.id)
    if measured:
        step = Fork(step.cause, step.confidence, step.remedy, step.follow_up, {**step.evidence, **measured}, step.start)
    return with_start(with_measured_rate(step, facts), facts)


def next_step(
    config: AutopilotSpec,
    *,
    rounds_done: int,
    last_helped: bool,
    from_child: bool,
    diagnosis: Diagnosis,
    tried: set[str],
    follow_up: tuple[Remedy, dict] | None = None,
    last_cause: str | None = None,
    plateau: bool = False,
    again: set[str] = frozenset(),
) -> End | Fork:
    """`diagnosis` is of the job the next fork would start from: the last child when `from_child`
    (`go_on_from_child`: better beyond noise, or unclear without a lower point estimate), else its parent.

    `plateau` (`plateaued`: the last two rounds unclear, neither with a point gain) ends the lineage `no_gain`.
    Otherwise the candidates are the remedies of findings at or above min_confidence, most confident finding
    first and each finding's remedies in their (evidence-ranked) order, skipping remedies already tried on this
    lineage and advice with no spec change; then a brake of LOOSENED_AGAIN that a round already loosened
    (`again`: tried, never worse, and the lineage goes on from its child) and that a confident finding names
    again with the child's value; the exploration is skipped when the last round helped and left a
    healthy job. When none is left and the lineage goes on from the last child, `follow_up` (analysis.followup:
    another brake of the same finding, the same brake further, or more epochs) goes on with the same cause.
    With nothing left: `healthy` when the last round helped and left a healthy job; `no_gain` when the lineage
    went back to the parent (the last round was worse, lower, or not measured); else `no_confident_cause`."""
    if rounds_done >= config.max_rounds:
        return End("max_rounds", f"{rounds_done} of {config.max_rounds} rounds done")
    if plateau:
        return End("no_gain", "two rounds in a row were within noise of their parents with no gain in their best")
    confident = [f for f in diagnosis.findings if f.confidence >= config.min_confidence]
    if not (last_helped and diagnosis.verdict == "healthy"):
        for finding in confident:
            for remedy in finding.remedies:
                if remedy.patch and remedy.id not in tried:
                    return Fork(finding.cause, finding.confidence, remedy)
        for finding in confident:  # then a brake loosened before, which the child's finding names again
            for remedy in finding.remedies:
                if remedy.patch and remedy.id in again:
                    return Fork(finding.cause, finding.confidence, remedy, evidence={"loosened_again": remedy.id})
    if from_child and follow_up is not None:
        remedy, evidence = follow_up
        return Fork(last_cause, None, remedy, evidence)
    if last_helped and diagnosis.verdict == "healthy":
        return End("healthy", diagnosis.summary)
    if not from_child:
        return End("no_gain", "the last remedy did not gain over its parent and no untried remedy is left")
    if not confident:
        best = max((f.confidence for f in diagnosis.findings), default=None)
        return End(
            "no_confident_cause",
            f"no finding at confidence ≥ {config.min_confidence:g}"
            + (f" (best {best:.2f})" if best is not None else f"; verdict {diagnosis.verdict}"),
        )
    return End("no_confident_cause", "every remedy of the confident findings was already tried")
