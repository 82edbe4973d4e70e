"""Learnable orthogonal pooling (iUNet): per-channel orthogonal mixing of 2x..x2 blocks.

Reference: C. Etmann, R. Ke, C.-B. Schoenlieb, "iUNets: Fully invertible
U-Nets with Learnable Up- and Downsampling", Sec. 3.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.layers.pooling.base import BaseInvertiblePooling, pooling_doc
from keras_hyperbolic.layers.rank_classes import rank_classes
from keras_hyperbolic.ops import orthogonal as orthogonal_ops
from keras_hyperbolic.validation import check_choice

PARAMETRIZATIONS = ("expm", "cayley")
INITS = ("haar", "squeeze", "random")


class BaseOrthogonalPooling(BaseInvertiblePooling):
    """Learnable orthogonal pooling of any rank (see `OrthogonalPooling2D`)."""

    def __init__(self, rank, parametrization="expm", init="haar", trainable=True, **kwargs):
        super().__init__(rank, trainable=trainable, **kwargs)
        self.parametrization = check_choice(parametrization, PARAMETRIZATIONS, "parametrization")
        self.init = check_choice(init, INITS, "init")
        s = self.factor
        # M = Q(theta) @ D with a fixed signed diagonal D: rotations alone cannot
        # reach Haar (det -1 in 1D; eigenvalue -1, out of Cayley's reach).
        self.signs = orthogonal_ops.haar_signs(self.rank) if init == "haar" else np.ones(s)

    def _initial_theta(self):
        s = self.factor
        if self.init == "squeeze":
            return np.zeros((s, s))
        rotation = orthogonal_ops.haar_matrix(self.rank) * self.signs[None, :]  # = Haar @ D
        if self.parametrization == "expm":
            skew = orthogonal_ops.haar_rotation_log(self.rank)
        else:
            skew = orthogonal_ops.cayley_parameter(rotation)
        return skew / 2.0  # theta - theta^T = skew

    def _build_parameters(self, channels):
        s = self.factor
        if self.init == "random":
            initializer = keras.initializers.RandomNormal(stddev=1.0)
        else:
            theta = np.broadcast_to(self._initial_theta(), (channels, s, s))

            def initializer(shape, dtype=None):
                return tf.constant(theta, dtype=dtype)

        self.theta = self.add_weight(
            name="theta",
            shape=(channels, s, s),
            initializer=initializer,
            trainable=True,
            autocast=False,  # keep float32 under mixed precision; cast in call
        )

    def matrices(self, dtype=None):
        """The per-channel orthogonal matrices `M_c = Q(theta_c) @ D`, shape `(C, s, s)`."""
        theta = tf.convert_to_tensor(self.theta)
        if self.parametrization == "expm":
            q = orthogonal_ops.expm_orthogonal(theta)
        else:
            q = orthogonal_ops.cayley_orthogonal(theta)
        m = q * tf.constant(self.signs, dtype=q.dtype)
        return m if dtype is None else tf.cast(m, dtype)

    def _down(self, x):
        return orthogonal_ops.block_transform(x, self.matrices(x.dtype), self.rank)

    def _up(self, y):
        return orthogonal_ops.inverse_block_transform(y, self.matrices(y.dtype), self.rank)

    def _constant_kernel(self, channels):
        return orthogonal_ops.block_kernel(self.matrices(tf.float64), channels, self.rank)

    def get_config(self):
        config = super().get_config()
        config.update({"parametrization": self.parametrization, "init": self.init})
        return config


class BaseOrthogonalUnpooling(BaseOrthogonalPooling):
    """Learnable orthogonal unpooling of any rank (see `OrthogonalUnpooling2D`)."""

    upsample = True


_POOLING_DOC = """iUNet's learnable orthogonal down-sampling ({rank}D).

Cuts each channel into 2x..x2 blocks of `s = {s}` values and maps each block
with that channel's orthogonal `s x s` matrix `M_c` to `s` subbands: output
channel `t * C + c` is `sum_p M_c[t, p] x_block[p, c]` (block positions `p`
row-major, as the squeeze). `M_c = Q(theta_c) @ D`, with `Q = expm(theta - theta^T)`
(`"expm"`) or `(I - A)^-1 (I + A)`, `A = theta - theta^T` (`"cayley"`), and `D`
a fixed signed diagonal chosen by `init` (`diag(1, -1)` Kronecker powers for
`"haar"`, identity otherwise) so that the starting point is reached exactly.
The map is orthogonal for every `theta`, so the inverse is its transpose and
the log-determinant is zero.

Args:
    parametrization: `"expm"` (default) or `"cayley"`.
    init: `"haar"` (default; the layer starts equal to `WaveletPooling{rank}D("haar")`),
        `"squeeze"` (starts as `PixelShufflePooling{rank}D`) or `"random"`
        (`theta` drawn from N(0, 1)).
    trainable: whether `theta` is trained.
    **kwargs: base layer arguments.

Input shape:
    `(batch, {spatial}, C)`; spatial sizes even.

Output shape:
    `(batch, {half}, {s} * C)`.

Raises:
    ValueError: unknown `parametrization` or `init`; wrong rank, unknown channel
        count or odd spatial size of the input.

Example:

>>> pool = keras_hyperbolic.layers.OrthogonalPooling{rank}D(parametrization="cayley")
>>> y = pool(x); x_again = pool.inverse(y)

Reference: Etmann, Ke, Schoenlieb, "iUNets: Fully invertible U-Nets with
Learnable Up- and Downsampling", Sec. 3.
"""

_UNPOOLING_DOC = """iUNet's learnable orthogonal up-sampling ({rank}D).

`call` is `OrthogonalPooling{rank}D.inverse` with this layer's own `theta`
(sized by the output channel count `C`); `inverse` is the pooling.

Args:
    parametrization: `"expm"` (default) or `"cayley"`.
    init: `"haar"` (default), `"squeeze"` or `"random"`.
    trainable: whether `theta` is trained.
    **kwargs: base layer arguments.

{unpooling_shapes}

Raises:
    ValueError: as `OrthogonalPooling{rank}D`, or channels not divisible by {s}.

Example:

>>> up = keras_hyperbolic.layers.OrthogonalUnpooling{rank}D()
>>> x = up(y)

Reference: Etmann, Ke, Schoenlieb, "iUNets: Fully invertible U-Nets with
Learnable Up- and Downsampling", Sec. 3.
"""


OrthogonalPooling1D, OrthogonalPooling2D, OrthogonalPooling3D = rank_classes(
    BaseOrthogonalPooling, "OrthogonalPooling", lambda rank: pooling_doc(_POOLING_DOC, rank)
)
OrthogonalUnpooling1D, OrthogonalUnpooling2D, OrthogonalUnpooling3D = rank_classes(
    BaseOrthogonalUnpooling, "OrthogonalUnpooling", lambda rank: pooling_doc(_UNPOOLING_DOC, rank)
)
