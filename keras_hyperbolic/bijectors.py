"""TensorFlow Probability adapter: any invertible layer of the package as a `tfp.bijectors.Bijector`.

`LayerBijector(layer)` wraps an `InvertibleLayer`, a `ReversibleSequence` or a
`ConvFlow` so that it composes with `tfp.bijectors` and `tfp.distributions`:

    flow = ConvFlow((8, 8, 1))
    base = tfd.Sample(tfd.Normal(0.0, 1.0), flow.latent_shape)
    density = tfd.TransformedDistribution(base, LayerBijector(flow))
    density.log_prob(x)  # == flow.log_prob(x)

Direction: for a layer, the bijector's `forward` is the layer's `call` and its
`inverse` the layer's `inverse`. A density model such as `ConvFlow` maps data to
latent codes in `call`; TFP's `TransformedDistribution` wants the generative
direction (latent -> data) as `forward`, so for models that declare
`bijector_forward_is_inverse = True` the bijector's `forward` is the model's
`inverse`. `invert=` overrides the choice either way.

Event ndims are `rank + 1` (the spatial axes and the channel axis: everything
but the batch). Any number of leading batch axes is accepted: they are folded
into one for the layer and unfolded after.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from keras_hyperbolic.validation import invalid


def _event_ndims_of(layer):
    rank = getattr(layer, "rank", None)
    if isinstance(rank, int) and not isinstance(rank, bool):
        return rank + 1
    shape = getattr(layer, "data_shape", None) or getattr(layer, "input_shape_", None)
    if shape is not None:
        return len(shape)
    build_shape = getattr(layer, "_build_shapes_dict", None)
    if build_shape:
        return len(next(iter(build_shape.values()))) - 1
    return None


class LayerBijector(tfp.bijectors.Bijector):
    """A `tfp.bijectors.Bijector` backed by an invertible Keras layer or model.

    Args:
        layer: an object with `call` (via `__call__`), `inverse` and
            `log_det_jacobian(x) -> (batch,)`: any `InvertibleLayer`,
            `ReversibleSequence` or `ConvFlow`.
        event_ndims: number of trailing axes that make one event (default:
            `layer.rank + 1`, or the length of the model's data shape).
        invert: if True, `forward` is `layer.inverse` and `inverse` is
            `layer.call`. Default: `layer.bijector_forward_is_inverse` if
            defined (True for `ConvFlow`), else False.
        training: passed to the layer's maps (default False: inference).
        validate_args: passed to `tfp.bijectors.Bijector`.
        name: bijector name.

    Raises:
        TypeError: when `layer` has no `inverse` or `log_det_jacobian`.
        ValueError: when `event_ndims` is not given and cannot be inferred.

    Example:

    >>> bijector = LayerBijector(InvertibleConv2D(kernel_size=3))
    >>> y = bijector.forward(x)                       # (batch, h, w, c)
    >>> bijector.forward_log_det_jacobian(x)          # (batch,)

    Reference:
        Dillon et al., "TensorFlow Distributions" (2017), bijector API.
    """

    def __init__(
        self,
        layer,
        event_ndims=None,
        invert=None,
        training=False,
        validate_args=False,
        name=None,
    ):
        parameters = dict(locals())
        for method in ("inverse", "log_det_jacobian"):
            if not callable(getattr(layer, method, None)):
                raise TypeError(
                    "Invalid value for argument `layer`. Expected an invertible layer "
                    f"with `call`, `inverse` and `log_det_jacobian`; {type(layer).__name__} "
                    f"has no `{method}`. Received: layer={layer!r}"
                )
        if event_ndims is None:
            event_ndims = _event_ndims_of(layer)
            if event_ndims is None:
                raise ValueError(
                    "Invalid value for argument `event_ndims`: it could not be inferred "
                    f"from {type(layer).__name__} (no `rank` attribute and not built). "
                    "Pass event_ndims=rank + 1. Received: event_ndims=None"
                )
        if isinstance(event_ndims, bool) or not isinstance(event_ndims, int) or event_ndims < 1:
            raise invalid("event_ndims", event_ndims, "a positive integer (rank + 1)")
        if invert is None:
            invert = bool(getattr(layer, "bijector_forward_is_inverse", False))
        if not isinstance(invert, bool):
            raise invalid("invert", invert, "True, False or None")
        self._layer = layer
        self._event_ndims = int(event_ndims)
        self._invert = invert
        self._training = training
        super().__init__(
            forward_min_event_ndims=self._event_ndims,
            inverse_min_event_ndims=self._event_ndims,
            is_constant_jacobian=bool(getattr(layer, "is_constant_jacobian", False)),
            validate_args=validate_args,
            parameters=parameters,
            name=name or "layer_bijector",
        )

    @property
    def layer(self):
        return self._layer

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    # === Batch folding: the layers take exactly one batch axis ===

    def _folded(self, fn, x):
        x = tf.convert_to_tensor(x)
        event_shape = tf.shape(x)[tf.rank(x) - self._event_ndims :]
        batch_shape = tf.shape(x)[: tf.rank(x) - self._event_ndims]
        flat = tf.reshape(x, tf.concat([[-1], event_shape], axis=0))
        if x.shape.rank is not None:
            flat.set_shape([None] + x.shape[x.shape.rank - self._event_ndims :].as_list())
        out = fn(flat)
        out_tail = tf.shape(out)[1:]
        return tf.reshape(out, tf.concat([batch_shape, out_tail], axis=0))

    def _call_layer(self, x):
        return self._layer(x, training=self._training)

    def _inverse_layer(self, y):
        return self._layer.inverse(y, training=self._training)

    def _ldj_layer(self, x):
        return self._layer.log_det_jacobian(x, training=self._training)

    # === Event shapes (pooling layers change them) ===

    def _layer_output_shape(self, event_shape):
        return tuple(self._layer.compute_output_shape((None,) + tuple(event_shape)))[1:]

    def _layer_input_shape(self, event_shape):
        return tuple(self._layer.compute_input_shape((None,) + tuple(event_shape)))[1:]

    def _static_shape(self, shape, mapper):
        shape = tf.TensorShape(shape)
        if shape.rank is None or not shape[-self._event_ndims :].is_fully_defined():
            return tf.TensorShape(None)
        batch = shape[: shape.rank - self._event_ndims]
        return batch.concatenate(mapper(shape[shape.rank - self._event_ndims :].as_list()))

    def _forward_event_shape(self, input_shape):
        mapper = self._layer_input_shape if self._invert else self._layer_output_shape
        return self._static_shape(input_shape, mapper)

    def _inverse_event_shape(self, output_shape):
        mapper = self._layer_output_shape if self._invert else self._layer_input_shape
        return self._static_shape(output_shape, mapper)

    def _forward_event_shape_tensor(self, input_shape):
        static = self._forward_event_shape(tf.TensorShape(tf.get_static_value(input_shape)))
        return tf.constant(static.as_list(), dtype=tf.int32)

    def _inverse_event_shape_tensor(self, output_shape):
        static = self._inverse_event_shape(tf.TensorShape(tf.get_static_value(output_shape)))
        return tf.constant(static.as_list(), dtype=tf.int32)

    # === Bijector maps ===

    def _forward(self, x):
        fn = self._inverse_layer if self._invert else self._call_layer
        return self._folded(fn, x)

    def _inverse(self, y):
        fn = self._call_layer if self._invert else self._inverse_layer
        return self._folded(fn, y)

    def _forward_log_det_jacobian(self, x):
        if self._invert:
            # log|det d f^-1/dy| at y = x is -log|det df/dx| at f^-1(x).
            return self._folded(lambda y: -self._ldj_layer(self._inverse_layer(y)), x)
        return self._folded(self._ldj_layer, x)

    def _inverse_log_det_jacobian(self, y):
        if self._invert:
            # The bijector's inverse is the layer's call.
            return self._folded(self._ldj_layer, y)
        return self._folded(lambda z: -self._ldj_layer(self._inverse_layer(z)), y)
