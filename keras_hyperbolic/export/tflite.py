"""`export_tflite`: a `.tflite` flatbuffer that runs in LiteRT with builtin ops only.

LiteRT's builtins cover convolutions (2D, 3D, transposed), but not
`tf.linalg.expm`, matrix inverses, complex FFTs or `tf.roll`, and the pip
runtimes have no Flex delegate (docs/design.md, "TensorFlow and Keras facts"). So the signatures are
traced inside `keras_hyperbolic.layers.pooling.constant_kernels()`: every
invertible pooling then runs as one stride-2 convolution (and its transpose)
with the constant kernel it returns from `constant_kernel()` (its learned
orthogonal matrices or wavelet filters evaluated once); the layers themselves
are not changed. Which signatures are converted by default is the model's
choice (each `Endpoint`'s `tflite` flag). Conversion uses `TFLITE_BUILTINS`
only, and the op list of the result is checked for Flex and custom ops before
the file is written.
"""

import os
import shutil
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from keras_hyperbolic.export._inference import check_model
from keras_hyperbolic.export.saved_model import write_signatures
from keras_hyperbolic.export.signatures import endpoints as model_endpoints
from keras_hyperbolic.export.signatures import model_family, tflite_signatures
from keras_hyperbolic.layers.pooling import constant_kernels
from keras_hyperbolic.models.serving import built_input_shape

QUANTIZATIONS = (None, "dynamic", "float16")


# === Conversion ===


def tflite_ops(model_content):
    """Sorted names of the ops in a `.tflite` flatbuffer (bytes or path)."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model_content, (str, os.PathLike)):
        interpreter = Interpreter(model_path=os.fspath(model_content))
    else:
        interpreter = Interpreter(model_content=bytes(model_content))
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def _has_int8_weights(model_content):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model_content))
    return any(detail["dtype"] == np.int8 for detail in interpreter.get_tensor_details())


def _check_builtin_only(ops, where):
    bad = [op for op in ops if op.startswith("Flex") or op.upper() in ("CUSTOM", "DELEGATE")]
    if bad:
        raise RuntimeError(
            f"The TFLite model {where} contains non-builtin ops {bad}; LiteRT without a Flex "
            "delegate cannot run it."
        )


def export_tflite(model, path, signatures=None, input_shape=None, batch_size=1, quantize=None):
    """Converts `model` to a `.tflite` file that LiteRT runs with builtin ops only.

    Learned orthogonal and wavelet kernels are folded into constant
    convolution weights (module docstring); the reversible stacks are traced
    for inference. Shapes are static (TFLite): the image input takes the
    model's built shape unless `input_shape` is given, with batch `batch_size`.

    Args:
        model: a built Keras model.
        path: the `.tflite` file to write (its directory must exist).
        signatures: names of the endpoints to include (see
            `keras_hyperbolic.export.signatures`); default: those the model
            marks `tflite=True` (segmentation and classification
            `serving_default`; VAE `decode`, `encode`, `reconstruct`; flow
            `log_prob`; the generic `serving_default`).
        input_shape: image input shape without or with the batch axis.
        batch_size: the batch size of the inputs.
        quantize: None (float32), "dynamic" (dynamic-range int8 weights) or
            "float16" (float16 weights).

    Returns:
        The path written.

    Raises:
        ValueError: unbuilt model, unknown signature or quantisation, missing
            directory. RuntimeError: conversion would need non-builtin ops.
    """
    check_model(model)
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"Invalid value for argument `quantize`. Expected one of {list(QUANTIZATIONS)}. "
            f"Received: quantize={quantize!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"Invalid value for argument `batch_size`. Expected an integer >= 1. "
            f"Received: batch_size={batch_size!r}"
        )
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(
            f"Invalid value for argument `path`: the directory {directory!r} does not exist. "
            f"Received: path={path!r}"
        )
    family = model_family(model)
    if input_shape is not None:
        built = built_input_shape(model)
        input_shape = tuple(input_shape)
        if len(input_shape) == len(built) - 1:
            input_shape = (None,) + input_shape
    available = model_endpoints(model, input_shape=input_shape, dynamic_spatial=False,
                                batch_size=int(batch_size))
    if signatures is None and not tflite_signatures(available):
        raise ValueError(
            f"Invalid value for argument `signatures`: model {model.name!r} marks none of its "
            f"signatures {sorted(available)} for TFLite (`Endpoint.tflite`); name the ones to "
            "convert. Received: signatures=None"
        )
    names = tuple(signatures) if signatures is not None else tflite_signatures(available)
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise ValueError(
            f"Invalid value for argument `signatures`. Expected names among "
            f"{sorted(available)} for a {family} model. Received: signatures={signatures!r}"
        )

    staging = tempfile.mkdtemp(prefix="keras_hyperbolic_tflite_")
    try:
        with constant_kernels():
            write_signatures(model, {name: available[name] for name in names}, staging)
        converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=list(names))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "float16":
                converter.target_spec.supported_types = [tf.float16]
        content = converter.convert()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _check_builtin_only(tflite_ops(content), f"for {model.name!r}")
    if quantize == "dynamic" and not _has_int8_weights(content):
        warnings.warn(
            f"Dynamic-range quantisation left every weight of {model.name!r} in float32: no op "
            "of this model has an int8 hybrid kernel in LiteRT (CONV_3D and CONV_3D_TRANSPOSE "
            "have none). Use quantize='float16' to halve the file instead.",
            stacklevel=2,
        )
    with open(path, "wb") as handle:
        handle.write(content)
    return path
