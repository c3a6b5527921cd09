"""What the model options really do to the Keras model: which base layers train, which BatchNorm layers stay in
inference mode, and the L2 penalty on the base."""

from __future__ import annotations

import numpy as np
import pytest

from contract.spec import JobSpec
from tests.specs import small_spec


def job(**model) -> JobSpec:
    return JobSpec.model_validate(small_spec(model={"weights": None, "dense_units": 8, **model}))


@pytest.fixture(scope="module")
def base():
    from worker.training.model import build_base

    return build_base(job(), None)


def trainable_convs(base, trainable) -> list[str]:
    import keras

    from worker.training.model import set_trainable

    set_trainable(base, trainable)
    return [layer.name for layer in base.layers if isinstance(layer, keras.layers.Conv2D) and layer.trainable]


def test_mixed_k_trains_block_k_and_above(base):
    names = [layer.name for layer in base.layers]
    top = trainable_convs(base, "mixed10")
    assert len(top) == 9  # mixed10's own convolutions: 1 + 1+2 + 1+1+2 + 1
    assert [layer.trainable for layer in base.layers].index(True) == names.index("mixed9") + 1
    assert len(trainable_convs(base, "mixed9")) == 18 > len(top)
    # mixed0 starts right after the stem: the stem's five convolutions stay frozen, every other one trains
    assert len(trainable_convs(base, "mixed0")) == len(trainable_convs(base, "all")) - 5
    assert trainable_convs(base, "head") == []


def test_mixed_k_blocks_are_exactly_the_layers_between_concatenations(base):
    """The layer order the block boundaries rely on: block K's layers all lie after mixed{K-1} and up to mixedK."""
    names = [layer.name for layer in base.layers]

    def ancestors(layer, seen):
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                parent = tensor._keras_history.operation
                if parent.name not in seen:
                    seen.add(parent.name)
                    ancestors(parent, seen)
        return seen

    for k in range(1, 11):
        block = ancestors(base.get_layer(f"mixed{k}"), set()) - ancestors(base.get_layer(f"mixed{k - 1}"), set())
        block -= {f"mixed{k - 1}"}
        assert set(names[names.index(f"mixed{k - 1}") + 1 : names.index(f"mixed{k}")]) == block - {f"mixed{k}"}


@pytest.mark.parametrize(
    ("model", "frozen"),
    [
        ({"trainable": "all"}, False),  # random init, "auto": BatchNorm learns its statistics
        ({"trainable": "all", "batchnorm": "frozen"}, True),
        ({"trainable": "mixed8", "weights": "base.weights.h5"}, True),  # pre-trained, "auto"
    ],
)
def test_batchnorm_trainable_follows_the_mode(model, frozen, tmp_path):
    import keras

    from worker.training.model import build_model

    weights = None
    if model.get("weights"):
        weights = tmp_path / "base.weights.h5"
        keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3)).save_weights(weights)
    base = build_model(job(**model), 3, weights).get_layer("inception_v3")
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(norms) == 94 and convs[-1].trainable
    assert not any(layer.trainable for layer in norms) if frozen else norms[-1].trainable
    # a frozen BatchNorm keeps its statistics even when called in training mode
    before = keras.ops.convert_to_numpy(norms[-1].moving_mean)
    base(np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3)).astype("float32"), training=True)
    moved = not np.array_equal(before, keras.ops.convert_to_numpy(norms[-1].moving_mean))
    assert moved is not frozen


def test_l2_base_adds_the_penalty_of_every_trainable_base_kernel():
    import keras

    from worker.training.model import build_model

    def model(l2_base: bool):
        keras.utils.set_random_seed(1)  # the same weights both times
        spec = small_spec(
            model={"weights": None, "trainable": "mixed9", "dense_units": 8},
            regularization={"l2": 1e-3, "l2_base": l2_base},
        )
        m = build_model(JobSpec.model_validate(spec), 3)
        m.compile(loss="categorical_crossentropy")
        return m

    plain, regularized = model(False), model(True)
    base = regularized.get_layer("inception_v3")
    convs = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D) and layer.trainable]
    kernels = [layer.kernel for layer in convs]
    assert len(plain.losses) == 2 and len(regularized.losses) == 2 + len(kernels) == 2 + 18
    x = np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[[0, 1]]
    losses = [float(m.compute_loss(x, y, m(x, training=False))) for m in (plain, regularized)]
    penalty = 1e-3 * sum(float(np.sum(keras.ops.convert_to_numpy(k) ** 2)) for k in kernels)
    assert penalty > 0 and losses[1] - losses[0] == pytest.approx(penalty, rel=1e-4)
    # a saved model keeps the regularizer in its config
    assert all(layer.get_config()["kernel_regularizer"] is not None for layer in convs)
