"""Many of Keras' own train steps in one call of one compiled function.

`train_on_batch` costs a call into TensorFlow per step: 4–9 ms on a head over pooled features, most of a probe's
hundred steps. Here one `tf.function` runs a run of steps in a loop, each the model's own `train_step` (its loss
with `model.losses`, dropout, the optimizer's update) at its own rate, and returns each step's loss as
`train_on_batch` would have: the same steps, the same losses, about 0.4 ms a step after one trace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# steps per call on a head: a few milliseconds of work between two looks at the budget
PER_CALL = 25


class Steps:
    """`Steps(model)(rates, batches)`: one train step of `model` (compiled) per batch, at that batch's rate;
    returns the steps' losses in order."""

    def __init__(self, model):
        self.model = model
        self._run = None

    def __call__(self, rates: Sequence[float], batches: Sequence[tuple[Any, Any]]) -> list[float]:
        import tensorflow as tf

        xs = [np.asarray(x, dtype="float32") for x, _ in batches]
        ys = [np.asarray(y, dtype="float32") for _, y in batches]
        # the batches laid end to end: step i trains on rows splits[i]:splits[i + 1] (a last batch may be smaller)
        splits = np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype("int32")
        if self._run is None:
            self._run = self._compile(xs[0].shape[1:], ys[0].shape[1:])
        losses = self._run(
            tf.constant(np.concatenate(xs)),
            tf.constant(np.concatenate(ys)),
            tf.constant(splits),
            tf.constant(np.asarray(rates, dtype="float32")),
        )
        return [float(v) for v in losses.numpy()]

    def _compile(self, x_shape: tuple, y_shape: tuple):
        import tensorflow as tf

        model = self.model
        # the optimizer's slots exist before tracing, as `train_on_batch` builds them before its first step
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)

        def run(x, y, splits, rates):
            def step(i, losses):
                model.optimizer.learning_rate.assign(rates[i])
                model.reset_metrics()  # as `train_on_batch` does: the loss reported is this step's own
                logs = model.train_step((x[splits[i] : splits[i + 1]], y[splits[i] : splits[i + 1]]))
                return i + 1, losses.write(i, logs["loss"])

            n = tf.shape(rates)[0]
            # one step after another: each reads the weights the one before it wrote
            _, losses = tf.while_loop(
                lambda i, _: i < n, step, (tf.constant(0), tf.TensorArray(tf.float32, size=n)), parallel_iterations=1
            )
            return losses.stack()

        spec = (
            tf.TensorSpec((None, *x_shape), tf.float32),
            tf.TensorSpec((None, *y_shape), tf.float32),
            tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((None,), tf.float32),
        )
        # autograph off: Keras' step is traced as written, the loop is an explicit `tf.while_loop`
        return tf.function(run, input_signature=spec, autograph=False)
