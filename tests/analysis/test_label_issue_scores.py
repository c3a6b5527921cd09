"""Per-image precision and recall of label-check suspects against planted moves (analysis.evaluate)."""

from analysis.evaluate import label_issue_scores


def test_precision_recall_and_precision_at_half_recall():
    moved = {"a/b-1.png", "a/c-2.png", "b/a-3.png", "c/a-4.png"}
    ranked = ["a/b-1.png", "a/a-9.png", "a/c-2.png", "b/a-3.png", "b/b-8.png"]
    s = label_issue_scores(ranked, moved)
    assert (s["suspects"], s["moved"], s["true_positives"]) == (5, 4, 3)
    assert s["precision"] == 0.6 and s["recall"] == 0.75
    # recall reaches 0.5 at the third suspect, two of which were moved
    assert s["precision_at_half_recall"] == round(2 / 3, 4)


def test_no_suspects_and_recall_never_reaching_half():
    assert label_issue_scores([], {"a/b-1.png"}) == {
        "suspects": 0,
        "moved": 1,
        "true_positives": 0,
        "precision": None,
        "recall": 0.0,
        "precision_at_half_recall": None,
    }
    s = label_issue_scores(["x/y-1.png", "a/b-1.png"], {"a/b-1.png", "a/c-2.png", "a/d-3.png"})
    assert s["recall"] == round(1 / 3, 4) and s["precision_at_half_recall"] is None


def _run(case, planted, primary, accepted=(), manifested=True):
    return {
        "case": case,
        "planted": planted,
        "primary_cause": primary,
        "accepted": list(accepted),
        "manifested": manifested,
    }


def test_primary_cause_f1_counts_only_the_primary_and_healthy_runs_against_precision():
    from analysis.evaluate import primary_cause_f1

    runs = [
        _run("lr", "learning_rate_too_high", "learning_rate_too_high"),
        _run(
            "lr",
            "learning_rate_too_high",
            "learning_rate_too_high_after_unfreezing",
            accepted=["x", "learning_rate_too_high_after_unfreezing"],
        ),
        _run("noise", "label_noise_suspected", "plateau"),  # a symptom as primary: not found
        _run("noise", "label_noise_suspected", "label_noise_suspected"),
        _run("healthy", None, "label_noise_suspected"),  # a false alarm costs precision
        _run("noise", "label_noise_suspected", None, manifested=False),  # not scored
    ]
    s = primary_cause_f1(runs)
    assert s["per_cause"]["learning_rate_too_high"] == {"planted": 2, "primary": 2, "right": 2, "f1": 1.0}
    assert s["per_cause"]["label_noise_suspected"] == {"planted": 2, "primary": 2, "right": 1, "f1": 0.5}
    assert s["macro_f1"] == 0.75


def test_moved_files_are_the_copies_named_for_another_class(tmp_path):
    from benchmarks.diagnosis.run import moved_files

    for rel in ("sea/sea-sea_0001.png", "sea/night-night_0002.png", "night/night-night_0003.png", "night/x.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert moved_files(tmp_path) == ["sea/night-night_0002.png"]
