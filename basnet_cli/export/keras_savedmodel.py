"""The Keras (``.keras``) and TensorFlow SavedModel writers, and the traced serving function the
TFLite and TF.js converters start from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def serving_function(model: Any, shape: Sequence[int | None]) -> Any:
    """``model`` as a ``tf.function`` of one float32 ``image`` input of ``shape`` (inference)."""
    from basnet_cli.runtime import import_tf

    tf = import_tf()
    return tf.function(lambda image: model(image, training=False),
                       input_signature=[tf.TensorSpec(list(shape), tf.float32, name="image")])


def write_keras(model: Any, out: Path) -> None:
    """The inference model as a ``.keras`` file (float32, any batch, H/W multiples of 32)."""
    model.save(out)


def write_savedmodel(model: Any, out: Path, size: int) -> None:
    """A SavedModel for TF Serving: ``serving_default`` maps ``image`` to ``mask``."""
    from basnet_cli.runtime import import_keras, import_tf

    keras, tf = import_keras(), import_tf()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda image: {"mask": model(image, training=False)},
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")],
    )
    archive.write_out(str(out), verbose=False)
