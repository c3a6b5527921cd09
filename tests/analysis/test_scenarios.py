"""Whole histories shaped like real runs: the right cause comes first."""

import math

from analysis import apply_patch, diagnose, remedy_by_id
from tests.analysis.builders import causes, ctx, flat, history, ramp

THREE = {"a": 8, "b": 8, "c": 8}


def test_textbook_overfitting():
    n = 15
    h = history(
        loss=ramp(1.0, -0.06, n),
        accuracy=ramp(0.6, 0.026, n),
        train_eval_loss=ramp(0.9, -0.058, n),
        train_eval_accuracy=ramp(0.62, 0.026, n),
        val_loss=[0.9, 0.8, 0.72, 0.68, 0.66, 0.66, 0.68, 0.7, 0.73, 0.76, 0.8, 0.84, 0.88, 0.92, 0.96],
        val_accuracy=[0.6, 0.66, 0.7, 0.72, 0.73] + [0.73] * 10,
    )
    spec = {"regularization": {"dropout": 0.2}}
    d = diagnose(h, ctx(spec, class_counts_train={"a": 100, "b": 100}))
    assert d.verdict == "stagnating" and d.primary_cause == "overfitting"
    assert "plateau" in causes(d)
    assert apply_patch(spec, remedy_by_id(d, "increase_dropout").patch) == {"regularization": {"dropout": 0.5}}


def test_batchnorm_collapse_outranks_overfitting_after_unfreezing():
    # 8 images per class, batch size 8, every layer trainable: val_loss 1e4, inference-mode accuracy at chance
    h = history(
        loss=[1.1, 0.7, 0.4, 0.2, 0.1],
        accuracy=[0.4, 0.7, 0.85, 0.95, 1.0],
        val_loss=[1.1, 3.0, 80.0, 2e3, 1e4],
        val_accuracy=[0.4, 0.34, 0.33, 0.33, 0.33],
    )
    d = diagnose(
        h, ctx({"model": {"trainable": "all", "batchnorm": "train"}, "batch_size": 8}, class_counts_train=THREE)
    )
    assert d.primary_cause == "batchnorm_mismatch"
    assert [r.id for r in d.findings[0].remedies[:2]] == ["freeze_batchnorm", "unfreeze_fewer_at_low_lr"]


def test_learning_rate_blows_up():
    h = history(
        loss=[2.0, 5.0, 40.0, math.nan],
        accuracy=[0.3, 0.33, 0.33, 0.33],
        val_loss=[2.0, 6.0, 50.0, math.nan],
        val_accuracy=[0.33] * 4,
    )
    d = diagnose(h, ctx({"optimizer": {"name": "sgd", "learning_rate": 0.5}}, class_counts_train=THREE))
    assert d.verdict == "diverging" and d.primary_cause == "learning_rate_too_high"
    assert remedy_by_id(d, "lower_learning_rate").patch == {"optimizer": {"learning_rate": 0.05}}


def test_frozen_random_base_underfits():
    n = 10
    h = history(
        loss=flat(1.09, n),
        accuracy=flat(0.36, n),
        train_eval_accuracy=flat(0.37, n),
        train_eval_loss=flat(1.08, n),
        val_loss=flat(1.09, n),
        val_accuracy=flat(0.35, n),
        update_ratio_head=flat(2e-3, n),
        learning_rate=flat(1e-3, n),
    )
    d = diagnose(h, ctx({"model": {"weights": None, "trainable": "head"}}, class_counts_train=THREE))
    assert d.primary_cause == "base_too_frozen"
    assert d.findings[0].remedies[0].id == "use_imagenet_weights"
    assert "learning_rate_too_low" not in causes(d)  # the measured update ratio is healthy


def test_unfreezing_a_pretrained_base_at_the_head_learning_rate():
    # val_loss jumps from 0.9 to 4 once the whole base trains at 1e-2; validation never recovers
    h = history(
        loss=[0.9, 1.1, 1.0, 0.9, 0.85],
        accuracy=[0.6, 0.5, 0.55, 0.6, 0.62],
        val_loss=[0.9, 4.0, 3.0, 2.5, 2.2],
        val_accuracy=[0.6, 0.35, 0.4, 0.45, 0.45],
    )
    spec = {"model": {"trainable": "all"}, "optimizer": {"name": "sgd", "learning_rate": 1e-2, "momentum": 0.9}}
    d = diagnose(h, ctx(spec, class_counts_train=THREE))
    assert d.primary_cause == "learning_rate_too_high_after_unfreezing"
    assert d.findings[0].remedies[0].id == "unfreeze_fewer_at_low_lr"
    assert "val_loss_spike" in d.findings[0].observed["signals"]


def test_reduce_lr_cutting_during_warm_up():
    n = 10
    h = history(
        learning_rate=[1e-3] * 3 + [1e-4] * 7,
        train_eval_accuracy=[0.4, 0.5, 0.6, 0.62, 0.63, 0.64, 0.65, 0.66, 0.67, 0.68],
        val_accuracy=[0.38, 0.48, 0.58, 0.6, 0.61, 0.62, 0.63, 0.64, 0.65, 0.66],
        train_eval_loss=ramp(1.0, -0.04, n),
        val_loss=ramp(1.02, -0.04, n),
    )
    spec = {"callbacks": {"reduce_lr_on_plateau": {"patience": 1}}}
    d = diagnose(h, ctx(spec, class_counts_train=THREE, planned_epochs=30))
    assert "premature_lr_cut" in causes(d) and "overfitting" not in causes(d)
    assert remedy_by_id(d, "lengthen_reduce_lr_patience").patch == {
        "callbacks": {"reduce_lr_on_plateau": {"patience": 5, "cooldown": 2}}
    }
