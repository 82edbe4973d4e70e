"""`export_tflite`: a `.tflite` flatbuffer that runs in LiteRT with builtin ops only.

LiteRT's builtins cover convolutions (2D, 3D, transposed), but not
`tf.linalg.expm`, matrix inverses, complex FFTs or `tf.roll`, and the pip
runtimes have no Flex delegate (DESIGN.md). So, while tracing for TFLite, every
invertible pooling of the model has its learned kernel computed ONCE (the
orthogonal matrices `expm(theta - theta^T)` or their Cayley form, the learnable
wavelet's filters from its angles, Haar, the pixel shuffle's identity) and is
run as a convolution with that constant kernel:

- 2-tap transforms (Haar, orthogonal, pixel shuffle): a stride-2 convolution
  with kernel `(2,)*rank + (C, s*C)`, `kernel[p, c, t*C + c] = M_c[t, p]`; the
  inverse is the transposed convolution with the same kernel;
- 4-tap periodic wavelets (db2, learnable): circular padding by one sample
  (slices and a concat) and a stride-2 convolution with kernel `(4,)*rank`; the
  inverse is the transposed convolution with the wrapped overhang added back.

The model's own layers are restored afterwards. Conversion uses
`TFLITE_BUILTINS` only, and the op list of the result is checked for Flex and
custom ops before the file is written.
"""

import contextlib
import os
import shutil
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.export._inference import (
    built_input_shape,
    check_model,
    model_family,
)
from keras_hyperbolic.export.saved_model import write_signatures
from keras_hyperbolic.export.signatures import endpoints as model_endpoints

QUANTIZATIONS = (None, "dynamic", "float16")
DEFAULT_SIGNATURES = {
    "segmentation": ("serving_default",),
    "classification": ("serving_default",),
    "generic": ("serving_default",),
    "vae": ("decode", "encode", "reconstruct"),
    "flow": ("log_prob",),
}


# === Kernels computed once, in numpy ===


def block_kernel(matrices, rank):
    """`(2,)*rank + (C, s*C)` kernel of per-channel `(C, s, s)` block matrices."""
    matrices = np.asarray(matrices, dtype=np.float64)
    channels, s, _ = matrices.shape
    kernel = np.zeros((s, channels, s, channels))
    for c in range(channels):
        kernel[:, c, :, c] = matrices[c].T  # [p, t] = M_c[t, p]
    return kernel.reshape((2,) * rank + (channels, s * channels))


def wavelet_kernel(lo, hi, channels, rank):
    """`(4,)*rank + (C, s*C)` kernel of a periodic 4-tap DWT (subband bits: axis 0 first).

    Tap `k` along an axis reads `x[2n - 1 + k]`, so the input is wrapped by one
    sample on each side before the stride-2 convolution.
    """
    filters = np.stack([np.asarray(lo, np.float64), np.asarray(hi, np.float64)])
    s = 2**rank
    bands = np.zeros((s,) + (4,) * rank)
    for t in range(s):
        bits = [(t >> (rank - 1 - axis)) & 1 for axis in range(rank)]
        band = np.ones(())
        for bit in bits:
            band = np.multiply.outer(band, filters[bit])
        bands[t] = band
    kernel = np.zeros((4,) * rank + (channels, s, channels))
    for c in range(channels):
        kernel[..., c, :, c] = np.moveaxis(bands, 0, -1)
    return kernel.reshape((4,) * rank + (channels, s * channels))


# === Convolutions with explicit per-rank ops (builtins in TFLite) ===


def _conv(x, kernel, rank):
    if rank == 1:
        return tf.nn.conv1d(x, kernel, stride=2, padding="VALID")
    if rank == 2:
        return tf.nn.conv2d(x, kernel, strides=2, padding="VALID")
    return tf.nn.conv3d(x, kernel, strides=[1, 2, 2, 2, 1], padding="VALID")


def _conv_transpose(y, kernel, output_shape, rank):
    if rank == 1:
        return tf.nn.conv1d_transpose(y, kernel, output_shape, 2, padding="VALID")
    if rank == 2:
        return tf.nn.conv2d_transpose(y, kernel, output_shape, 2, padding="VALID")
    return tf.nn.conv3d_transpose(y, kernel, output_shape, [1, 2, 2, 2, 1], padding="VALID")


def _dims(x):
    dynamic = tf.shape(x)
    return [s if s is not None else dynamic[i] for i, s in enumerate(x.shape)]


def _wrap_pad(x, rank):
    for axis in range(1, rank + 1):
        n = x.shape[axis]
        lead = (slice(None),) * axis
        x = tf.concat([x[lead + (slice(n - 1, n),)], x, x[lead + (slice(0, 1),)]], axis=axis)
    return x


def _fold_overhang(x, rank):
    """Adds the one-sample overhang of each axis back to the opposite end (periodic)."""
    for axis in range(1, rank + 1):
        n = x.shape[axis] - 2  # padded length n + 2
        lead = (slice(None),) * axis
        first = x[lead + (slice(0, 1),)]  # position -1 -> n - 1
        last = x[lead + (slice(n + 1, n + 2),)]  # position n -> 0
        middle = x[lead + (slice(1, n + 1),)]
        if n == 1:
            x = middle + first + last
            continue
        x = tf.concat(
            [
                middle[lead + (slice(0, 1),)] + last,
                middle[lead + (slice(1, n - 1),)],
                middle[lead + (slice(n - 1, n),)] + first,
            ],
            axis=axis,
        )
    return x


class FoldedPooling:
    """The down/up maps of one pooling layer with a constant kernel."""

    def __init__(self, layer):
        self.rank = layer.rank
        self.channels = int(layer.fine_channels)
        self.taps, kernel = self._kernel(layer)
        self.kernel = kernel.astype(np.float32)

    def _kernel(self, layer):
        from keras_hyperbolic.layers.pooling.orthogonal_pooling import BaseOrthogonalPooling
        from keras_hyperbolic.layers.pooling.pixel_shuffle_pooling import (
            BasePixelShufflePooling,
        )
        from keras_hyperbolic.layers.pooling.wavelet_pooling import BaseWaveletPooling
        from keras_hyperbolic.ops import orthogonal as orthogonal_ops

        rank, channels, s = self.rank, self.channels, 2**self.rank
        if isinstance(layer, BaseOrthogonalPooling):
            matrices = keras.ops.convert_to_numpy(layer.matrices(tf.float64))
            return 2, block_kernel(matrices, rank)
        if isinstance(layer, BasePixelShufflePooling):
            return 2, block_kernel(np.broadcast_to(np.eye(s), (channels, s, s)), rank)
        if isinstance(layer, BaseWaveletPooling):
            if layer.wavelet == "haar":
                haar = orthogonal_ops.haar_matrix(rank)
                return 2, block_kernel(np.broadcast_to(haar, (channels, s, s)), rank)
            lo, hi = (keras.ops.convert_to_numpy(f) for f in layer.filters(tf.float64))
            return 4, wavelet_kernel(lo, hi, channels, rank)
        raise TypeError(
            f"Cannot fold the pooling layer {layer.name!r} of type {type(layer).__name__} "
            "into a constant convolution for TFLite."
        )

    def down(self, x):
        kernel = tf.constant(self.kernel, dtype=x.dtype)
        if self.taps == 4:
            x = _wrap_pad(x, self.rank)
        return _conv(x, kernel, self.rank)

    def up(self, y):
        kernel = tf.constant(self.kernel, dtype=y.dtype)
        dims = _dims(y)
        extra = 2 if self.taps == 4 else 0
        shape = tf.stack([dims[0]] + [2 * n + extra for n in dims[1:-1]] + [self.channels])
        x = _conv_transpose(y, kernel, shape, self.rank)
        if self.taps == 4:
            x = _fold_overhang(x, self.rank)
        return x


def pooling_layers(model):
    from keras_hyperbolic.layers.pooling.base import BaseInvertiblePooling

    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, BaseInvertiblePooling)
    ]


@contextlib.contextmanager
def folded_poolings(model):
    """Runs every invertible pooling of `model` with constant kernels; restores them after."""
    patched = []
    try:
        for layer in pooling_layers(model):
            if not layer.built or layer.fine_channels is None:
                continue
            folded = FoldedPooling(layer)
            # Instance attributes shadow the class's methods; object.__setattr__
            # keeps Keras's attribute tracking out of it.
            object.__setattr__(layer, "_down", folded.down)
            object.__setattr__(layer, "_up", folded.up)
            patched.append(layer)
        yield model
    finally:
        for layer in patched:
            object.__delattr__(layer, "_down")
            object.__delattr__(layer, "_up")


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
            `keras_hyperbolic.export.signatures`); default: segmentation
            `serving_default`; VAE `decode`, `encode`, `reconstruct`.
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
    names = tuple(signatures) if signatures is not None else DEFAULT_SIGNATURES[family]
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise ValueError(
            f"Invalid value for argument `signatures`. Expected names among "
            f"{sorted(available)} for a {family} model. Received: signatures={signatures!r}"
        )

    staging = tempfile.mkdtemp(prefix="keras_hyperbolic_tflite_")
    try:
        with folded_poolings(model):
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
