import pytest

from analysis import apply_patch
from analysis import remedies as R
from analysis.spec import fewer_trainable
from contract.resolved import ResolvedSpec


def view(**sections) -> ResolvedSpec:
    return ResolvedSpec(sections)


def test_learning_rate_changes_scale_the_current_rate():
    spec = view(optimizer={"learning_rate": 3e-4})
    assert R.lower_learning_rate(spec).patch == {"optimizer": {"learning_rate": 3e-5}}
    assert R.increase_learning_rate(spec).patch == {"optimizer": {"learning_rate": 3e-3}}
    assert R.increase_learning_rate(view(optimizer={"learning_rate": 1e-2})) is None  # adam cap


def test_dropout_steps():
    assert R.increase_dropout(view()).patch == {"regularization": {"dropout": 0.5}}
    assert R.increase_dropout(view(regularization={"dropout": 0.5, "dense_dropout": 0.3})).patch == {
        "regularization": {"dropout": 0.6, "dense_dropout": 0.6}
    }
    assert R.increase_dropout(view(regularization={"dropout": 0.7})) is None
    assert R.reduce_dropout(view(regularization={"dropout": 0.8})).patch == {"regularization": {"dropout": 0.5}}
    assert R.reduce_dropout(view(regularization={"dropout": 0.2})) is None


def test_augmentation_added_then_strengthened():
    assert R.augment(view()).id == "add_augmentation"
    current = {"horizontal_flip": True, "rotation_range": 15, "zoom_range": 0.1}
    stronger = R.augment(view(regularization={"augmentation": current}))
    assert stronger.id == "stronger_augmentation"
    assert stronger.patch["regularization"]["augmentation"]["rotation_range"] == 30
    maxed = {
        "horizontal_flip": True,
        "rotation_range": 45,
        "zoom_range": 0.3,
        "width_shift_range": 0.3,
        "height_shift_range": 0.3,
    }
    assert R.augment(view(regularization={"augmentation": maxed})) is None


def test_unfreezing_uses_a_fine_tuning_rate():
    assert R.unfreeze_top_blocks(view(optimizer={"learning_rate": 1e-4})).patch["optimizer"] == {"learning_rate": 1e-5}
    assert R.unfreeze_top_blocks(view(optimizer={"learning_rate": 1e-5})).patch["optimizer"] == {"learning_rate": 1e-6}
    assert R.unfreeze_top_blocks(view(model={"trainable": "all"})) is None


@pytest.mark.parametrize(
    "before, after",
    [
        ("all", "mixed8"),
        ("mixed7", "mixed8"),
        ("mixed9", "mixed10"),
        ("mixed10", "head"),
        (100, 50),
        (1, "head"),
        ("head", None),
    ],
)
def test_fewer_trainable(before, after):
    assert fewer_trainable(before) == after


def test_callbacks_not_suggested_twice():
    assert R.add_early_stopping(view(callbacks={"early_stopping": {"restore_best_weights": True}})) is None
    assert R.add_reduce_lr_on_plateau(view(callbacks={"reduce_lr_on_plateau": {}})) is None
    assert R.add_reduce_lr_on_plateau(view()).patch["callbacks"]["reduce_lr_on_plateau"]["min_lr"] == 1e-6


def test_switch_to_adam_drops_momentum():
    spec = {"optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}}
    patched = apply_patch(spec, R.switch_to_adam(ResolvedSpec(spec)).patch)
    assert patched == {"optimizer": {"name": "adam", "learning_rate": 0.001}}


def test_every_patch_yields_a_valid_job_spec():
    spec_model = pytest.importorskip("contract.spec")
    spec = {
        "dataset": {"train_dir": "d/train", "val_dir": "d/val"},
        "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
        "regularization": {"dropout": 0.6, "l2": 0.01, "augmentation": {"rotation_range": 10}},
    }
    sv = ResolvedSpec(spec)
    built = [
        R.augment(sv),
        R.increase_dropout(sv),
        R.reduce_dropout(sv),
        R.add_l2(view()),
        R.reduce_l2(sv),
        R.add_label_smoothing(sv),
        R.add_early_stopping(sv),
        R.lower_learning_rate(sv),
        R.increase_learning_rate(sv),
        R.add_reduce_lr_on_plateau(sv),
        R.raise_min_lr(sv),
        R.increase_batch_size(sv),
        R.switch_to_adam(sv),
        R.unfreeze_top_blocks(sv),
        R.use_imagenet_weights(view(model={"weights": None})),
        R.freeze_more_layers(view(model={"trainable": "all"})),
        R.unfreeze_fewer_at_low_lr(view(model={"trainable": 40})),
        R.balance_class_weights(sv),
        R.collect_more_data(["a"]),
        R.confirm_with_cleanlab(),
    ]
    assert all(r is not None for r in built)
    for remedy in built:
        spec_model.JobSpec.model_validate(apply_patch(spec, remedy.patch))


def test_step_factor_moves_the_rate_towards_a_healthy_step():
    assert R.step_factor(3e-5, 10, 100, 10) == 100  # 100× too small a step
    assert R.step_factor(1.5e-4, 10, 100, 10) == pytest.approx(20)
    assert R.step_factor(1e-3, 10, 100, 10) == 10  # never less than the lower bound
    assert R.step_factor(None, 10, 100, 10) == 10  # unmeasured: the default
    assert R.step_factor(0.3, 0.01, 0.1, 0.1) == 0.01
    assert R.step_factor(0.06, 0.01, 0.1, 0.1) == pytest.approx(0.05)
