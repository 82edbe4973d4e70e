"""Circular-padding convolutions inverted in the Fourier domain (Finzi et al.)."""

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.layers.rank_classes import rank_classes, rank_doc
from keras_hyperbolic.ops import fourier
from keras_hyperbolic.validation import check_finite_float, check_rank, invalid


def check_odd_kernel_size(kernel_size):
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, (int, np.integer))
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise invalid("kernel_size", kernel_size, "an odd positive integer")
    return int(kernel_size)


class BaseInvertibleConv(InvertibleLayer):
    """Circular convolution `C -> C` with Fourier-domain inverse and log-determinant.

    The forward pass is an ordinary convolution of the circularly padded input
    (stride 1, `kernel_size // 2` wrapped on each side), so it exports like any
    convolution. In the Fourier basis this convolution is block diagonal: one
    `C x C` complex matrix `A(w)` per spatial frequency. The inverse solves
    `A(w) x_hat(w) = y_hat(w)` for every frequency and the log-determinant is
    `sum_w log|det A(w)|` (the same for every example). Both are computed in the
    stream dtype (float32 under `mixed_float16`) with real FFTs.

    The kernel starts at the identity (centre tap `I`) plus Gaussian noise of
    standard deviation `init_noise`, so every `A(w)` starts close to `I` and is
    well conditioned. Training can make `A(w)` singular for some frequency;
    the log-determinant of a flow objective pushes away from that.

    The inverse and log-determinant are sized by the spatial shape, which must
    therefore be static when the layer is built.

    Args:
        rank: number of spatial axes, 1, 2 or 3.
        kernel_size: odd positive integer.
        init_noise: standard deviation of the noise added to the identity kernel.
        seed: seed of that noise (`None`: drawn from the global seed state).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, *spatial, C)` with static spatial sizes.

    Output shape:
        Same as the input.

    Reference: Finzi, Izmailov, Maddox, Kirichenko & Wilson, "Invertible
    Convolutional Networks" (ICML 2019 workshop).
    """

    def __init__(self, rank, kernel_size=3, init_noise=0.01, seed=None, **kwargs):
        # sum_w log|det A(w)| depends on the kernel only.
        super().__init__(is_constant_jacobian=True, **kwargs)
        self.rank = check_rank(rank)
        self.kernel_size = check_odd_kernel_size(kernel_size)
        self.init_noise = check_finite_float(init_noise, "init_noise")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise invalid("seed", seed, "an integer or None")
        self.seed = None if seed is None else int(seed)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        name = type(self).__name__
        if len(input_shape) != self.rank + 2 or input_shape[-1] is None:
            raise ValueError(
                f"Invalid shape for argument `inputs` of {name}: expected rank "
                f"{self.rank + 2} (batch, {self.rank} spatial axes, known channels). "
                f"Received: inputs.shape={input_shape}"
            )
        if any(n is None for n in input_shape[1:-1]):
            raise ValueError(
                f"Invalid shape for argument `inputs` of {name}: the spatial sizes must "
                f"be static, since the Fourier-domain inverse and log-determinant are "
                f"sized by them. Received: inputs.shape={input_shape}"
            )
        self.spatial_shape = tuple(int(n) for n in input_shape[1:-1])
        channels = int(input_shape[-1])
        k = self.kernel_size
        seed = self.seed if self.seed is not None else int(np.random.randint(2**31 - 1))
        noise_std = self.init_noise

        def initializer(shape, dtype=None):
            identity = np.zeros(shape)
            identity[(k // 2,) * self.rank] = np.eye(channels)
            noise = np.random.default_rng(seed).standard_normal(shape) * noise_std
            return tf.constant(identity + noise, dtype=dtype)

        # Full-precision kernel even under mixed precision: this is the stream's map.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(k,) * self.rank + (channels, channels),
            initializer=initializer,
            autocast=False,
        )

    def _check_spatial(self, x, argument):
        if tuple(x.shape[1:-1]) != self.spatial_shape:
            raise ValueError(
                f"Invalid shape for argument `{argument}` of {type(self).__name__}: the "
                f"layer was built for spatial shape {self.spatial_shape}. "
                f"Received: {argument}.shape={tuple(x.shape)}"
            )

    def call(self, x, training=None):
        self._check_spatial(x, "inputs")
        return fourier.circular_conv(x, tf.cast(self.kernel, x.dtype))

    def _inverse(self, y, training=None):
        self._check_spatial(y, "y")
        return fourier.circular_conv_inverse(y, tf.cast(self.kernel, y.dtype))

    def _log_det_jacobian(self, x, training=None):
        log_det = fourier.circular_conv_log_det(tf.cast(self.kernel, x.dtype), self.spatial_shape)
        return tf.fill(tf.shape(x)[:1], log_det)

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, init_noise=self.init_noise, seed=self.seed)
        return config


_DOC = """{rank}D circular convolution with Fourier-domain inverse and log-determinant.

    See `BaseInvertibleConv` for the maths; input `(batch, {axes}, C)`.

    Args:
        kernel_size: odd positive integer.
        init_noise: standard deviation of the noise added to the identity kernel.
        seed: seed of that noise.
        **kwargs: base `Layer` arguments.

    Input shape:
        `(batch, {axes}, C)`, static {static}.

    Output shape:
        Same as the input.

    Example:
    >>> layer = InvertibleConv{rank}D(kernel_size=3)
    >>> x = np.random.rand({example}).astype("float32")
    >>> np.allclose(layer.inverse(layer(x)), x, atol=1e-5)
    True

    Reference: Finzi et al., "Invertible Convolutional Networks" (2019).
    """

_AXES = {1: "length", 2: "height, width", 3: "depth, height, width"}
_EXAMPLE_SHAPES = {1: "2, 16, 4", 2: "2, 8, 8, 4", 3: "2, 4, 4, 4, 2"}


def _doc(rank):
    static = "length" if rank == 1 else "spatial sizes"
    return rank_doc(_DOC, rank, axes=_AXES[rank], static=static, example=_EXAMPLE_SHAPES[rank])


InvertibleConv1D, InvertibleConv2D, InvertibleConv3D = rank_classes(
    BaseInvertibleConv, "InvertibleConv", _doc
)
