"""The one image decode of training: the input pipeline uses it, and the data scan checks every file with it."""

from __future__ import annotations

import tensorflow as tf


def decode_image(contents: tf.Tensor) -> tf.Tensor:
    """RGB pixels of an encoded JPEG, PNG, GIF (its first frame) or BMP; InvalidArgumentError on anything else."""
    return tf.io.decode_image(contents, channels=3, expand_animations=False)
