"""The leapfrog (hyperbolic) block of Lensink, Peters & Haber on the pair state."""

import math

import keras
import tensorflow as tf

from keras_hyperbolic.layers.coupling import (
    check_splittable_shape,
    serialize_activation,
    split_halves,
)
from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.layers.residual import NORMALIZATIONS, make_normalization
from keras_hyperbolic.ops.layer_norm import layer_norm
from keras_hyperbolic.validation import (
    check_activation,
    check_choice,
    check_optional_positive_int,
    check_positive_float,
    check_positive_int,
    check_rank,
    invalid,
)


# Explicit formats: eager Conv3D gradients fail when the attribute is left implicit.
_DATA_FORMAT = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


# "weight" normalises K itself; the others come from the residual functions.
BLOCK_NORMALIZATIONS = ("weight",) + NORMALIZATIONS


def check_block_normalization(normalization):
    if normalization is None:
        return "none"
    return check_choice(normalization, BLOCK_NORMALIZATIONS, "normalization")


def check_step_size(h):
    h = check_positive_float(h, "h")
    if not math.isfinite(h):
        raise invalid("h", h, "a positive, finite number")
    return h


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class HyperbolicBlock(InvertibleLayer):
    """One leapfrog step of the hyperbolic (telegraph-equation) network, rank-generic.

    The state is the pair `[Y_prev | Y_cur]` stored as one tensor with `2C`
    channels; the block maps it to `[Y_cur | Y_next]` with

        Y_next = 2 Y_cur - Y_prev + h**2 f(Y_cur),
        f(Y) = -K^T act(norm(K Y + b)),

    where `K` is a convolution from `C` to `hidden_channels` channels and `K^T`
    its transpose (a transposed convolution with the same kernel variable,
    "same" padding, stride 1). The inverse is
    `Y_prev = 2 Y_cur - Y_next + h**2 f(Y_cur)`, exact up to rounding.

    The Jacobian `[[0, I], [-I, 2I + h**2 f'(Y_cur)]]` has determinant exactly
    `+1` (swapping the two block rows costs `(-1)**n` twice), so the block is
    volume preserving and `log_det_jacobian` is zero.

    Stability (the claim holds only where `f'` keeps the paper's structure):
    with `f(Y) = -K^T act(K Y + b)` the Jacobian is `f'(Y) = -K^T D K`, `D` the
    diagonal of `act'` (non-negative for monotone activations), so `f'` is
    symmetric and negative semi-definite. Linearised, each mode of
    `A = K^T D K` evolves as `r**2 - (2 - h**2 mu) r + 1 = 0`, which is stable
    and non-dissipative (`|r| = 1`) exactly when `h**2 * mu_max <= 4`, i.e.
    `h * ||D^(1/2) K|| <= 2`. This structure holds for normalisation
    "weight" (the default) and "none", and for "batch" only in inference mode
    with non-negative gamma (a fixed per-channel scale). Normalisations that
    use the current activations' statistics ("layer", "instance",
    training-mode "batch") add a non-diagonal, non-symmetric term to `f'`
    (measured: "layer" about 10 % asymmetric, with a growing mode), so the
    bound does not apply to them; the block is still exactly invertible.
    The paper trains with `h = 0.01`; the default `0.1` keeps a freshly
    initialised block close to the identity shift while letting `f` act.
    Start a network's pair at `[Y, Y]` (zero velocity): a pair of unrelated
    halves has a velocity `Y_cur - Y_prev` of the size of `Y` and the state
    then grows linearly with depth, as the leapfrog integrates it.

    Normalisation: "weight" (default) normalises the kernel, not the
    activations: `K = diag(g) V / ||V||` per hidden channel (weight
    normalisation, `g` learned, initialised to 1), with a bias `b`. The same
    normalised `K` is used in `K` and `K^T`, so `f'` stays `-K^T D K` and the
    stability bound is explicit: with ReLU (`D <= I`) and
    `||K|| <= sqrt(n) ||g||_2` (`n = kernel_size**rank` taps; each filter's
    frequency response is at most its l1 norm), `h * sqrt(n) * ||g||_2 <= 2`
    suffices (conservative). "none" is the plain
    `K` with a bias. "layer" (each example normalised over its spatial axes
    and hidden channels, `GroupNormalization(groups=1)`), "instance" and
    "batch" (the paper mentions batch normalisation without bias) normalise
    the activations `K Y`; `K` then has no bias (the normalisation's beta
    plays that role). All but training-mode "batch" are independent of the
    batch, so the block is the same map in training and inference and a single
    example inverts exactly. "layer" and "instance" are computed by
    `ops.layer_norm`: the maps of `GroupNormalization(groups=1)` and
    `(groups=-1)` (whose `gamma` and `beta` they use) with
    a written-out gradient (autodiff through the moments broadcast their
    gradients back to full size: two more tensors at the peak, measured).

    `f` is evaluated in the compute dtype (float16 under `mixed_float16`) and
    cast back to the stream dtype before the update. `backward` is fused: the
    evaluation of `f(Y_cur)` made while inverting is reused for the gradient.

    Args:
        rank: number of spatial axes, 1, 2 or 3.
        kernel_size: kernel size of `K` (positive int).
        h: step size, positive and finite.
        hidden_channels: output channels of `K`; `None` (default) uses `C`.
        normalization: "weight" (default), "none", "layer", "batch" or
            "instance" (see above; only "weight", "none" and inference-mode
            "batch" keep `f'` symmetric negative semi-definite).
        activation: Keras activation name or callable.
        kernel_initializer: initializer of `K`.
        bias_initializer: initializer of `b` ("weight" and "none" only).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, *spatial, 2C)`: `[Y_prev | Y_cur]`.

    Output shape:
        `(batch, *spatial, 2C)`: `[Y_cur | Y_next]`.

    Raises:
        ValueError: odd or unknown channel count, wrong input rank, invalid `h`.

    Example:
    >>> block = HyperbolicBlock(rank=2, h=0.1)
    >>> pair = np.random.rand(2, 8, 8, 6).astype("float32")
    >>> np.allclose(block.inverse(block(pair)), pair, atol=1e-5)
    True

    Reference: Lensink, Peters & Haber, "Fully Hyperbolic Convolutional Neural
    Networks" (2019); Chang et al., "Reversible Architectures for Arbitrarily
    Deep Residual Neural Networks" (2018).
    """

    def __init__(
        self,
        rank,
        kernel_size=3,
        h=0.1,
        hidden_channels=None,
        normalization="weight",
        activation="relu",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        # det = +1 for every input (see above).
        super().__init__(is_volume_preserving=True, **kwargs)
        self.rank = check_rank(rank)
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.h = check_step_size(h)
        self.hidden_channels = check_optional_positive_int(hidden_channels, "hidden_channels")
        self.normalization = check_block_normalization(normalization)
        self._activation_fn = check_activation(activation)
        self.activation = activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        input_shape = check_splittable_shape(self, input_shape, self.rank)
        channels = input_shape[-1] // 2
        hidden = self.hidden_channels or channels
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size,) * self.rank + (channels, hidden),
            initializer=self.kernel_initializer,
        )
        self.bias = None
        if self.normalization in ("weight", "none"):
            self.bias = self.add_weight(
                name="bias", shape=(hidden,), initializer=self.bias_initializer
            )
        self.kernel_scale = None
        if self.normalization == "weight":
            self.kernel_scale = self.add_weight(
                name="kernel_scale", shape=(hidden,), initializer="ones"
            )
        self.norm = None
        if self.normalization != "weight":
            self.norm = make_normalization(self.normalization, self.dtype_policy, "norm")
        if self.norm is not None:
            self.norm.build(input_shape[:-1] + (hidden,))

    def _kernel(self, dtype):
        """`K` in `dtype`; for "weight", `diag(g) V / ||V||` per hidden channel."""
        # Cast first: inside `call` Keras autocasts the variables to the compute
        # dtype, so both directions must start from the same rounded values.
        kernel = tf.cast(self.kernel, dtype)
        if self.kernel_scale is None:
            return kernel
        wide = tf.float64 if kernel.dtype == tf.float64 else tf.float32
        kernel = tf.cast(kernel, wide)
        scale = tf.cast(tf.cast(self.kernel_scale, dtype), wide)
        axes = list(range(self.rank + 1))
        # epsilon: a zero filter gives a zero column instead of NaN.
        inv_norm = tf.math.rsqrt(tf.reduce_sum(tf.square(kernel), axis=axes) + 1e-12)
        return tf.cast(kernel * (scale * inv_norm), dtype)

    def _force(self, y, training):
        """`K^T act(norm(K Y + b))` (that is `-f(Y)`) in the compute dtype, returned in y's dtype."""
        dtype = self.compute_dtype
        kernel = self._kernel(dtype)
        data_format = _DATA_FORMAT[self.rank]
        z = tf.nn.convolution(
            tf.cast(y, dtype), kernel, padding="SAME", data_format=data_format
        )
        if self.bias is not None:
            z = z + tf.cast(self.bias, dtype)
        if self.normalization in ("layer", "instance"):
            # GroupNormalization's map (groups 1 or -1) with a leaner gradient (ops.layer_norm).
            z = layer_norm(z, self.norm.gamma, self.norm.beta, self.norm.epsilon,
                           per_channel=self.normalization == "instance")
        elif self.norm is not None:
            z = self.norm(z, training=training)
        a = tf.cast(self._activation_fn(z), dtype)
        # Same kernel: conv_transpose is the exact adjoint of the "SAME" convolution.
        out = tf.nn.conv_transpose(
            a,
            kernel,
            output_shape=tf.shape(y),
            strides=1,
            padding="SAME",
            data_format=data_format,
        )
        return tf.cast(out, y.dtype)

    def _f(self, y, training):
        """f(Y) = -K^T act(norm(K Y + b))."""
        return -self._force(y, training)

    def call(self, x, training=None):
        y_prev, y_cur = split_halves(x)
        y_next = 2.0 * y_cur - y_prev - self.h**2 * self._force(y_cur, training)
        return tf.concat([y_cur, y_next], axis=-1)

    def _inverse(self, y, training=None):
        y_cur, y_next = split_halves(y)
        y_prev = 2.0 * y_cur - y_next - self.h**2 * self._force(y_cur, training)
        return tf.concat([y_prev, y_cur], axis=-1)

    pair_state = True

    def _backward_halves(self, y_halves, dy_halves, training=None):
        # Output (a, b) = (Y_cur, Y_next), input (Y_prev, Y_cur), g = -f:
        # dY_prev = -db, dY_cur = da + 2 db - h^2 g'(Y_cur)^T db.
        # Ordered for memory (graph mode; found with TensorFlow's memory
        # profiler on `lensink_video`): da + 2 db is formed before the VJP, so
        # da is gone when the VJP's transients exist; the VJP takes db itself
        # as its seed (scaled after, except in half precision, where the
        # scaled seed keeps the values in range) and -db is formed after it.
        y_cur, y_next = y_halves
        da, db = dy_halves
        variables = self.trainable_variables
        h2 = self.h**2
        with tf.GradientTape() as tape:
            tape.watch(y_cur)
            force = self._force(y_cur, training)
        y_prev = tf.stop_gradient(2.0 * y_cur - y_next - h2 * force)
        partial = da + 2.0 * db
        half_precision = self.compute_dtype in ("float16", "bfloat16")
        with tf.control_dependencies([partial]):
            grads = tape.gradient(
                force, [y_cur] + variables, output_gradients=-h2 * db if half_precision else db,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
        if not half_precision:
            grads = [-h2 * g for g in grads]
        with tf.control_dependencies(grads):
            dx_prev = -db
        x_halves = (y_prev, tf.stop_gradient(y_cur))
        return x_halves, (dx_prev, partial + grads[0]), list(zip(variables, grads[1:]))

    def get_config(self):
        config = super().get_config()
        config.update(
            rank=self.rank,
            kernel_size=self.kernel_size,
            h=self.h,
            hidden_channels=self.hidden_channels,
            normalization=self.normalization,
            activation=serialize_activation(self.activation),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config
