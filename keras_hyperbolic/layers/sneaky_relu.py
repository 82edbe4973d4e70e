"""SneakyReLU: a smooth, bijective leaky ReLU with a closed-form inverse."""

import math

import keras
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.validation import check_finite_float


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class SneakyReLU(InvertibleLayer):
    """Smooth bijective activation of Finzi et al., elementwise.

    `sigma(x) = (x + a (sqrt(1 + x**2) - 1)) / (1 + a)` with `a = (1 - s) / (1 + s)`,
    where `s = slope` is the slope as `x -> -inf` (the slope is 1 as
    `x -> +inf` and `sigma(0) = 0`). Its derivative
    `(1 + a x / sqrt(1 + x**2)) / (1 + a)` lies strictly between `s` and 1 (or
    1 and `s`), so it is a smooth bijection for every `s > 0`; `s = 1` is the
    identity. The inverse is closed form: with `c = (1 + a) y + a`,
    `x = (c - a r) / (1 - a**2)`, `r = sqrt(c**2 + 1 - a**2)`, evaluated in the
    cancellation-free form `(c**2 - a**2) / (c + a r)` when `a c > 0`.

    `log_det_jacobian` is the sum of `log sigma'(x)` over all non-batch axes.
    Computed in the stream dtype.

    Args:
        slope: positive, finite slope for `x -> -inf` (default 0.1).
        **kwargs: base `Layer` arguments.

    Input shape:
        Any, `(batch, ...)`.

    Output shape:
        Same as the input.

    Example:
    >>> act = SneakyReLU(slope=0.1)
    >>> x = np.linspace(-3, 3, 7).reshape(1, 7).astype("float32")
    >>> np.allclose(act.inverse(act(x)), x, atol=1e-6)
    True

    Reference: Finzi, Izmailov, Maddox, Kirichenko & Wilson, "Invertible
    Convolutional Networks" (ICML 2019 workshop).
    """

    def __init__(self, slope=0.1, **kwargs):
        super().__init__(**kwargs)
        self.slope = check_finite_float(slope, "slope", positive=True)
        self.alpha = (1.0 - self.slope) / (1.0 + self.slope)

    def call(self, x, training=None):
        a = self.alpha
        return (x + a * (tf.sqrt(1.0 + tf.square(x)) - 1.0)) / (1.0 + a)

    def _inverse(self, y, training=None):
        a = self.alpha
        c = (1.0 + a) * y + a
        r = tf.sqrt(tf.square(c) + (1.0 - a * a))
        # Two algebraically equal forms; each is free of cancellation on one side.
        direct = (c - a * r) / (1.0 - a * a)
        denominator = c + a * r
        same_sign = a * c > 0
        safe = tf.where(same_sign, denominator, tf.ones_like(denominator))
        rationalised = (tf.square(c) - a * a) / safe
        return tf.where(same_sign, rationalised, direct)

    def _log_det_jacobian(self, x, training=None):
        a = self.alpha
        log_derivative = tf.math.log1p(a * x / tf.sqrt(1.0 + tf.square(x))) - math.log1p(a)
        return tf.reduce_sum(tf.reshape(log_derivative, (tf.shape(x)[0], -1)), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(slope=self.slope)
        return config
