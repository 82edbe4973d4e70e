"""Additive (RevNet / NICE) coupling: `y1 = x1 + F(x2)`, `y2 = x2 + G(y1)`."""

import keras
import tensorflow as tf

from keras_hyperbolic.layers.coupling import (
    BaseCoupling,
    check_function,
    split_halves,
)
from keras_hyperbolic.layers.invertible import vjp


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class AdditiveCoupling(BaseCoupling):
    """Additive coupling block of RevNet / NICE, rank-generic.

    Splits the channels into halves `[x1 | x2]` and computes
    `y1 = x1 + F(x2)`, `y2 = x2 + G(y1)` (`y2 = x2` when `use_g=False`), with
    the exact inverse `x2 = y2 - G(y1)`, `x1 = y1 - F(x2)`. The Jacobian is
    triangular with a unit diagonal: `log|det| = 0`.

    `F` and `G` are the built-in `ResidualFunction` (conv -> normalisation ->
    activation -> conv) unless Keras layers mapping a half to a half-shaped
    tensor are given. They run in the layer's compute dtype (float16 under
    `mixed_float16`) and their outputs are cast back to the stream dtype
    (float32) before the addition, so inversion does not drift.

    `backward` is fused for the memory-efficient engine: the evaluations of
    `G(y1)` and `F(x2)` done while inverting are reused for the gradient, so
    rebuilding costs one inversion plus one backward pass.

    Layers with random state (`Dropout`, noise layers) inside `F`/`G` cannot be
    re-evaluated identically during inversion; the engine refuses them.

    Args:
        rank: number of spatial axes, 1, 2 or 3.
        f: optional Keras layer used as `F` (serialised with the block).
        g: optional Keras layer used as `G`.
        use_g: if False there is no `G` (`y2 = x2`).
        **kwargs: the arguments of the built-in functions, as in
            `ResidualFunction` (`hidden_channels`: `None`, the default, uses
            the channels of one half; `kernel_size`, `normalization`,
            `activation`, `init_scale`; `zero_init=True` makes the block the
            identity at initialisation), and base `Layer` arguments (`name`,
            `dtype`, ...).

    Input shape:
        `(batch, *spatial, channels)` with `rank` spatial axes and an even
        number of channels.

    Output shape:
        Same as the input.

    Raises:
        ValueError: odd or unknown channel count, wrong input rank.

    Example:
    >>> block = AdditiveCoupling(rank=2, zero_init=True)
    >>> x = np.random.rand(2, 8, 8, 4).astype("float32")
    >>> np.allclose(block.inverse(block(x)), x, atol=1e-6)
    True

    Reference: Gomez et al., "The Reversible Residual Network: Backpropagation
    Without Storing Activations" (2017); Dinh et al., "NICE" (2014).
    """

    def __init__(self, rank, *, f=None, g=None, use_g=True, **kwargs):
        # `kwargs`: the built-in functions' arguments (see `BaseCoupling`) and Layer's.
        # Volume preserving: the Jacobian is triangular with a unit diagonal.
        super().__init__(rank, is_volume_preserving=True, **kwargs)
        self.use_g = bool(use_g)
        self._user_f = check_function(f, "f")
        self._user_g = check_function(g, "g")
        if self._user_g is not None and not self.use_g:
            raise ValueError(
                "Invalid value for argument `g`: a `G` function was given but "
                "use_g=False. Received: g=<layer>, use_g=False"
            )
        # Tracked here so user layers are part of the block's weights.
        self.f = self._user_f
        self.g = self._user_g

    def build(self, input_shape):
        half_shape = self._half_shape(input_shape)
        self.f = self._built_function(self.f, "f", half_shape)
        if self.use_g:
            self.g = self._built_function(self.g, "g", half_shape)

    def _apply(self, function, x, training):
        # F/G compute in the compute dtype; the stream stays in x's dtype.
        return tf.cast(function(x, training=training), x.dtype)

    def call(self, x, training=None):
        x1, x2 = split_halves(x)
        y1 = x1 + self._apply(self.f, x2, training)
        y2 = x2 + self._apply(self.g, y1, training) if self.use_g else x2
        return tf.concat([y1, y2], axis=-1)

    def _inverse(self, y, training=None):
        y1, y2 = split_halves(y)
        x2 = y2 - self._apply(self.g, y1, training) if self.use_g else y2
        x1 = y1 - self._apply(self.f, x2, training)
        return tf.concat([x1, x2], axis=-1)

    def _vjp(self, function, x, output_gradients, training):
        def apply(x):
            return self._apply(function, x, training)

        return vjp(apply, x, function.trainable_variables, output_gradients)

    def _backward(self, y, dy, training=None, dlog_det=None):
        # Volume preserving: `dlog_det` is always None here.
        # Fused: the inversion's F(x2) and G(y1) are recorded and differentiated,
        # instead of inverting and then recomputing the forward pass.
        y1, y2 = split_halves(y)
        dy1, dy2 = split_halves(dy)
        pairs = []
        if self.use_g:
            g_out, dy1_from_g, pairs = self._vjp(self.g, y1, dy2, training)
            x2 = tf.stop_gradient(y2 - g_out)
            dy1 = dy1 + dy1_from_g
        else:
            x2 = y2
        f_out, dx2_from_f, f_pairs = self._vjp(self.f, x2, dy1, training)
        x1 = tf.stop_gradient(y1 - f_out)
        dx = tf.concat([dy1, dy2 + dx2_from_f], axis=-1)
        x = tf.stop_gradient(tf.concat([x1, x2], axis=-1))
        return x, dx, pairs + f_pairs

    def get_config(self):
        config = super().get_config()
        config.update(
            f=None if self._user_f is None else keras.saving.serialize_keras_object(self._user_f),
            g=None if self._user_g is None else keras.saving.serialize_keras_object(self._user_g),
            use_g=self.use_g,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("f", "g"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
