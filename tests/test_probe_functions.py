"""Each probe as a plain function on tiny synthetic data whose answer is known."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from worker.probes import confident, linear, lr_range, memorization
from worker.probes.budget import Budget


def blobs(n_per_class: int, k: int, dim: int = 16, spread: float = 4.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (k, dim))
    x = np.concatenate([centres[c] + rng.normal(0, 1, (n_per_class, dim)) for c in range(k)]).astype("float32")
    y = np.repeat(np.arange(k), n_per_class)
    return x, y


def flip(labels: np.ndarray, share: float, k: int, seed: int = 1) -> tuple[np.ndarray, set[int]]:
    """Move a known share of images to another class, as moving their files between class folders would."""
    rng = np.random.default_rng(seed)
    flipped = set(rng.choice(len(labels), int(share * len(labels)), replace=False).tolist())
    noisy = labels.copy()
    for i in flipped:
        noisy[i] = (labels[i] + rng.integers(1, k)) % k
    return noisy, flipped


# --- linear probe -----------------------------------------------------------------------------------------


def test_linear_probe_is_informative_on_separable_classes_and_at_chance_on_random_labels():
    x, y = blobs(30, 3)
    result = linear.linear_probe(x, y, ["a", "b", "c"])
    assert result["folds"] == 5 and result["images"] == 90
    assert result["accuracy"] > 0.9 and result["informative"] is True
    lo, hi = result["interval"]
    assert lo < result["accuracy"] <= hi and lo > 1 / 3
    shuffled = np.random.default_rng(3).permutation(y)
    random_labels = linear.linear_probe(x, shuffled, ["a", "b", "c"])
    assert random_labels["informative"] is False
    assert random_labels["interval"][0] <= 1 / 3 <= random_labels["interval"][1] + 0.05


def test_linear_probe_folds_are_limited_by_the_smallest_class():
    x, y = blobs(3, 2)
    assert linear.linear_probe(x, y, ["a", "b"])["folds"] == 3
    x1, y1 = x[:4], np.array([0, 0, 0, 1])
    result = linear.linear_probe(x1, y1, ["a", "b"])
    assert result["accuracy"] is None and "too few images" in result["statement"]


# --- label check ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_check_finds_planted_flips(seed):
    k = 3
    x, y = blobs(40, k, spread=3.0, seed=seed)
    noisy, flipped = flip(y, 0.1, k, seed=seed + 10)
    files = [f"c{label}/img_{i:03d}.png" for i, label in enumerate(noisy)]
    result = linear.label_check(x, noisy, ["a", "b", "c"], files, seed=seed, use_cleanlab=False)
    assert result["method"] == "plateau"
    found = {files.index(issue["file"]) for issue in result["issues"]}
    precision = len(found & flipped) / max(1, len(found))
    recall = len(found & flipped) / len(flipped)
    assert precision >= 0.8 and recall >= 0.5, (precision, recall)
    assert 0.03 <= result["noise_rate"] <= 0.25
    scores = [issue["score"] for issue in result["issues"]]
    assert scores == sorted(scores, reverse=True)  # most suspect first
    for issue in result["issues"]:
        assert issue["given"] != issue["suspected"]
    assert result["pair_noise"] and all(p["given"] != p["true"] for p in result["pair_noise"])


def test_label_check_suspects_nothing_when_the_features_are_uninformative():
    x, y = blobs(20, 3)
    random_labels = np.random.default_rng(5).permutation(y)
    result = linear.label_check(x, random_labels, ["a", "b", "c"], [str(i) for i in range(60)], use_cleanlab=False)
    assert result["issues"] == [] and result["noise_rate"] is None and "better than chance" in result["statement"]


def test_label_check_on_clean_labels_suspects_almost_nothing():
    x, y = blobs(40, 3, spread=4.0)
    result = linear.label_check(x, y, ["a", "b", "c"], [str(i) for i in range(len(y))], use_cleanlab=False)
    assert len(result["issues"]) <= 2 and result["noise_rate"] < 0.05


def wide(n_per_class: int, k: int, dim: int = 2048, latent: int = 8, spread: float = 0.75, seed: int = 0):
    """Far fewer images than features, as a base's 2,048 pooled features of a small training set: the classes
    differ in a few latent directions, mixed into every feature, with noise of its own on each."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (k, latent))
    z = np.concatenate([centres[c] + rng.normal(0, 1, (n_per_class, latent)) for c in range(k)])
    x = z @ rng.normal(0, 1, (latent, dim)) + rng.normal(0, 1, (len(z), dim))
    return x.astype("float32"), np.repeat(np.arange(k), n_per_class)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_check_finds_moved_labels_when_many_are_wrong_on_few_images_of_many_features(seed):
    """40 % of 128 labels moved, 2,048 features: accuracy against the labels stays near chance, but the check still
    tells the labels apart from the features (it abstained on two of these three before) and its suspects are
    mostly moved files."""
    k = 4
    x, y = wide(32, k, seed=seed)
    noisy, flipped = flip(y, 0.4, k, seed=seed + 10)
    result = linear.label_check(x, noisy, list("abcd"), [str(i) for i in range(len(y))], seed=seed, use_cleanlab=False)
    assert result["noise_rate"] is not None and result["p_value"] < linear.SIGNIFICANCE, result["statement"]
    found = {int(issue["file"]) for issue in result["issues"]}
    assert len(found & flipped) / len(found) >= 0.5 and len(found & flipped) / len(flipped) >= 0.5


def test_out_of_fold_regularises_by_a_unit_variance_prior_over_the_varying_features():
    x, y = wide(20, 3, dim=100)
    x[:, :20] = 1.0  # constant features: nothing to standardise, nothing to weigh
    fitted = linear.out_of_fold(x, y, 3)
    assert fitted.folds == 5 and fitted.probs.shape == (60, 3)
    assert fitted.C == pytest.approx(1 / 80, rel=1e-4)  # standardised, each varying feature adds 1 to mean ‖x‖²
    assert linear.linear_probe(x, y, ["a", "b", "c"], fitted=fitted)["C"] == fitted.C


def test_favours_given_labels_reads_the_probabilities_not_only_the_argmax():
    labels = np.repeat(np.arange(4), 25)
    rng = np.random.default_rng(0)
    # the argmax is right for a third of the images only, but the given label is always a little likelier
    probs = rng.dirichlet(np.ones(4) * 5, size=100)
    probs[np.arange(100), labels] += 0.08
    probs /= probs.sum(1, keepdims=True)
    assert np.mean(probs.argmax(1) == labels) < 0.45
    assert linear.favours_given_labels(labels, probs) < 0.001
    assert linear.favours_given_labels(rng.permutation(labels), probs) > linear.SIGNIFICANCE
    assert linear.favours_given_labels(labels, np.full((100, 4), 0.25)) == 1.0


def test_confident_joint_counts_known_probabilities():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7]])
    t = confident.thresholds(labels, probs)
    assert t == pytest.approx([0.6, 0.8])
    joint = confident.confident_joint(labels, probs)
    # image 2 (labelled 0) is confidently 1; image 5 (p1 0.7 < 0.8, p0 0.3 < 0.6) counts nowhere, rows re-scaled
    assert joint == pytest.approx(np.array([[2, 1], [0, 3]]))
    assert confident.find_issues(labels, probs, use_cleanlab=False)["ranked"] == [2]


# --- learning-rate range test -------------------------------------------------------------------------------


def test_range_summary_reads_a_known_curve():
    lrs = lr_range.rates(1e-7, 10, 100)
    # a textbook curve: flat, falling from 1e-4 to 1e-2, then diverging
    raw = [
        2.0 if lr < 1e-4 else max(0.2, 2.0 - 0.9 * math.log10(lr / 1e-4)) if lr < 1e-2 else 0.2 * (lr / 1e-2) ** 2
        for lr in lrs
    ]
    result = lr_range.summarize(lrs, raw, job_rate=3.0, part="head", truncated=False)
    lo, hi = result["usable_range"]
    assert 1e-5 <= lo <= 1e-3 and 1e-3 <= hi <= 1e-1
    assert lo <= result["suggested_rate"] <= hi
    assert result["job_rate_verdict"] == "too_high" and result["diverged"]
    assert "this job uses 3" in result["statement"]
    assert (
        lr_range.summarize(lrs, raw, job_rate=1e-3, part="head", truncated=False)["job_rate_verdict"] == "within_range"
    )
    assert lr_range.summarize(lrs, raw, job_rate=1e-7, part="head", truncated=False)["job_rate_verdict"] == "too_low"


def test_the_settling_steps_noise_is_not_where_the_range_starts():
    lrs = lr_range.rates(1e-7, 10, 100)
    # a recorded shape: the first smoothed value happens to sit low, the loss is flat until ~4e-4, falls to its
    # lowest near 4e-3, then rises again
    smoothed = [1.46] + [1.49] * 43 + [1.49 - 0.01 * i for i in range(1, 15)] + [1.35] * 6 + [1.45] * 36
    result = lr_range.read(lrs, smoothed, job_rate=1e-6, part="head", truncated=False)
    lo, hi = result["usable_range"]
    assert 1e-4 < lo < 1e-3 and 1e-3 < hi < 1e-1, result["usable_range"]
    assert result["job_rate_verdict"] == "too_low"


def test_a_loss_that_never_falls_suggests_no_rate():
    lrs = lr_range.rates(1e-7, 10, 100)
    # a random-init head whose loss wanders without falling: its steepest point is noise
    raw = [1.1 + 0.01 * math.sin(i) + (0.5 if i > 90 else 0) for i in range(len(lrs))]
    result = lr_range.summarize(lrs, raw, job_rate=1e-6, part="head", truncated=False)
    assert result["usable_range"] is None and result["suggested_rate"] is None
    assert result["job_rate_verdict"] == "unknown" and "did not fall" in result["statement"]
    # a record made before this rule, with a steepest point but no range, is no measurement either
    from analysis.probes import parse, suggested_rate

    old = {**result, "suggested_rate": 0.35, "status": "succeeded"}
    assert suggested_rate({"lr_range": old}) is None and "lr_range" not in parse({"lr_range": old})


def test_range_summary_stops_at_a_non_finite_loss():
    lrs = lr_range.rates(1e-3, 1, 10)
    result = lr_range.summarize(
        lrs, [1, 0.9, 0.7, 0.5, float("nan"), 3, 3, 3, 3, 3], job_rate=0.1, part="head", truncated=False
    )
    assert len(result["rates"]) == 4 and result["diverged"]


def test_sweep_respects_its_budget():
    budget = Budget(0.0)
    lrs, losses = lr_range.sweep(lambda rates, _: [1.0] * len(rates), iter(lambda: (0, 0), None), budget=budget)
    assert lrs == [] and budget.truncated
    result = lr_range.summarize(lrs, losses, job_rate=0.01, part="head", truncated=True)
    assert result["job_rate_verdict"] == "unknown" and "budget ran out after 0 steps" in result["statement"]


def test_a_sweep_run_many_steps_a_call_keeps_what_one_step_a_call_keeps():
    def losses(rates, _):  # falls, then diverges near 0.1 (in the middle of a call of 7 or 25 steps)
        return [1.0 - 0.1 * math.log10(lr / 1e-7) if lr < 0.1 else 50.0 for lr in rates]

    def batches():
        while True:
            yield None, None

    one = lr_range.sweep(losses, batches(), budget=Budget(60), per_call=1)
    assert 70 < len(one[0]) < 100 and one[1][-1] == 50.0  # stopped on divergence
    for per_call in (7, 25, 100):
        assert lr_range.sweep(losses, batches(), budget=Budget(60), per_call=per_call) == one, per_call
    nan = lr_range.sweep(lambda rates, _: [float("nan")] * len(rates), batches(), budget=Budget(60), per_call=25)
    assert len(nan[0]) == 1  # a non-finite loss ends the sweep at that step


# --- with Keras: a softmax head on synthetic features ----------------------------------------------------------


def head(k: int, dim: int, lr: float, seed: int = 0, dropout: float = 0.0, l2: float = 0.0):
    """The shape of the job's head on pooled features: Dense(relu) then a softmax, trained with Adam (with dropout
    before and an l2 penalty on the Dense kernel when asked)."""
    import keras

    keras.utils.set_random_seed(seed)
    penalty = keras.regularizers.L2(l2) if l2 else None
    model = keras.Sequential(
        [keras.Input((dim,))]
        + ([keras.layers.Dropout(dropout)] if dropout else [])
        + [
            keras.layers.Dense(32, activation="relu", kernel_regularizer=penalty),
            keras.layers.Dense(k, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="categorical_crossentropy")
    return model


def batches(x, y, k, size=16, seed=0):
    rng = np.random.default_rng(seed)
    onehot = np.eye(k, dtype="float32")[y]
    while True:
        idx = rng.choice(len(x), size, replace=False)
        yield x[idx], onehot[idx]


def test_compiled_steps_are_train_on_batch_step_for_step():
    from worker.probes.steps import Steps

    x, y = blobs(20, 3, spread=1.0)
    onehot = np.eye(3, dtype="float32")[y]
    rng = np.random.default_rng(0)
    # batches of 8 and a smaller one, as an epoch's last batch may be
    batches = [(x[idx], onehot[idx]) for idx in (rng.choice(60, 8 if i % 5 else 3, replace=False) for i in range(40))]
    rates = np.geomspace(1e-4, 0.3, 40).tolist()
    alone = head(3, 16, 1e-3, dropout=0.3, l2=1e-3)
    expected = []
    for rate, (bx, by) in zip(rates, batches, strict=True):
        alone.optimizer.learning_rate.assign(rate)
        expected.append(float(alone.train_on_batch(bx, by)))
    together = head(3, 16, 1e-3, dropout=0.3, l2=1e-3)
    steps = Steps(together)
    got = steps(rates[:25], batches[:25]) + steps(rates[25:], batches[25:])  # the state carries across calls
    # the same losses (with the penalty, under the same dropout draws) and the same weights at the end
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert expected[-1] != expected[0]
    for a, b in zip(alone.get_weights(), together.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_lr_range_on_a_head_finds_a_sane_rate_and_flags_3_as_too_high():
    x, y = blobs(40, 3, spread=1.0)
    result = lr_range.run(head(3, 16, 1e-3), batches(x, y, 3), job_rate=3.0, part="head", budget=Budget(60))
    assert not result["truncated"]
    assert 1e-5 <= result["suggested_rate"] <= 1.0, result["statement"]
    lo, hi = result["usable_range"]
    assert hi < 3.0 and result["job_rate_verdict"] == "too_high", result["statement"]
    assert len(result["rates"]) == len(result["losses"]) <= lr_range.NUM_IT


def test_memorization_fits_with_a_normal_rate_and_not_with_1e_9():
    x, y = blobs(8, 4, spread=1.0)
    onehot = np.eye(4, dtype="float32")[y]
    ok = memorization.run(head(4, 16, 1e-2), x, onehot, steps=100, budget=Budget(60), batch_size=32)
    assert ok["fitted"] and ok["accuracy"] >= 0.95, ok
    stuck = memorization.run(head(4, 16, 1e-9), x, onehot, steps=100, budget=Budget(60), batch_size=32)
    assert not stuck["fitted"] and "optimisation" in stuck["statement"], stuck
    assert stuck["steps"] == 100


def test_memorization_claims_a_fault_only_when_the_interval_is_below_the_bar():
    near = memorization.summarize(30 / 32, 0.35, images=32, n_classes=4, steps=100, truncated=False)
    assert not near["fitted"] and "optimisation" not in near["statement"] and "sampling noise" in near["statement"]
    far = memorization.summarize(18 / 32, 1.2, images=32, n_classes=4, steps=100, truncated=False)
    assert not far["fitted"] and "optimisation or wiring fault" in far["statement"]


def test_memorization_budget_truncates():
    x, y = blobs(8, 2)
    result = memorization.run(
        head(2, 16, 1e-2), x, np.eye(2, dtype="float32")[y], steps=100, budget=Budget(0), batch_size=4
    )
    assert result["truncated"] and result["steps"] == 0


def test_balanced_subset():
    labels = [0] * 20 + [1] * 5 + [2] * 9
    idx = memorization.balanced_subset(labels, 3, per_class=8, seed=1)
    assert [labels[i] for i in idx].count(0) == 5 and len(idx) == 15


# --- the job's files: exclusions honoured, suspects named by their path under train_dir -------------------------


def test_label_check_names_the_files_moved_between_class_folders(tmp_path):
    """Move known files into the wrong class folder; features that know each image's true class (here: its
    original folder, as a perfect base would) make the moved files, and only them, the suspects."""
    from contract.spec import JobSpec
    from samples.shapes import generate
    from worker.probes.context import load_data

    generate(tmp_path / "set", classes=3, train=20, val=2, size=32, seed=3)
    train = tmp_path / "set" / "train"
    moved = {
        "circle/circle_0003.png": "square",
        "square/square_0011.png": "triangle",
        "triangle/triangle_0007.png": "circle",
    }
    for src, to in moved.items():
        (train / src).rename(train / to / Path(src).name)
    spec = JobSpec.model_validate(
        {"dataset": {"train_dir": "set/train", "val_dir": "set/val", "image_size": 75}, "model": {"weights": None}}
    )
    data = load_data(spec, data_root=tmp_path)
    truth = np.array([data.classes.index(Path(f).name.split("_")[0]) for f in data.files])
    rng = np.random.default_rng(0)
    features = (np.eye(3)[truth] * 3 + rng.normal(0, 1, (len(truth), 3))).astype("float32")
    result = linear.label_check(features, data.labels, data.classes, data.files, use_cleanlab=False)
    expected = {f"{to}/{Path(src).name}" for src, to in moved.items()}
    found = {issue["file"] for issue in result["issues"]}
    assert len(found & expected) >= 2 and len(found & expected) / len(found) >= 0.8, (found, expected)
    for issue in result["issues"]:
        if issue["file"] in expected:  # named by its folder now, suspected of its true class
            assert issue["given"] == issue["file"].split("/")[0]
            assert issue["suspected"] == Path(issue["file"]).name.split("_")[0]
    # the fork's exclusion list leaves them out of the job's data, and of the next check
    spec.dataset.exclude = sorted(found)
    after = load_data(spec, data_root=tmp_path)
    assert len(after.files) == len(data.files) - len(found) and not found & set(after.files)


def test_prepare_data_honours_dataset_exclude(data_root):
    from contract.spec import JobSpec
    from tests.specs import small_spec
    from worker.training.fit import prepare_data
    from worker.training.sink import MemorySink

    spec = small_spec()
    spec["dataset"] = {**spec["dataset"], "exclude": ["circle/circle_0000.png", "circle/circle_0001.png"]}
    prepared = prepare_data(JobSpec.model_validate(spec), data_root=data_root, sink=MemorySink())
    assert prepared.counts["train"] == {"circle": 6, "square": 8, "triangle": 8}
    assert prepared.counts["val"] == {"circle": 4, "square": 4, "triangle": 4}


# --- what the analysis reads ----------------------------------------------------------------------------------


def test_analysis_reads_probe_results_as_evidence():
    from analysis import probes as evidence

    lrs = lr_range.rates(1e-7, 10, 100)
    raw = [
        2.0 if lr < 1e-4 else max(0.2, 2.0 - 0.9 * math.log10(lr / 1e-4)) if lr < 1e-2 else 0.2 * (lr / 1e-2) ** 2
        for lr in lrs
    ]
    results = {
        "lr_range": lr_range.summarize(lrs, raw, job_rate=3.0, part="head", truncated=False),
        "memorization": memorization.summarize(0.4, 1.0, images=24, n_classes=3, steps=100, truncated=False),
        "unknown_probe": {"x": 1},
        "linear_probe": {"broken": True},
    }
    assert evidence.lr_verdict(results) == "too_high"
    assert 1e-4 <= evidence.suggested_rate(results) <= 1e-2
    assert evidence.optimisation_fault(results) is True
    said = evidence.statements(results)
    assert len(said) == 2 and "this job uses 3" in said[0] and "does not fit" in said[1]
    assert evidence.lr_verdict({}) is None and evidence.optimisation_fault({}) is None


def test_cleanlab_when_installed_agrees_with_the_own_counting():
    pytest.importorskip("cleanlab")  # the optional `labels` extra (AGPL-3.0)
    x, y = blobs(40, 3, spread=3.0, seed=1)
    noisy, flipped = flip(y, 0.1, 3, seed=11)
    files = [str(i) for i in range(len(noisy))]
    fitted = linear.out_of_fold(x, noisy, 3)
    theirs = linear.label_check(x, noisy, ["a", "b", "c"], files, fitted=fitted, use_cleanlab=True)
    ours = linear.label_check(x, noisy, ["a", "b", "c"], files, fitted=fitted, use_cleanlab=False)
    assert theirs["method"] == "cleanlab" and ours["method"] == "plateau"
    found = {int(i["file"]) for i in theirs["issues"]}
    assert len(found & flipped) / max(1, len(found)) >= 0.8 and len(found & flipped) / len(flipped) >= 0.5
    mine = {int(i["file"]) for i in ours["issues"]}
    assert len(found & mine) >= 0.8 * max(len(found), len(mine))
