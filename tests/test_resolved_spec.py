"""contract.resolved and contract.lr_cuts: the spec as the trainer resolves it, and the one learning-rate-cut
detector, shared by the worker and the analysis."""

import pytest

from contract.lr_cuts import cut_epochs, is_cut
from contract.resolved import INCEPTION_BLOCKS, TRAIN_EVAL_IMAGES, ResolvedSpec, train_eval_indices, train_eval_size


@pytest.mark.parametrize("n", [0, 1, 10, 255, 256, 257, 300, 511, 512, 5000])
def test_train_eval_subset_is_at_most_256_evenly_spread_images(n):
    idx = train_eval_indices(n)
    assert len(idx) == train_eval_size(n) == min(n, TRAIN_EVAL_IMAGES)
    assert idx == sorted(set(idx)) and all(0 <= i < n for i in idx)
    if n > TRAIN_EVAL_IMAGES:  # spread over the whole set, not its first images
        assert idx[-1] >= n - n // TRAIN_EVAL_IMAGES - 1


def test_the_analysis_sizes_the_subset_as_the_worker_takes_it():
    from analysis.records import JobContext
    from analysis.view import View

    view = View([], JobContext(class_counts_train={"a": 300, "b": 211}))
    assert view.sample_size("train_eval_accuracy") == len(train_eval_indices(511)) == 256


def test_batchnorm_block_order_and_defaults():
    assert ResolvedSpec({}).batchnorm == "frozen"  # ImageNet weights by default keep their statistics
    assert ResolvedSpec({"model": {"weights": None}}).batchnorm == "train"
    assert INCEPTION_BLOCKS[0] == "mixed0" and INCEPTION_BLOCKS[-1] == "mixed10" and len(INCEPTION_BLOCKS) == 11


def test_one_cut_detector():
    assert is_cut(1e-3, 1e-4) and not is_cut(1e-3, 1e-3 * (1 - 1e-8)) and not is_cut(None, 1e-4)
    assert cut_epochs([1, 2, 3, 4, 5], [1e-3, 1e-3, None, 1e-4, 1e-5]) == [4, 5]
    assert cut_epochs([1, 2], [1e-3, 2e-3]) == []
