"""The shared base of the coupling blocks: split in halves, a residual function per half.

`BaseCoupling` keeps the arguments of the built-in `ResidualFunction`
(rank, hidden channels, kernel size, normalisation, activation, zero_init,
init_scale), validates them once, serialises them once and builds the
function; `AdditiveCoupling` and `AffineCoupling` add only their own maps.
"""

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


def split_halves(x):
    # One Split op: its gradient is one concat. Two slices' gradients are two
    # zero-filled full-size tensors and their sum (measured: 2x the plain
    # autodiff step of an affine coupling stack on CPU).
    return tuple(tf.split(x, 2, axis=-1))


def check_function(value, name):
    if value is not None and not isinstance(value, keras.layers.Layer):
        raise TypeError(
            f"Invalid value for argument `{name}`: expected a Keras layer or None. "
            f"Received: {name}={value!r}"
        )
    return value


def check_function_output(layer, function, which, half_shape, out_channels=None):
    """Raises if the user function `which` does not map a half to `out_channels` channels.

    `out_channels=None` means the half's own channel count.
    """
    try:
        out_shape = tuple(function.compute_output_shape(half_shape))
    except NotImplementedError:
        return  # unknown until called; a shape error will surface then
    expected = tuple(half_shape[1:-1]) + (out_channels or half_shape[-1],)
    if len(out_shape) != len(half_shape) or tuple(out_shape[1:]) != expected:
        raise ValueError(
            f"Invalid value for argument `{which}` of {type(layer).__name__}: it must map "
            f"a half of shape {half_shape} to {half_shape[:1] + expected}. Received: "
            f"{which} with output shape {out_shape}"
        )


class BaseCoupling(InvertibleLayer):
    """Coupling block on `[x1 | x2]` with built-in residual functions; not public.

    Args:
        rank: number of spatial axes, 1, 2 or 3.
        hidden_channels: hidden channels of the built-in functions (`None`: a half's).
        kernel_size: kernel size of the built-in functions.
        normalization: "batch", "layer", "instance" or "none".
        activation: Keras activation name or callable.
        zero_init: start the built-in functions at zero (identity block).
        init_scale: factor on the built-in functions' last initial kernel.
        **kwargs: `InvertibleLayer` arguments.
    """

    def __init__(
        self,
        rank,
        hidden_channels=None,
        kernel_size=3,
        normalization="batch",
        activation="relu",
        zero_init=False,
        init_scale=0.1,
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

    def _function_arguments(self):
        """The arguments this block passes to its built-in `ResidualFunction`s."""
        return dict(
            rank=self.rank,
            hidden_channels=self.hidden_channels,
            kernel_size=self.kernel_size,
            normalization=self.normalization,
            activation=self.activation,
            zero_init=self.zero_init,
            init_scale=self.init_scale,
        )

    def _residual_function(self, name, filters=None):
        """The built-in `ResidualFunction` with this block's arguments."""
        return ResidualFunction(
            filters=filters, dtype=self.dtype_policy, name=name, **self._function_arguments()
        )

    def _built_function(self, function, name, half_shape, out_channels=None):
        """`function` (a user layer, its output shape checked) or, for None, the
        built-in one with `out_channels` (None: a half's), built for a half."""
        if function is None:
            function = self._residual_function(name, filters=out_channels)
        else:
            check_function_output(self, function, name, half_shape, out_channels)
        if not function.built:
            function.build(half_shape)
        return function

    def _half_shape(self, input_shape):
        input_shape = check_splittable_shape(self, input_shape, self.rank)
        return input_shape[:-1] + (input_shape[-1] // 2,)

    def get_config(self):
        config = super().get_config()
        config.update(self._function_arguments())
        config["activation"] = serialize_activation(self.activation)
        return config
