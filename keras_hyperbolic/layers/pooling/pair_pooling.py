"""Pooling of a hyperbolic pair state `[Y_prev | Y_cur]` with one shared operator."""

import keras
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.layers.pooling.base import BaseInvertiblePooling


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class PairPooling(InvertibleLayer):
    """Applies one invertible pooling (or unpooling) to both halves of a pair state.

    A leapfrog (hyperbolic) block carries `[Y_prev | Y_cur]` as one tensor with
    `2C` channels. Changing resolution must act on both states with the *same*
    operator, so that the pair stays consistent (docs/design.md, "Conventions"); this wrapper
    splits the channels in half, applies `layer` (same weights) to each half
    and concatenates `[layer(Y_prev) | layer(Y_cur)]`. Its inverse does the same
    with `layer.inverse`. Pass an unpooling layer to up-sample a pair.

    Args:
        layer: a pooling or unpooling layer of this package (e.g.
            `WaveletPooling2D("learnable")`), or its serialised config.
        **kwargs: base layer arguments.

    Input shape:
        `(batch, *spatial, 2 * C)`, where `(batch, *spatial, C)` is a valid input of `layer`.

    Output shape:
        `(batch, *spatial', 2 * C')` for `layer`'s output `(batch, *spatial', C')`.

    Raises:
        TypeError: `layer` is not an invertible pooling layer.
        ValueError: an odd channel count, or a shape `layer` rejects.

    Example:

    >>> pair_pool = PairPooling(WaveletPooling2D("haar"))
    >>> y = pair_pool(state)  # state: (B, H, W, 2C) -> (B, H/2, W/2, 8C)

    Reference: Lensink, Peters, Haber, "Fully Hyperbolic Convolutional Neural
    Networks", Sec. 3.2 (coarsening the network state).
    """

    def __init__(self, layer, **kwargs):
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if not isinstance(layer, BaseInvertiblePooling):
            raise TypeError(
                "Invalid value for argument `layer`. Expected an invertible pooling or "
                "unpooling layer of keras_hyperbolic (e.g. WaveletPooling2D()). "
                f"Received: layer={layer!r}"
            )
        super().__init__(
            is_constant_jacobian=layer.is_constant_jacobian,
            is_volume_preserving=layer.is_volume_preserving,
            **kwargs,
        )
        self.layer = layer

    def _half(self, shape, name):
        shape = tuple(shape)
        if not shape or shape[-1] is None or shape[-1] % 2 != 0:
            raise ValueError(
                f"Invalid shape for argument `{name}`: the channel axis must be known "
                f"and even (a pair [Y_prev | Y_cur]). Received: {name}.shape={shape}"
            )
        return shape[:-1] + (shape[-1] // 2,)

    def build(self, input_shape):
        half = self._half(input_shape, "inputs")
        if not self.layer.built:
            self.layer.build(half)

    def compute_output_shape(self, input_shape):
        out = self.layer.compute_output_shape(self._half(input_shape, "input_shape"))
        return tuple(out[:-1]) + (2 * out[-1],)

    def compute_input_shape(self, output_shape):
        half = self.layer.compute_input_shape(self._half(output_shape, "output_shape"))
        return tuple(half[:-1]) + (2 * half[-1],)

    @staticmethod
    def _apply(fn, x):
        # Both halves go through `fn` as one batch: one kernel construction, one op.
        prev, cur = tf.split(x, 2, axis=-1)
        out = fn(tf.concat([prev, cur], axis=0))
        out_prev, out_cur = tf.split(out, 2, axis=0)
        return tf.concat([out_prev, out_cur], axis=-1)

    def call(self, inputs, training=None):
        self._half(inputs.shape, "inputs")
        return self._apply(self.layer, inputs)

    def _inverse(self, outputs, training=None):
        self._half(outputs.shape, "outputs")
        return self._apply(self.layer.inverse, outputs)

    pair_state = True

    def _backward_halves(self, y_halves, dy_halves, training=None):
        # One half at a time: no batch-axis concatenation of the pair.
        x_halves, dx_halves, pairs = [], [], []
        for y, dy in zip(y_halves, dy_halves):
            x, dx, half_pairs = self.layer.backward(y, dy, training=training)
            x_halves.append(x)
            dx_halves.append(dx)
            pairs.extend(half_pairs)
        return tuple(x_halves), tuple(dx_halves), pairs

    def get_config(self):
        config = super().get_config()
        config["layer"] = keras.saving.serialize_keras_object(self.layer)
        return config
