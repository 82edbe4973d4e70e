"""Glow's invertible 1x1 convolution (channel mixing) in the LU parametrisation."""

import keras
import numpy as np
import scipy.linalg
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.validation import invalid


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class Invertible1x1Conv(InvertibleLayer):
    """Invertible 1x1 convolution: the same `C x C` matrix `W` at every position.

    `y[..., :] = W x[..., :]` with `W = P L (U + diag(sign * exp(log_s)))`: `P` a
    fixed permutation, `L` unit lower triangular, `U` strictly upper
    triangular, `log_s` the log of the diagonal's magnitudes and `sign` its
    fixed signs. `log|det W| = sum(log_s)`, so the log-determinant is
    `prod(spatial sizes) * sum(log_s)` per example, with no determinant to
    compute. The inverse uses two triangular solves. `W` starts as a random
    rotation (QR of a Gaussian matrix, seeded by `seed`), so the layer starts
    volume preserving and well conditioned.

    Rank-agnostic: it acts on the last (channel) axis of `(batch, ..., C)`.
    Computed in the stream dtype (float32 under `mixed_float16`).

    Args:
        seed: seed of the random rotation (`None`: drawn from the global NumPy
            state, which `keras.utils.set_random_seed` sets).
        **kwargs: base `Layer` arguments.

    Input shape:
        `(batch, *spatial, C)`, any number of spatial axes (including none).

    Output shape:
        Same as the input.

    Example:
    >>> mix = Invertible1x1Conv(seed=0)
    >>> x = np.random.rand(2, 8, 8, 4).astype("float32")
    >>> np.allclose(mix.inverse(mix(x)), x, atol=1e-5)
    True

    Reference: Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1
    Convolutions" (2018).
    """

    def __init__(self, seed=None, **kwargs):
        # prod(spatial) * sum(log_s): independent of the input's values.
        super().__init__(is_constant_jacobian=True, **kwargs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise invalid("seed", seed, "an integer or None")
        self.seed = None if seed is None else int(seed)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"Invalid shape for argument `inputs` of {type(self).__name__}: expected "
                f"(batch, ..., channels) with known channels. Received: inputs.shape={input_shape}"
            )
        c = int(input_shape[-1])
        seed = self.seed if self.seed is not None else int(np.random.randint(2**31 - 1))
        rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((c, c)))
        p, lower, upper = scipy.linalg.lu(rotation)
        diagonal = np.diag(upper)

        def constant(value):
            return lambda shape, dtype=None: tf.constant(value, dtype=dtype)

        # Full precision (autocast=False): this map is on the reversible stream.
        self.permutation = self.add_weight(
            name="permutation", shape=(c, c), initializer=constant(p), trainable=False, autocast=False
        )
        self.sign = self.add_weight(
            name="sign", shape=(c,), initializer=constant(np.sign(diagonal)), trainable=False,
            autocast=False,
        )
        self.lower = self.add_weight(
            name="lower", shape=(c, c), initializer=constant(np.tril(lower, -1)), autocast=False
        )
        self.upper = self.add_weight(
            name="upper", shape=(c, c), initializer=constant(np.triu(upper, 1)), autocast=False
        )
        self.log_scale = self.add_weight(
            name="log_scale", shape=(c,), initializer=constant(np.log(np.abs(diagonal))),
            autocast=False,
        )
        self._lower_mask = np.tril(np.ones((c, c)), -1)
        self._upper_mask = np.triu(np.ones((c, c)), 1)

    def _factors(self, dtype):
        c = self._lower_mask.shape[0]
        eye = tf.eye(c, dtype=dtype)
        lower = tf.cast(self.lower, dtype) * tf.constant(self._lower_mask, dtype) + eye
        diagonal = tf.cast(self.sign, dtype) * tf.exp(tf.cast(self.log_scale, dtype))
        upper = tf.cast(self.upper, dtype) * tf.constant(self._upper_mask, dtype) + tf.linalg.diag(
            diagonal
        )
        return tf.cast(self.permutation, dtype), lower, upper

    def weight_matrix(self, dtype="float32"):
        """`W = P L U`, `(C_out, C_in)`."""
        p, lower, upper = self._factors(dtype)
        return p @ lower @ upper

    def call(self, x, training=None):
        w = self.weight_matrix(x.dtype)
        return tf.einsum("...i,oi->...o", x, w)

    def _inverse(self, y, training=None):
        p, lower, upper = self._factors(y.dtype)
        # W^-1 = U^-1 L^-1 P^T, from two triangular solves.
        w_inv = tf.linalg.triangular_solve(
            upper, tf.linalg.triangular_solve(lower, tf.transpose(p), lower=True), lower=False
        )
        return tf.einsum("...i,oi->...o", y, w_inv)

    def _log_det_jacobian(self, x, training=None):
        positions = tf.cast(tf.reduce_prod(tf.shape(x)[1:-1]), x.dtype)
        log_det = positions * tf.reduce_sum(tf.cast(self.log_scale, x.dtype))
        return tf.fill(tf.shape(x)[:1], log_det)

    def get_config(self):
        config = super().get_config()
        config.update(seed=self.seed)
        return config
