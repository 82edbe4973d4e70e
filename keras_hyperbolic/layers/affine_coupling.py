"""Affine (RealNVP / Glow) coupling: `y1 = x1`, `y2 = x2 exp(s(x1)) + t(x1)` (or halves swapped)."""

import keras
import tensorflow as tf

from keras_hyperbolic.layers.coupling import (
    BaseCoupling,
    check_function,
    split_halves,
)
from keras_hyperbolic.validation import check_finite_float, invalid

UPDATED_HALVES = ("first", "second")


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class AffineCoupling(BaseCoupling):
    """Affine coupling block of RealNVP / Glow, rank-generic.

    Splits the channels into `[x1 | x2]`; a network of `x1` outputs `2C`
    channels `[raw | t]` and

        s = scale_bound * tanh(raw / scale_bound),
        y1 = x1,   y2 = x2 * exp(s) + t.

    The soft clamp keeps `|s| < scale_bound` (no overflowing `exp`) while
    `s ~ raw` for small values, so `zero_init=True` gives exactly the identity.
    The inverse is `x2 = (y2 - t) * exp(-s)` and
    `log|det| = sum(s)` over all non-batch axes. Only the second half changes
    (`updated_half="first"` swaps the roles: `y1 = x1 * exp(s(x2)) + t(x2)`,
    `y2 = x2`): alternate the halves, or put a channel permutation (e.g.
    `Invertible1x1Conv`) between blocks, so that every channel is updated.

    The network computes in the compute dtype (float16 under `mixed_float16`);
    `s` and `t` are cast to the stream dtype (float32) before the affine map.
    `backward` is fused: the network's evaluation on `y1 = x1` made while
    inverting is reused for the gradient. It accepts an optional `dlog_det`
    `(batch,)`, the gradient of the loss with respect to `log_det_jacobian`,
    for flows trained with the memory-efficient engine.

    Random layers (`Dropout`) inside the network cannot be re-evaluated
    identically during inversion; the engine refuses them.

    Args:
        rank: number of spatial axes, 1, 2 or 3.
        scale_bound: positive bound of `|s|` (default 2.0).
        updated_half: "second" (default) or "first": the half that the affine
            map changes; the other conditions it. Two blocks, "first" then
            "second", update both halves as memcnn's `AffineCoupling` does,
            without copying the channels into a new order in between.
        network: optional Keras layer mapping `(..., C)` to `(..., 2C)`
            (`[raw | t]`), used instead of the built-in `ResidualFunction`.
        **kwargs: the arguments of the built-in network, as in
            `ResidualFunction` (`hidden_channels`: `None`, the default, uses
            the channels of one half; `kernel_size`, `normalization`,
            `activation`, `init_scale`; `zero_init=True` makes the block the
            identity at initialisation), and base `Layer` arguments.

    Input shape:
        `(batch, *spatial, 2C)` with `rank` spatial axes.

    Output shape:
        Same as the input.

    Raises:
        ValueError: odd or unknown channel count, wrong input rank, invalid `scale_bound`.

    Example:
    >>> block = AffineCoupling(rank=2)
    >>> x = np.random.rand(2, 8, 8, 4).astype("float32")
    >>> np.allclose(block.inverse(block(x)), x, atol=1e-5)
    True

    Reference: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real
    NVP" (2017); Kingma & Dhariwal, "Glow" (2018).
    """

    def __init__(self, rank, *, scale_bound=2.0, updated_half="second", network=None, **kwargs):
        # `kwargs`: the built-in network's arguments (see `BaseCoupling`) and Layer's.
        if updated_half not in UPDATED_HALVES:
            raise invalid("updated_half", updated_half, "'first' or 'second'")
        super().__init__(rank, **kwargs)
        self.scale_bound = check_finite_float(scale_bound, "scale_bound", positive=True)
        self.updated_half = updated_half
        self._user_network = check_function(network, "network")
        self.network = self._user_network

    def build(self, input_shape):
        half_shape = self._half_shape(input_shape)
        # The network maps a half to `[raw | t]`, twice its channels.
        self.network = self._built_function(
            self.network, "network", half_shape, out_channels=2 * half_shape[-1]
        )

    def _split(self, x):
        """`(conditioning half, updated half)` of `x`."""
        first, second = split_halves(x)
        return (first, second) if self.updated_half == "second" else (second, first)

    def _join(self, kept, updated):
        """The inverse of `_split`."""
        halves = [kept, updated] if self.updated_half == "second" else [updated, kept]
        return tf.concat(halves, axis=-1)

    def _scale_shift(self, x1, training):
        """(s, t) in x1's dtype from the network's `[raw | t]`."""
        out = tf.cast(self.network(x1, training=training), x1.dtype)
        raw, shift = split_halves(out)
        bound = self.scale_bound
        return bound * tf.tanh(raw / bound), shift

    def _log_det(self, s):
        return tf.reduce_sum(tf.reshape(s, (tf.shape(s)[0], -1)), axis=-1)

    # Below, x1 / y1 is the conditioning half and x2 / y2 the updated one (`_split`).

    def call(self, x, training=None):
        x1, x2 = self._split(x)
        s, t = self._scale_shift(x1, training)
        return self._join(x1, x2 * tf.exp(s) + t)

    def _forward_and_log_det(self, x, training=None):
        x1, x2 = self._split(x)
        s, t = self._scale_shift(x1, training)
        return self._join(x1, x2 * tf.exp(s) + t), self._log_det(s)

    def _inverse(self, y, training=None):
        y1, y2 = self._split(y)
        s, t = self._scale_shift(y1, training)
        return self._join(y1, (y2 - t) * tf.exp(-s))

    def _log_det_jacobian(self, x, training=None):
        s, _ = self._scale_shift(self._split(x)[0], training)
        return self._log_det(s)

    def _backward(self, y, dy, training=None, dlog_det=None):
        # y2 = x2 e^s + t: dx2 = dy2 e^s, ds = dy2 (y2 - t) (+ dlog_det), dt = dy2,
        # dx1 = dy1 + (network's VJP at y1 = x1).
        y1, y2 = self._split(y)
        dy1, dy2 = self._split(dy)
        net_vars = list(self.network.trainable_variables)
        with tf.GradientTape() as tape:
            tape.watch(y1)
            s, t = self._scale_shift(y1, training)
        scale = tf.exp(s)
        shifted = y2 - t
        x2 = tf.stop_gradient(shifted / scale)
        ds = dy2 * shifted
        if dlog_det is not None:
            ds = ds + tf.reshape(dlog_det, [-1] + [1] * (len(y.shape) - 1))
        grads = tape.gradient(
            [s, t],
            [y1] + net_vars,
            output_gradients=[ds, dy2],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        dx = self._join(dy1 + grads[0], dy2 * scale)
        x = tf.stop_gradient(self._join(y1, x2))
        return x, dx, list(zip(net_vars, grads[1:]))

    def get_config(self):
        config = super().get_config()
        config.update(
            scale_bound=self.scale_bound,
            updated_half=self.updated_half,
            network=None
            if self._user_network is None
            else keras.saving.serialize_keras_object(self._user_network),
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("network") is not None:
            config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)
