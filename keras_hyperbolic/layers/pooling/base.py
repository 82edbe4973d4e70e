"""Shared machinery of the invertible pooling layers (rank-generic, both directions).

A pooling layer maps `(batch, *spatial, C)` to `(batch, *spatial / 2, 2**rank * C)`;
its unpooling counterpart is the same operator run the other way: its `call` is
the pooling's inverse (with the unpooling layer's own parameters) and its
`inverse` is the pooling. Subclasses implement `_build_parameters(channels)`,
`_down(x)` and `_up(y)` for `C` = the channel count at the fine resolution.

For deployment each pooling also is ONE stride-2 convolution with a constant
kernel: `constant_kernel()` (numpy, from the current weights; subclasses
implement `_constant_kernel(channels)`). Inside `with constant_kernels():` every
pooling runs that way (`ops.wavelets.periodic_conv` and its transpose), so a
graph traced there holds the kernels as constants and only builtin TFLite ops.
"""

import contextlib
import threading

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.layers.rank_classes import rank_doc
from keras_hyperbolic.ops.pixel_shuffle import squeezed_shape, unsqueezed_shape
from keras_hyperbolic.ops.wavelets import periodic_conv, periodic_conv_transpose
from keras_hyperbolic.validation import check_input_shape, check_rank

_CONSTANT_KERNELS = threading.local()

#: The shape sections of the unpooling layers' docstrings (a `rank_doc` template).
_UNPOOLING_SHAPES = """Input shape:
    `(batch, {spatial}, {s} * C)`; the channel count must be divisible by {s}.

Output shape:
    `(batch, {double}, C)`."""


def pooling_doc(template, rank, **fields):
    """`rank_doc(template, rank, **fields)`, where `{unpooling_shapes}` may stand
    for the shape sections every unpooling layer shares."""
    shapes = rank_doc(_UNPOOLING_SHAPES, rank)
    return rank_doc(template, rank, unpooling_shapes=shapes, **fields)


@contextlib.contextmanager
def constant_kernels():
    """Runs every invertible pooling as a convolution with its `constant_kernel()`.

    The kernel is evaluated from the weights when the layer is called (eagerly,
    also while a `tf.function` is traced), so a graph traced inside the context
    holds it as a constant: no `expm`, matrix solve or `tf.roll` is left, which
    is what TFLite's builtin ops need. The maps are the same up to rounding;
    nothing about the layers changes, and leaving the context restores the
    usual path (for this thread). Gradients do not reach the weights inside.

    Example:

    >>> with constant_kernels():
    ...     concrete = tf.function(model).get_concrete_function(spec)
    """
    previous = getattr(_CONSTANT_KERNELS, "active", False)
    _CONSTANT_KERNELS.active = True
    try:
        yield
    finally:
        _CONSTANT_KERNELS.active = previous


def constant_kernels_active():
    """Whether this thread is inside `constant_kernels()`."""
    return getattr(_CONSTANT_KERNELS, "active", False)


class BaseInvertiblePooling(InvertibleLayer):
    """Base of the invertible poolings; not public (use the 1D/2D/3D classes)."""

    #: False: `call` halves the resolution; True: `call` doubles it (unpooling).
    upsample = False

    def __init__(self, rank, **kwargs):
        # Orthogonal maps (a permutation, an orthogonal DWT or block transform).
        super().__init__(is_volume_preserving=True, **kwargs)
        self.rank = check_rank(rank)
        self.factor = 2**self.rank
        self.fine_channels = None

    # --- shapes -------------------------------------------------------------
    def _check_fine(self, shape, name):
        """Checks a fine-resolution shape `(B, *spatial, C)`; returns it."""
        shape = check_input_shape(shape, self.rank, name=name, require_static=False)
        if self.fine_channels is not None and shape[-1] != self.fine_channels:
            raise ValueError(
                f"Invalid shape for argument `{name}`: {type(self).__name__} was built "
                f"for {self.fine_channels} channels at the fine resolution. "
                f"Received: {name}.shape={shape}"
            )
        return shape

    def _check_coarse(self, shape, name):
        """Checks a coarse shape `(B, *spatial, s*C)`; returns it."""
        shape = check_input_shape(shape, self.rank, name=name, divisor=1, require_static=False)
        if shape[-1] % self.factor != 0:
            raise ValueError(
                f"Invalid shape for argument `{name}`: the channel count {shape[-1]} is "
                f"not divisible by 2**rank = {self.factor}. Received: {name}.shape={shape}"
            )
        if self.fine_channels is not None and shape[-1] != self.factor * self.fine_channels:
            raise ValueError(
                f"Invalid shape for argument `{name}`: {type(self).__name__} was built "
                f"for {self.factor * self.fine_channels} channels at the coarse "
                f"resolution. Received: {name}.shape={shape}"
            )
        return shape

    def _fine_shape(self, coarse):
        return unsqueezed_shape(coarse, self.rank)

    def _coarse_shape(self, fine):
        return squeezed_shape(fine, self.rank)

    def _check_input(self, shape, name="inputs"):
        return self._check_coarse(shape, name) if self.upsample else self._check_fine(shape, name)

    def _check_output(self, shape, name="outputs"):
        return self._check_fine(shape, name) if self.upsample else self._check_coarse(shape, name)

    def build(self, input_shape):
        shape = self._check_input(tuple(input_shape))
        channels = shape[-1] // self.factor if self.upsample else shape[-1]
        self._build_parameters(channels)
        self.fine_channels = channels

    def _build_parameters(self, channels):
        pass

    def compute_output_shape(self, input_shape):
        shape = self._check_input(tuple(input_shape), "input_shape")
        return self._fine_shape(shape) if self.upsample else self._coarse_shape(shape)

    def compute_input_shape(self, output_shape):
        shape = self._check_output(tuple(output_shape), "output_shape")
        return self._coarse_shape(shape) if self.upsample else self._fine_shape(shape)

    # --- maps ---------------------------------------------------------------
    def _with_runtime_check(self, x, fine):
        """Unknown spatial sizes are checked when the graph runs (odd sizes would
        otherwise be truncated silently by the strided maps)."""
        if not fine or all(n is not None for n in x.shape[1:-1]):
            return x
        check = tf.debugging.assert_equal(
            tf.math.floormod(tf.shape(x)[1:-1], 2),
            0,
            message=f"{type(self).__name__}: every spatial size of the fine-resolution "
            "tensor must be divisible by 2",
        )
        with tf.control_dependencies([check]):
            return tf.identity(x)

    def _run(self, x, down, name):
        x = tf.convert_to_tensor(x)
        if down:
            self._check_fine(tuple(x.shape), name)
            x = self._with_runtime_check(x, fine=True)
            return self._constant_map(x, down) if constant_kernels_active() else self._down(x)
        self._check_coarse(tuple(x.shape), name)
        return self._constant_map(x, down) if constant_kernels_active() else self._up(x)

    def call(self, inputs, training=None):
        return self._run(inputs, down=not self.upsample, name="inputs")

    def _inverse(self, outputs, training=None):
        return self._run(outputs, down=self.upsample, name="outputs")

    def _backward(self, y, dy, training=None, dlog_det=None):
        if self.trainable_variables:
            return super()._backward(y, dy, training=training, dlog_det=dlog_det)
        # An orthogonal map's transpose is its inverse: dx = W^T dy = W^-1 dy,
        # with no forward pass recomputed under a tape.
        return self._inverse(y, training), self._inverse(dy, training), []

    # --- constant kernels (deployment) ---------------------------------------
    def constant_kernel(self):
        """The pooling as one stride-2 convolution kernel, from the current weights.

        Returns:
            A float64 numpy array of shape `(taps,)*rank + (C, s*C)`, `C` the
            channel count at the fine resolution and `s = 2**rank`: 2 taps for
            the block transforms (Haar, orthogonal, pixel shuffle), 4 for the
            4-tap periodic wavelets. The pooling is
            `ops.wavelets.periodic_conv(x, kernel, rank)` and its inverse
            `periodic_conv_transpose(y, kernel, rank)` (for an unpooling layer,
            `call` is the transpose). See `constant_kernels()`.

        Raises:
            ValueError: the layer is not built (its channel count is unknown).
        """
        if self.fine_channels is None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} is not built, so its channel count and "
                "kernel are unknown. Build it (or call it) first."
            )
        with tf.init_scope():  # eager, also while a graph is traced
            kernel = self._constant_kernel(self.fine_channels)
            return np.asarray(keras.ops.convert_to_numpy(kernel), dtype=np.float64)

    def _constant_kernel(self, channels):
        raise NotImplementedError(
            f"{type(self).__name__} does not implement `_constant_kernel(channels)`."
        )

    def _constant_map(self, x, down):
        kernel = tf.constant(self.constant_kernel(), dtype=x.dtype)
        if down:
            return periodic_conv(x, kernel, self.rank)
        return periodic_conv_transpose(x, kernel, self.rank)

    def get_config(self):
        # `rank` is fixed by the public 1D/2D/3D class, so it is not serialised.
        return super().get_config()
