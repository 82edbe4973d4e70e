"""Additive (RevNet / NICE) coupling: `y1 = x1 + F(x2)`, `y2 = x2 + G(y1)`."""

import keras
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.layers.residual import (
    ResidualFunction,
    check_init_scale,
    check_normalization,
)
from keras_hyperbolic.validation import (
    check_activation,
    check_optional_positive_int,
    check_positive_int,
    check_rank,
)


def check_splittable_shape(layer, input_shape, rank):
    """Checks `(batch, *spatial, channels)` with an even, known channel count."""
    input_shape = tuple(input_shape)
    name = type(layer).__name__
    if len(input_shape) != rank + 2:
        raise ValueError(
            f"Invalid shape for argument `inputs` of {name}: expected rank {rank + 2} "
            f"(batch, {rank} spatial axes, channels) for rank={rank}. "
            f"Received: inputs.shape={input_shape}"
        )
    channels = input_shape[-1]
    if channels is None or channels % 2 != 0:
        raise ValueError(
            f"Invalid shape for argument `inputs` of {name}: the channel axis must be "
            f"known and even, since it is split into two halves. "
            f"Received: inputs.shape={input_shape}"
        )
    return input_shape


def serialize_activation(activation):
    if isinstance(activation, str) or activation is None:
        return activation
    return keras.activations.serialize(keras.activations.get(activation))


def residual_arguments_config(layer):
    """The config entries of the built-in residual function that a coupling block keeps."""
    return {
        "rank": layer.rank,
        "hidden_channels": layer.hidden_channels,
        "kernel_size": layer.kernel_size,
        "normalization": layer.normalization,
        "activation": serialize_activation(layer.activation),
        "zero_init": layer.zero_init,
        "init_scale": layer.init_scale,
    }


def split_halves(x):
    half = x.shape[-1] // 2
    return x[..., :half], x[..., half:]


def check_function_output(layer, function, which, half_shape):
    """Raises if the user function `which` does not map a half to a half."""
    try:
        out_shape = tuple(function.compute_output_shape(half_shape))
    except NotImplementedError:
        return  # unknown until called; a shape error will surface then
    if len(out_shape) != len(half_shape) or tuple(out_shape[1:]) != tuple(half_shape[1:]):
        raise ValueError(
            f"Invalid value for argument `{which}` of {type(layer).__name__}: it must map "
            f"a half of shape {half_shape} to the same shape. Received: {which} with "
            f"output shape {out_shape}"
        )


def check_function(value, name):
    if value is not None and not isinstance(value, keras.layers.Layer):
        raise TypeError(
            f"Invalid value for argument `{name}`: expected a Keras layer or None. "
            f"Received: {name}={value!r}"
        )
    return value


def assemble_gradients(variables, pairs):
    """Variable gradients aligned with `variables` from `(sub_variables, grads)` pairs.

    A variable missing from every pair gets a zero gradient; one shared by
    several sub-functions gets the sum.
    """
    by_id = {}
    for sub_variables, grads in pairs:
        for v, g in zip(sub_variables, grads):
            by_id[id(v)] = g if id(v) not in by_id else by_id[id(v)] + g
    return [by_id[id(v)] if id(v) in by_id else tf.zeros_like(v) for v in variables]


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class AdditiveCoupling(InvertibleLayer):
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
        hidden_channels: hidden channels of the built-in functions; `None`
            (default) uses the channels of one half.
        kernel_size: kernel size of the built-in functions.
        normalization: "batch", "layer", "instance" or "none" (built-in functions).
        activation: Keras activation name or callable (built-in functions).
        init_scale: factor on the built-in functions' last initial kernel
            (default 0.1, see `ResidualFunction`).
        zero_init: start the built-in functions at zero (their last
            convolution is zero), so the block is the identity at initialisation.
        f: optional Keras layer used as `F` (serialised with the block).
        g: optional Keras layer used as `G`.
        use_g: if False there is no `G` (`y2 = x2`).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

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

    is_constant_jacobian = True
    is_volume_preserving = True

    def __init__(
        self,
        rank,
        hidden_channels=None,
        kernel_size=3,
        normalization="batch",
        activation="relu",
        zero_init=False,
        init_scale=0.1,
        f=None,
        g=None,
        use_g=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rank = check_rank(rank)
        self.hidden_channels = check_optional_positive_int(hidden_channels, "hidden_channels")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.normalization = check_normalization(normalization)
        check_activation(activation)
        self.activation = activation
        self.zero_init = bool(zero_init)
        self.init_scale = check_init_scale(init_scale)
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

    def _builtin(self, name):
        return ResidualFunction(
            rank=self.rank,
            hidden_channels=self.hidden_channels,
            kernel_size=self.kernel_size,
            normalization=self.normalization,
            activation=self.activation,
            zero_init=self.zero_init,
            init_scale=self.init_scale,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        input_shape = check_splittable_shape(self, input_shape, self.rank)
        half_shape = input_shape[:-1] + (input_shape[-1] // 2,)
        if self.f is None:
            self.f = self._builtin("f")
        else:
            check_function_output(self, self.f, "f", half_shape)
        if not self.f.built:
            self.f.build(half_shape)
        if self.use_g:
            if self.g is None:
                self.g = self._builtin("g")
            else:
                check_function_output(self, self.g, "g", half_shape)
            if not self.g.built:
                self.g.build(half_shape)

    def _apply(self, function, x, training):
        # F/G compute in the compute dtype; the stream stays in x's dtype.
        return tf.cast(function(x, training=training), x.dtype)

    def call(self, x, training=None):
        x1, x2 = split_halves(x)
        y1 = x1 + self._apply(self.f, x2, training)
        y2 = x2 + self._apply(self.g, y1, training) if self.use_g else x2
        return tf.concat([y1, y2], axis=-1)

    def inverse(self, y, training=None):
        self.build_for_inverse(y.shape)
        y = tf.convert_to_tensor(y)
        y1, y2 = split_halves(y)
        x2 = y2 - self._apply(self.g, y1, training) if self.use_g else y2
        x1 = y1 - self._apply(self.f, x2, training)
        return tf.concat([x1, x2], axis=-1)

    def backward(self, y, dy, training=None, dlog_det=None):
        # The log-determinant is identically zero: `dlog_det` changes nothing.
        # Fused: the inversion's F(x2) and G(y1) are recorded and differentiated,
        # instead of inverting and then recomputing the forward pass.
        y = tf.convert_to_tensor(y)
        dy = tf.cast(dy, y.dtype)
        y1, y2 = split_halves(y)
        dy1, dy2 = split_halves(dy)
        unconnected = tf.UnconnectedGradients.ZERO
        pairs = []
        if self.use_g:
            g_vars = list(self.g.trainable_variables)
            with tf.GradientTape() as tape_g:
                tape_g.watch(y1)
                g_out = self._apply(self.g, y1, training)
            x2 = tf.stop_gradient(y2 - g_out)
            grads = tape_g.gradient(
                g_out, [y1] + g_vars, output_gradients=dy2, unconnected_gradients=unconnected
            )
            dy1 = dy1 + grads[0]
            pairs.append((g_vars, grads[1:]))
        else:
            x2 = y2
        f_vars = list(self.f.trainable_variables)
        with tf.GradientTape() as tape_f:
            tape_f.watch(x2)
            f_out = self._apply(self.f, x2, training)
        x1 = tf.stop_gradient(y1 - f_out)
        grads = tape_f.gradient(
            f_out, [x2] + f_vars, output_gradients=dy1, unconnected_gradients=unconnected
        )
        dx = tf.concat([dy1, dy2 + grads[0]], axis=-1)
        pairs.append((f_vars, grads[1:]))
        x = tf.stop_gradient(tf.concat([x1, x2], axis=-1))
        return x, dx, assemble_gradients(list(self.trainable_variables), pairs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(residual_arguments_config(self))
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
