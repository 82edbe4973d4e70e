"""`ActiveChannels`: an invertible layer on the leading channels, the rest passed through."""

import keras
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class ActiveChannels(InvertibleLayer):
    """Applies an invertible layer to the first `active` channels; the rest pass through.

    The Jacobian is block diagonal `[J_layer, I]`: the log-det, and what is
    known about it, are the wrapped layer's.
    """

    def __init__(self, layer, active, **kwargs):
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        super().__init__(
            is_constant_jacobian=layer.is_constant_jacobian,
            is_volume_preserving=layer.is_volume_preserving,
            **kwargs,
        )
        self.layer = layer
        self.active = int(active)

    def build(self, input_shape):
        shape = tuple(input_shape)
        if not self.layer.built:
            self.layer.build(shape[:-1] + (self.active,))

    def call(self, x, training=None):
        a, rest = x[..., : self.active], x[..., self.active :]
        return tf.concat([self.layer(a, training=training), rest], axis=-1)

    def _inverse(self, y, training=None):
        a, rest = y[..., : self.active], y[..., self.active :]
        return tf.concat([self.layer.inverse(a, training=training), rest], axis=-1)

    def _log_det_jacobian(self, x, training=None):
        return self.layer.log_det_jacobian(x[..., : self.active], training=training)

    def _backward(self, y, dy, training=None, dlog_det=None):
        a, rest = y[..., : self.active], y[..., self.active :]
        da, drest = dy[..., : self.active], dy[..., self.active :]
        x, dx, pairs = self.layer.backward(a, da, training=training, dlog_det=dlog_det)
        return tf.concat([x, rest], axis=-1), tf.concat([dx, drest], axis=-1), pairs

    def get_config(self):
        config = super().get_config()
        config.update(layer=keras.saving.serialize_keras_object(self.layer), active=self.active)
        return config
