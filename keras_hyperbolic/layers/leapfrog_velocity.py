"""`LeapfrogVelocity`: the fixed linear map between a velocity state `[U | V]` and a leapfrog pair."""

import math

import keras
import tensorflow as tf

from keras_hyperbolic.layers.coupling import check_splittable_shape, split_halves
from keras_hyperbolic.layers.hyperbolic_block import check_step_size
from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.validation import check_choice, check_rank

DIRECTIONS = ("to_pair", "to_velocity")


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class LeapfrogVelocity(InvertibleLayer):
    """Reads a `2C`-channel state as position and velocity for a stack of leapfrog blocks.

    A stack of `HyperbolicBlock`s integrates the pair `[Y_prev | Y_cur]`. Fed
    two unrelated halves `[U | V]` (e.g. the subbands of a wavelet pooling),
    the initial velocity `(Y_cur - Y_prev) / h = (V - U) / h` is as large as
    the signal over `h`, and the force-free leapfrog over `n` steps is a Jordan
    block with singular values near `2n` and `1 / (2n)`: the stack and its
    inverse amplify perturbations several-fold at initialisation. Reading the
    state as position `U` and velocity `V` instead keeps it well conditioned:

        direction "to_pair"      [U | V]      -> [U - h V | U]               (stack input)
        direction "to_velocity"  [Y_prev | Y] -> [Y | (Y - Y_prev) / h]      (stack output)

    The two are each other's inverse; the force-free leapfrog then maps
    `[U | V]` to `[U + n h V | V]`, a shear of size `n h`. Both are fixed
    channel-wise linear maps applied identically at every position, so they
    commute with `PairPooling`. `log|det| = +-(n_half) log h`, with `n_half`
    the number of entries of one half of the state.

    Args:
        h: the leapfrog step size of the blocks (positive, finite).
        direction: "to_pair" (default) or "to_velocity".
        rank: number of spatial axes, 1, 2 or 3 (checks the input rank).
        **kwargs: base `Layer` arguments.

    Input shape:
        `(batch, *spatial, 2C)`.

    Output shape:
        Same as the input.

    Raises:
        ValueError: invalid `h` or `direction`, an odd channel count.

    Example:

    >>> start = LeapfrogVelocity(h=0.1, rank=2)
    >>> pair = start(state)              # [U | V] -> [U - 0.1 V | U]
    >>> state = start.inverse(pair)

    Reference:
        Lensink, Peters, Haber, "Fully Hyperbolic Convolutional Neural
        Networks" (2022), eq. 3.4 (the leapfrog scheme whose velocity this is).
    """

    def __init__(self, h, direction="to_pair", rank=2, **kwargs):
        super().__init__(is_constant_jacobian=True, **kwargs)
        self.h = check_step_size(h)
        self.direction = check_choice(direction, DIRECTIONS, "direction")
        self.rank = check_rank(rank)

    def build(self, input_shape):
        check_splittable_shape(self, input_shape, self.rank)

    def _to_pair(self, x):
        u, v = split_halves(x)
        return tf.concat([u - self.h * v, u], axis=-1)

    def _to_velocity(self, y):
        y_prev, y_cur = split_halves(y)
        return tf.concat([y_cur, (y_cur - y_prev) / self.h], axis=-1)

    def call(self, x, training=None):
        x = tf.convert_to_tensor(x)
        return self._to_pair(x) if self.direction == "to_pair" else self._to_velocity(x)

    def _inverse(self, y, training=None):
        return self._to_velocity(y) if self.direction == "to_pair" else self._to_pair(y)

    def _log_det_jacobian(self, x, training=None):
        half = math.prod(x.shape[1:]) // 2
        sign = 1.0 if self.direction == "to_pair" else -1.0
        return tf.fill(tf.shape(x)[:1], tf.constant(sign * half * math.log(self.h), x.dtype))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"h": self.h, "direction": self.direction, "rank": self.rank})
        return config
