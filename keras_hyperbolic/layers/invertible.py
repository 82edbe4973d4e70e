"""The invertible-layer contract every invertible layer of the package follows.

An `InvertibleLayer` is a Keras layer with

- `call(x, training=None)`: the forward map `y = f(x)`;
- `inverse(y, training=None)`: `x = f^-1(y)`;
- `log_det_jacobian(x, training=None)`: `log|det df/dx|` per example, shape `(batch,)`
  (zeros for volume-preserving layers such as the orthogonal poolings);
- `backward(y, dy, training, dlog_det=None)`: used by the memory-efficient
  engine (`keras_hyperbolic.reversible`). Given the layer's output `y` and the
  gradient `dy` of the loss with respect to it (and, for flows, the gradient
  `dlog_det` of the loss with respect to the layer's log-determinant),
  returns `(x, dx, variable_grads)`: the
  rebuilt input, the gradient with respect to it, and the gradients with
  respect to `self.trainable_variables` (same order). The default rebuilds `x`
  by inversion and recomputes the forward pass under a tape; layers that can do
  better (coupling blocks reuse the function evaluations of the inversion)
  override it.

The reversible stream (the tensors passed between invertible layers) stays in
the variable dtype (float32 under a `mixed_float16` policy), because inversion
drifts badly in half precision (see DESIGN.md); sub-layers inside a block still
compute in the policy's compute dtype.
"""

import keras
import numpy as np
import tensorflow as tf


class InvertibleLayer(keras.layers.Layer):
    """Base class of the package's invertible layers (see the module docstring)."""

    #: True when `log_det_jacobian` does not depend on the input (orthogonal maps).
    is_constant_jacobian = False
    #: True when the layer's maps are orthogonal (norm-preserving): log-det is zero.
    is_volume_preserving = False

    @property
    def input_dtype(self):
        # Keep the reversible stream in the variable dtype (float32 under mixed
        # precision) so that inversion does not drift.
        return self.variable_dtype

    def inverse(self, y, training=None):
        raise NotImplementedError(f"{type(self).__name__} does not implement `inverse`.")

    def log_det_jacobian(self, x, training=None):
        if self.is_volume_preserving:
            x = tf.convert_to_tensor(x)
            return tf.zeros(tf.shape(x)[:1], dtype=x.dtype)
        raise NotImplementedError(
            f"{type(self).__name__} does not implement `log_det_jacobian`."
        )

    def forward_and_log_det(self, x, training=None):
        """`(call(x), log_det_jacobian(x))`; layers that get both cheaply override it."""
        return self(x, training=training), self.log_det_jacobian(x, training=training)

    def backward(self, y, dy, training=None, dlog_det=None):
        x = tf.stop_gradient(self.inverse(y, training=training))
        variables = list(self.trainable_variables)
        with tf.GradientTape() as tape:
            tape.watch(x)
            if dlog_det is None:
                targets, target_grads = self.call(x, training=training), dy
            else:
                y_rebuilt, log_det = self.forward_and_log_det(x, training=training)
                targets, target_grads = [y_rebuilt, log_det], [dy, dlog_det]
        grads = tape.gradient(
            targets,
            [x] + variables,
            output_gradients=target_grads,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        return x, grads[0], grads[1:]

    def compute_input_shape(self, output_shape):
        """Shape of `x` for an output shape `y` (the inverse of `compute_output_shape`)."""
        return tuple(output_shape)

    def build_for_inverse(self, output_shape):
        """Builds the layer from the shape of `y`, so `inverse` can be called first."""
        if not self.built:
            self.build(self.compute_input_shape(output_shape))


def check_invertible(layer, x, rtol=1e-5, atol=1e-6, training=False):
    """Checks that `layer.inverse(layer(x)) == x` within tolerance.

    Memcnn's `is_invertible_module` for Keras: returns the relative error, and
    raises `AssertionError` with that error when it exceeds `rtol`.

    Args:
        layer: an `InvertibleLayer` (or anything with `call` and `inverse`).
        x: an input batch.
        rtol: largest accepted relative error `||x - f^-1(f(x))|| / ||x||`.
        atol: absolute floor added to `||x||`, for inputs near zero.
        training: passed to both maps.

    Returns:
        The relative reconstruction error, a Python float.
    """
    x = tf.convert_to_tensor(x)
    y = layer(x, training=training)
    x_rebuilt = layer.inverse(y, training=training)
    error = float(
        tf.norm(tf.cast(x - x_rebuilt, tf.float64))
        / (tf.norm(tf.cast(x, tf.float64)) + atol)
    )
    if not np.isfinite(error) or error > rtol:
        raise AssertionError(
            f"{type(layer).__name__} is not invertible on this input: relative "
            f"reconstruction error {error:.3g} > rtol={rtol:g}"
        )
    return error
