"""`ElementwiseAffine`: a learnable scale and shift per position and channel (`ConvFlow`'s ends)."""

import keras
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class ElementwiseAffine(InvertibleLayer):
    """`y = x * exp(log_scale) + shift` with a scale and shift per position and channel.

    Circular convolutions are translation-equivariant, so a flow built only from
    them gives every pixel position the same marginal; this layer (zero-initialised:
    the identity) lets the flow model position-dependent statistics, like a
    factorised per-pixel Gaussian does. `log_det_jacobian = sum(log_scale)`.

    Input shape:
        `(batch, *spatial, channels)`, fixed at build.

    Output shape:
        Same as the input.
    """

    def build(self, input_shape):
        shape = tuple(input_shape[1:])
        # Full precision under mixed precision too: this is a map of the (float32) stream.
        self.shift = self.add_weight(shape=shape, initializer="zeros", name="shift",
                                     autocast=False)
        self.log_scale = self.add_weight(shape=shape, initializer="zeros", name="log_scale",
                                         autocast=False)
        self.built = True

    def call(self, x, training=None):
        return x * tf.exp(self.log_scale) + self.shift

    def _inverse(self, y, training=None):
        return (y - self.shift) * tf.exp(-self.log_scale)

    def _log_det_jacobian(self, x, training=None):
        return tf.fill(tf.shape(x)[:1], tf.reduce_sum(self.log_scale))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)
