"""Evidence must exceed what sampling noise and chance level explain: gaps and swings against binomial error,
a wild start against ln K, validation loss below training loss as label-noise evidence."""

import math

from analysis.view import View
from tests.analysis.builders import causes, ctx, diagnose, flat, history, ramp, run

FOUR = {"a": 32, "b": 32, "c": 32, "d": 32}
FOUR_VAL = {"a": 12, "b": 12, "c": 12, "d": 12}


def test_an_accuracy_gap_within_sampling_noise_is_not_overfitting():
    # 48 validation images: a 0.12 gap at accuracy 0.4 is within two standard errors (about 0.14)
    h = history(
        train_eval_accuracy=flat(0.52, 8),
        val_accuracy=[0.48, 0.45, 0.42, 0.41, 0.40, 0.40, 0.40, 0.40],
        train_eval_loss=ramp(1.2, -0.02, 8),
        val_loss=[1.1, 1.05, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25],
    )
    mild = {"min_gap": 0.1}  # a gap this size is below the default large-gap bar; here only the noise is tested
    assert run("overfitting", h, params=mild, class_counts_train=FOUR, class_counts_val=FOUR_VAL) is None
    # the same curves measured on 4,800 validation images are evidence
    many = {k: 1200 for k in FOUR}
    f = run("overfitting", h, params=mild, class_counts_train={k: 3200 for k in FOUR}, class_counts_val=many)
    assert f is not None and f.observed["gap_noise"] < 0.12


def test_the_gap_noise_comes_from_both_sample_sizes():
    view = View(history(val_accuracy=[0.5]), ctx(class_counts_train=FOUR, class_counts_val=FOUR_VAL))
    se = view.accuracy_gap_se(0.5, 0.5)
    assert math.isclose(se, math.sqrt(0.25 / 48 + 0.25 / 128))


def test_swings_within_sampling_noise_are_not_oscillation():
    wobble = [0.30, 0.36, 0.30, 0.36, 0.30, 0.36, 0.30, 0.36]  # 0.06 swings on 128 images: about 2 images of noise
    h = history(accuracy=wobble, val_accuracy=flat(0.31, 8), loss=flat(1.4, 8))
    assert run("lr_too_high", h, class_counts_train=FOUR, class_counts_val=FOUR_VAL) is None
    big = [0.25, 0.60, 0.25, 0.60, 0.25, 0.60, 0.25, 0.60]
    f = run(
        "lr_too_high",
        history(accuracy=big, val_accuracy=flat(0.31, 8), loss=flat(1.4, 8)),
        class_counts_train=FOUR,
        class_counts_val=FOUR_VAL,
    )
    assert f is not None and "oscillation_accuracy" in f.observed["signals"]


def test_a_wild_start_far_above_chance_loss_is_a_learning_rate_too_high():
    h = history(
        loss=[46.5, 6.3, 1.45, 1.3, 1.3],
        val_loss=[16.6, 1.27, 1.23, 1.23, 1.27],
        val_accuracy=[0.40, 0.31, 0.44, 0.33, 0.35],
        train_eval_loss=[8.9, 1.23, 1.25, 1.24, 1.26],
        train_eval_accuracy=[0.41, 0.37, 0.41, 0.32, 0.37],
    )
    f = run("lr_too_high", h, class_counts_train=FOUR)
    assert f.cause == "learning_rate_too_high" and "wild_start" in f.observed["signals"]
    assert f.observed["start_loss_epoch"] == 0 and f.observed["chance_loss"] == round(math.log(4), 4)


def test_a_large_penalty_is_not_a_wild_start():
    # l2 0.5: the loss is mostly penalty, which the check takes out before comparing with ln K
    h = history(
        loss=[106.0, 68.0, 43.0, 27.0],
        val_loss=[82.3, 52.3, 32.6, 20.2],
        train_eval_loss=[82.2, 52.3, 32.6, 20.2],
        regularization_loss=[81.0, 51.2, 31.4, 19.0],
        val_accuracy=[0.48, 0.5, 0.48, 0.48],
        train_eval_accuracy=[0.59, 0.44, 0.44, 0.44],
    )
    f = run("lr_too_high", h, {"regularization": {"l2": 0.5}}, class_counts_train=FOUR)
    assert f is None or "wild_start" not in f.observed["signals"]


def test_validation_loss_below_training_loss_suggests_noisy_labels():
    n = 8
    h = history(
        train_eval_loss=ramp(1.3, -0.02, n),
        val_loss=ramp(1.05, -0.02, n),
        train_eval_accuracy=ramp(0.45, 0.01, n),
        val_accuracy=ramp(0.55, 0.01, n),
    )
    f = run("label_noise", h, class_counts_train=FOUR)
    assert f.cause == "label_noise_suspected" and "loss_inverted" in f.observed["signals"]
    # a validation loss only slightly below the training loss is ordinary
    close = history(
        train_eval_loss=ramp(1.3, -0.02, n),
        val_loss=ramp(1.25, -0.02, n),
        train_eval_accuracy=ramp(0.45, 0.01, n),
        val_accuracy=ramp(0.47, 0.01, n),
    )
    assert run("label_noise", close, class_counts_train=FOUR) is None


def test_a_tiny_step_names_a_low_learning_rate_while_accuracy_still_creeps_up():
    n = 8
    h = history(
        train_eval_accuracy=ramp(0.40, 0.02, n),
        val_accuracy=ramp(0.31, 0.02, n),
        train_eval_loss=ramp(1.43, -0.003, n),
        val_loss=ramp(1.47, -0.003, n),
        update_ratio_head=flat(1.3e-5, n),
    )
    d = diagnose(h, ctx({"optimizer": {"learning_rate": 1e-6}}, class_counts_train=FOUR, class_counts_val=FOUR_VAL))
    assert "learning_rate_too_low" in causes(d) and "base_too_frozen" not in causes(d)


def test_uniform_outputs_are_nothing_learned_whatever_the_argmax_scores():
    # a random-init frozen base: the loss never leaves ln 4, while argmax ties flip accuracy around 0.25-0.42
    chance_loss = round(math.log(4), 4)
    h = history(
        train_eval_accuracy=[0.25, 0.33, 0.39, 0.25, 0.31],
        val_accuracy=[0.25, 0.38, 0.42, 0.25, 0.38],
        train_eval_loss=flat(chance_loss, 5),
        val_loss=flat(chance_loss, 5),
        update_ratio_head=flat(0.003, 5),
    )
    f = run("not_learning", h, {"model": {"weights": None}}, class_counts_train=FOUR)
    assert f.cause == "base_too_frozen"
    # the same accuracies with a loss that moved are not this situation
    moved = history(
        train_eval_accuracy=[0.25, 0.33, 0.39, 0.25, 0.31],
        val_accuracy=[0.25, 0.38, 0.42, 0.25, 0.38],
        train_eval_loss=ramp(1.3, -0.1, 5),
        val_loss=ramp(1.3, -0.1, 5),
        update_ratio_head=flat(0.003, 5),
    )
    assert run("not_learning", moved, {"model": {"weights": None}}, class_counts_train=FOUR) is None
