"""The built-in residual function of the coupling blocks: conv -> norm -> act -> conv."""

import keras

from keras_hyperbolic.layers.conv_by_rank import conv_class
from keras_hyperbolic.validation import (
    check_activation,
    check_choice,
    check_finite_float,
    check_optional_positive_int,
    check_positive_int,
    check_rank,
)

NORMALIZATIONS = ("batch", "layer", "instance", "none")


def check_normalization(normalization, name="normalization"):
    if normalization is None:
        return "none"
    return check_choice(normalization, NORMALIZATIONS, name)


def make_normalization(normalization, dtype, name, zero_gamma=False):
    """The normalisation sub-layer for `normalization` (None for "none").

    "layer" normalises each example over its spatial axes and channels
    (`GroupNormalization(groups=1)`), "instance" each channel of each example
    over its spatial axes (`groups=-1`): both are independent of the batch, so
    they behave the same in training and inference. "batch" is Keras's
    `BatchNormalization` with `synchronized=True`: under a `tf.distribute`
    strategy its batch statistics are all-reduced over the replicas, so the
    result is the one-device computation on the global batch (on one device
    it is plain batch normalisation).
    """
    gamma = "zeros" if zero_gamma else "ones"
    if normalization == "batch":
        return keras.layers.BatchNormalization(
            gamma_initializer=gamma, synchronized=True, dtype=dtype, name=name
        )
    if normalization == "layer":
        return keras.layers.GroupNormalization(
            groups=1, gamma_initializer=gamma, dtype=dtype, name=name
        )
    if normalization == "instance":
        return keras.layers.GroupNormalization(
            groups=-1, gamma_initializer=gamma, dtype=dtype, name=name
        )
    return None


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class ScaledInitializer(keras.initializers.Initializer):
    """`scale` times the values of another initializer."""

    def __init__(self, initializer, scale):
        self.initializer = keras.initializers.get(initializer)
        self.scale = float(scale)

    def __call__(self, shape, dtype=None):
        return self.initializer(shape, dtype=dtype) * self.scale

    def get_config(self):
        return {
            "initializer": keras.initializers.serialize(self.initializer),
            "scale": self.scale,
        }


def check_init_scale(init_scale):
    return check_finite_float(init_scale, "init_scale")


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class ResidualFunction(keras.layers.Layer):
    """Rank-generic residual function `conv -> normalisation -> activation -> conv`.

    The `F`/`G` of the coupling blocks (`AdditiveCoupling`, `AffineCoupling`):
    a small convolutional network mapping `(batch, *spatial, C_in)` to
    `(batch, *spatial, filters)` with "same" (zero) padding and stride 1, so the
    spatial shape is kept. It need not be invertible itself.

    Args:
        rank: number of spatial axes, 1, 2 or 3.
        filters: output channels; `None` (default) keeps the input's channels.
        hidden_channels: channels between the two convolutions; `None`
            (default) uses the input's channels.
        kernel_size: odd or even positive int, the kernel size of both convolutions.
        normalization: "batch", "layer" (per example over spatial axes and
            channels), "instance" (per example and channel) or "none".
        activation: any Keras activation name or callable.
        zero_init: if True the last convolution starts at zero (kernel and
            bias), so the function is identically zero at initialisation and a
            coupling block using it starts as the identity (iUNet's option).
            Zeroing the last convolution rather than a normalisation's gamma
            makes the function exactly zero for every activation.
        init_scale: factor (>= 0) on the last convolution's initial kernel.
            The default 0.1 gives the function a gain of about 0.15, so a deep
            stack of couplings starts near (not at) the identity and stays
            well conditioned: a 64-block `AdditiveCoupling` stack grows the
            input's norm by about 2x instead of overflowing.
        kernel_initializer: initializer of both convolution kernels (before
            `init_scale` for the last one).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, *spatial, C_in)`, `rank` spatial axes.

    Output shape:
        `(batch, *spatial, filters)`.

    Example:
    >>> f = ResidualFunction(rank=2, hidden_channels=16)
    >>> f(np.zeros((2, 8, 8, 4), "float32")).shape
    TensorShape([2, 8, 8, 4])

    Reference: Gomez et al., "The Reversible Residual Network" (2017);
    Etmann et al., "iUNets" (2020).
    """

    def __init__(
        self,
        rank,
        filters=None,
        hidden_channels=None,
        kernel_size=3,
        normalization="batch",
        activation="relu",
        zero_init=False,
        init_scale=0.1,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rank = check_rank(rank)
        self.filters = None if filters is None else check_positive_int(filters, "filters")
        self.hidden_channels = check_optional_positive_int(hidden_channels, "hidden_channels")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.normalization = check_normalization(normalization)
        self.activation = check_activation(activation)
        self._activation_config = activation
        self.zero_init = bool(zero_init)
        self.init_scale = check_init_scale(init_scale)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 2 or input_shape[-1] is None:
            raise ValueError(
                f"Invalid shape for argument `inputs` of {type(self).__name__}: expected "
                f"(batch, {self.rank} spatial axes, known channels). "
                f"Received: inputs.shape={input_shape}"
            )
        channels = int(input_shape[-1])
        hidden = self.hidden_channels or channels
        filters = self.filters or channels
        conv = conv_class(self.rank)
        use_norm = self.normalization != "none"
        self.conv1 = conv(
            hidden,
            self.kernel_size,
            padding="same",
            use_bias=not use_norm,  # the normalisation's beta is the bias
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="conv1",
        )
        self.norm = make_normalization(self.normalization, self.dtype_policy, "norm")
        last_init = (
            "zeros"
            if self.zero_init
            else ScaledInitializer(self.kernel_initializer, self.init_scale)
        )
        self.conv2 = conv(
            filters,
            self.kernel_size,
            padding="same",
            kernel_initializer=last_init,
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="conv2",
        )
        self.conv1.build(input_shape)
        hidden_shape = input_shape[:-1] + (hidden,)
        if self.norm is not None:
            self.norm.build(hidden_shape)
        self.conv2.build(hidden_shape)

    def call(self, x, training=None):
        h = self.conv1(x)
        if self.norm is not None:
            h = self.norm(h, training=training)
        h = self.activation(h)
        return self.conv2(h)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        return input_shape[:-1] + (self.filters or input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        activation = self._activation_config
        if not isinstance(activation, str):
            activation = keras.activations.serialize(self.activation)
        config.update(
            rank=self.rank,
            filters=self.filters,
            hidden_channels=self.hidden_channels,
            kernel_size=self.kernel_size,
            normalization=self.normalization,
            activation=activation,
            zero_init=self.zero_init,
            init_scale=self.init_scale,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
