"""tf.data input: parallel decode, cache, augmentation on training batches only, prefetch."""

from __future__ import annotations

import keras
import tensorflow as tf

from contract.spec import AugmentationSpec
from worker.training.decode import decode_image
from worker.training.scan import ImageSet

AUTOTUNE = tf.data.AUTOTUNE


def augmenter(aug: AugmentationSpec | None, seed: int | None) -> keras.Sequential | None:
    """Keras preprocessing layers equivalent to ImageDataGenerator's options."""
    if aug is None:
        return None
    layers: list[keras.layers.Layer] = []
    if aug.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if aug.rotation_range:
        layers.append(keras.layers.RandomRotation(aug.rotation_range / 360.0, fill_mode=aug.fill_mode, seed=seed))
    if aug.width_shift_range or aug.height_shift_range:
        layers.append(
            keras.layers.RandomTranslation(
                aug.height_shift_range, aug.width_shift_range, fill_mode=aug.fill_mode, seed=seed
            )
        )
    if aug.shear_range:
        layers.append(
            keras.layers.RandomShear(x_factor=aug.shear_range, y_factor=0.0, fill_mode=aug.fill_mode, seed=seed)
        )
    if aug.zoom_range:
        layers.append(keras.layers.RandomZoom((-aug.zoom_range, aug.zoom_range), fill_mode=aug.fill_mode, seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None


def _decoder(image_size: int):
    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = decode_image(tf.io.read_file(path))
        image = tf.image.resize(image, (image_size, image_size))
        # uint8 keeps the in-memory cache four times smaller than float32
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

    return decode


def make_dataset(
    images: ImageSet,
    *,
    image_size: int,
    batch_size: int,
    training: bool,
    seed: int | None,
    augmentation: keras.Sequential | None = None,
    cache: bool = True,
) -> tf.data.Dataset:
    n_classes = len(images.classes)
    ds = tf.data.Dataset.from_tensor_slices((images.paths, images.labels))
    ds = ds.map(_decoder(image_size), num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def to_model_input(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.cast(x, tf.float32)
        if training and augmentation is not None:
            x = augmentation(x, training=True)
        x = keras.applications.inception_v3.preprocess_input(x)
        return x, tf.one_hot(y, n_classes)

    return ds.map(to_model_input, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
