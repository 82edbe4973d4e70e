"""`ChannelZeroPadding`: zero channels put in front, the injective input operator of i-RevNet."""

import keras
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class ChannelZeroPadding(InvertibleLayer):
    """Puts zero channels in front: the injective part of i-RevNet's input operator.

    `call` maps `(batch, *spatial, C)` to `(batch, *spatial, channels)`: the
    first `channels - C` channels are zero, the input follows. `inverse` drops
    them. `inverse` is a left inverse (`inverse(call(x)) == x` exactly) and on
    the image of `call` (inputs whose leading channels are zero) the two maps
    are inverse to each other; off the image `inverse` is a projection. The
    map is not square, so it has no log-determinant.

    Why in front: when the padding is half the state, the zeros form the half
    `x` that the next block only adds to (`x~_next = x + F(x~)`), so no
    bottleneck ever evaluates on exact zeros. A normalisation of an all-zero
    channel turns the rounding noise of a rebuilt (inverted) state into
    non-zero activations, which the memory-efficient training would then
    differentiate.

    Args:
        channels: channel count of the output, larger than the input's.
        **kwargs: base `Layer` arguments.

    Input shape:
        `(batch, *spatial, C)`, `C < channels`.

    Output shape:
        `(batch, *spatial, channels)`.

    Reference: Jacobsen's thesis, section 6.3.2, model (a) ("48 to 96 by
    simply adding 0").
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_positive_int(channels, "channels")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if input_shape[-1] is None or input_shape[-1] >= self.channels:
            raise ValueError(
                f"Invalid shape for argument `inputs` of ChannelZeroPadding: expected fewer "
                f"than `channels`={self.channels} known channels. "
                f"Received: inputs.shape={input_shape}"
            )
        self.input_channels = int(input_shape[-1])

    def call(self, x, training=None):
        pad = [[0, 0]] * (len(x.shape) - 1) + [[self.channels - self.input_channels, 0]]
        return tf.pad(x, pad)

    def build_for_inverse(self, output_shape):
        if not self.built:
            raise ValueError("ChannelZeroPadding must be built (called) before `inverse`: "
                             "the output does not say how many channels were padded.")

    def _inverse(self, y, training=None):
        return y[..., self.channels - self.input_channels:]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.channels,)

    def compute_input_shape(self, output_shape):
        return tuple(output_shape)[:-1] + (self.input_channels,)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config
