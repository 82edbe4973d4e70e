"""`IRevNetBlock`: the i-RevNet block of Jacobsen's thesis (eq. 39), rank-generic."""

import keras
import tensorflow as tf

from keras_hyperbolic.layers.conv_by_rank import conv_class
from keras_hyperbolic.layers.coupling import check_splittable_shape, split_halves
from keras_hyperbolic.layers.invertible import InvertibleLayer, vjp
from keras_hyperbolic.layers.residual import (
    ScaledInitializer,
    check_normalization,
    make_normalization,
)
from keras_hyperbolic.ops.pixel_shuffle import (
    squeeze,
    squeezed_shape,
    unsqueeze,
    unsqueezed_shape,
)
from keras_hyperbolic.validation import (
    check_divisible_input,
    check_optional_positive_int,
    check_positive_int,
    check_rank,
    invalid,
)


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class IRevNetBlock(InvertibleLayer):
    """One i-RevNet block (thesis eq. 39) on the state `[x | x~]`, rank-generic.

        x_next  = S x~,
        x~_next = S x + F(x~),

    with the exact inverse `x~ = S^-1 x_next`, `x = S^-1 (x~_next - F(x~))`.
    `S` is the identity (`stride=1`) or the invertible down-sampling of each
    half by 2 along every spatial axis (pixel shuffle, `2**rank` times the
    channels): the two halves are squeezed separately, so `x` and `x~` never
    mix. `F` is the thesis's pre-activation bottleneck: three convolutions,
    each preceded by normalisation and ReLU, with kernel sizes 1, `kernel_size`
    and 1, the middle one with a quarter of the output channels:
    `norm-ReLU-conv1x1(C -> O/4)`, `norm-ReLU-conv3x3(O/4 -> O/4, stride)`,
    `norm-ReLU-conv1x1(O/4 -> O)`, `O` the output half's channels. The stride
    of a down-sampling block sits in the 3x3 convolution (a strided 1x1 would
    ignore three quarters of `x~`); the reference PyTorch code uses three 3x3
    convolutions with the stride in the first. The last convolution starts at
    0.1 times its He-normal initialisation, as the package's `ResidualFunction`.

    The Jacobian is a block permutation times a unit-triangular matrix:
    `|det| = 1`, `log_det_jacobian` is zero.

    Args:
        rank: number of spatial axes, 1, 2 or 3.
        stride: 1 (keep the resolution) or 2 (down-sample each half).
        hidden_channels: channels of the bottleneck; `None` (default) uses
            a quarter of the output half's channels (at least 1).
        kernel_size: kernel size of the middle convolution.
        normalization: "batch" (default, the thesis), "layer", "instance" or
            "none" (then the convolutions have biases).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, *spatial, 2C)`: `[x | x~]`.

    Output shape:
        `(batch, *spatial, 2C)` for `stride=1`;
        `(batch, *spatial / 2, 2C * 2**rank)` for `stride=2`.

    Raises:
        ValueError: an invalid argument, an odd channel count or (stride 2) an
            odd spatial size.

    Example:
    >>> block = IRevNetBlock(rank=2, stride=2)
    >>> x = np.random.rand(2, 8, 8, 4).astype("float32")
    >>> block(x).shape
    TensorShape([2, 4, 4, 16])

    Reference: Jacobsen, Smeulders, Oyallon, "i-RevNet: Deep Invertible
    Networks" (ICLR 2018); Jacobsen's thesis, section 6.3, eq. (39).
    """

    def __init__(self, rank, stride=1, hidden_channels=None, kernel_size=3,
                 normalization="batch", **kwargs):
        super().__init__(is_volume_preserving=True, **kwargs)
        self.rank = check_rank(rank)
        if isinstance(stride, bool) or stride not in (1, 2):
            raise invalid("stride", stride, "1 or 2")
        self.stride = int(stride)
        self.hidden_channels = check_optional_positive_int(hidden_channels, "hidden_channels")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.normalization = check_normalization(normalization)

    def build(self, input_shape):
        input_shape = check_splittable_shape(self, input_shape, self.rank)
        if self.stride == 2:
            check_divisible_input(input_shape, self.rank, 2, 1)
        channels = input_shape[-1] // 2
        out = channels * (2**self.rank if self.stride == 2 else 1)
        hidden = self.hidden_channels or max(1, out // 4)
        conv = conv_class(self.rank)
        use_bias = self.normalization == "none"  # otherwise the next norm's beta
        specs = [(hidden, 1, 1, "he_normal"), (hidden, self.kernel_size, self.stride, "he_normal"),
                 (out, 1, 1, ScaledInitializer("he_normal", 0.1))]
        self.norms, self.convs = [], []
        shape = input_shape[:-1] + (channels,)
        for i, (filters, size, stride, init) in enumerate(specs, start=1):
            norm = make_normalization(self.normalization, self.dtype_policy, f"norm{i}")
            layer = conv(filters, size, strides=stride, padding="same", use_bias=use_bias,
                         kernel_initializer=init, dtype=self.dtype_policy, name=f"conv{i}")
            if norm is not None:
                norm.build(shape)
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
            self.norms.append(norm)
            self.convs.append(layer)

    def bottleneck(self, x, training=None):
        """`F(x~)` in the compute dtype, returned in `x`'s dtype."""
        z = x
        for norm, conv in zip(self.norms, self.convs):
            if norm is not None:
                z = norm(z, training=training)
            z = conv(tf.nn.relu(z))
        return tf.cast(z, x.dtype)

    def _down(self, x):
        return squeeze(x, self.rank) if self.stride == 2 else x

    def _up(self, y):
        return unsqueeze(y, self.rank) if self.stride == 2 else y

    def call(self, x, training=None):
        x1, x2 = split_halves(x)
        f_out = self.bottleneck(x2, training=training)
        return tf.concat([self._down(x2), self._down(x1) + f_out], axis=-1)

    def _inverse(self, y, training=None):
        a, b = split_halves(y)
        x2 = self._up(a)
        x1 = self._up(b - self.bottleneck(x2, training=training))
        return tf.concat([x1, x2], axis=-1)

    def _backward(self, y, dy, training=None, dlog_det=None):
        # Fused: the inversion's F(x~) is differentiated, not recomputed.
        # y = (S x2, S x1 + F(x2)): dx1 = S^T db, dx2 = S^T da + F'(x2)^T db (S orthogonal).
        a, b = split_halves(y)
        da, db = split_halves(dy)
        x2 = self._up(a)
        f_out, dx2_from_f, pairs = vjp(
            lambda x2: self.bottleneck(x2, training=training), x2, self.trainable_variables, db
        )
        x1 = tf.stop_gradient(self._up(b - f_out))
        dx = tf.concat([self._up(db), self._up(da) + dx2_from_f], axis=-1)
        x = tf.concat([x1, tf.stop_gradient(x2)], axis=-1)
        return x, dx, pairs

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        return shape if self.stride == 1 else squeezed_shape(shape, self.rank)

    def compute_input_shape(self, output_shape):
        shape = tuple(output_shape)
        return shape if self.stride == 1 else unsqueezed_shape(shape, self.rank)

    def get_config(self):
        config = super().get_config()
        config.update(rank=self.rank, stride=self.stride, hidden_channels=self.hidden_channels,
                      kernel_size=self.kernel_size, normalization=self.normalization)
        return config
