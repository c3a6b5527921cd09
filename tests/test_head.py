"""The head is described once (`worker.training.model.HEAD`): the full model and the feature-cached head that
head-only jobs train must hold the same layers, in the same order, with the same configuration."""

from __future__ import annotations

import pytest

from contract.spec import JobSpec
from tests.specs import small_spec


def describe(layers) -> list[tuple[str, str, dict]]:
    return [(layer.name, type(layer).__name__, layer.get_config()) for layer in layers]


@pytest.mark.parametrize("regularization", [{}, {"dropout": 0.3, "dense_dropout": 0.1, "l2": 1e-4}])
def test_feature_cached_head_is_the_full_models_head(regularization):
    import keras

    from worker.training.features import split_model
    from worker.training.model import HEAD_LAYERS, POOL_LAYER, build_model, head_weights

    spec = JobSpec.model_validate(small_spec(regularization=regularization))
    model = build_model(spec, n_classes=3)
    names = [layer.name for layer in model.layers]
    after_pool = model.layers[names.index(POOL_LAYER) + 1 :]
    extractor, head = split_model(model)
    head_layers = [layer for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)]

    assert describe(head_layers) == describe(after_pool)
    assert [layer.name for layer in after_pool] == list(HEAD_LAYERS)  # nothing built outside the description
    assert extractor.output.shape[-1] == head.input.shape[-1]
    assert head_weights(model) == head.trainable_weights  # what update_ratio_head measures is what trains
    dense = model.get_layer("dense").get_config()
    assert dense["units"] == spec.model.dense_units
    assert (dense["kernel_regularizer"] is not None) == bool(spec.regularization.l2)
