"""The invertible-layer contract every invertible layer of the package follows.

An `InvertibleLayer` is a Keras layer whose public maps live on the base class
(TensorFlow Probability's bijector style); subclasses implement private hooks:

- `call(x, training=None)`: the forward map `y = f(x)` (Keras's own hook);
- `inverse(y)` -> `_inverse(y, training)`: `x = f^-1(y)`;
- `log_det_jacobian(x)` -> `_log_det_jacobian(x, training)`: `log|det df/dx|`
  per example, shape `(batch,)`; never called on volume-preserving layers
  (the base returns zeros);
- `forward_and_log_det(x)` -> `_forward_and_log_det(x, training)`: both at
  once; override only where they share work (affine coupling);
- `backward(y, dy, training, dlog_det=None)` -> `_backward(...)`: the hook of
  the memory-efficient engine (`keras_hyperbolic.reversible`). Given the
  output `y` and the gradient `dy` of the loss with respect to it (and, for
  flows, `dlog_det` with respect to the layer's log-determinant), returns
  `(x, dx, pairs)`: the rebuilt input, the gradient with respect to it, and
  `(variable, gradient)` pairs for the layer's trainable variables (the engine
  sums pairs that share a variable). The default rebuilds `x` by inversion and
  recomputes the forward pass under a tape; coupling blocks fuse the two.

The public methods convert their argument the way Keras's `__call__` does,
build the layer from the shape they receive, and drop `dlog_det` for
volume-preserving layers, so the hooks receive built layers and stream tensors.

Facts about the Jacobian are constructor arguments, as in TFP:
`is_volume_preserving` (log-det identically zero) and `is_constant_jacobian`
(log-det independent of the input; implied by the former). A wrapper derives
them from what it wraps.

The reversible stream (the tensors passed between invertible layers) stays in
the variable dtype (float32 under a `mixed_float16` policy), because inversion
drifts badly in half precision (docs/design.md, "The memory engine"); sub-layers in a block still
compute in the policy's compute dtype. `compute_output_spec` reports that
stream dtype, so symbolic and eager outputs agree.
"""

import keras
import numpy as np
import tensorflow as tf


def vjp(function, x, variables, output_gradients):
    """`function(x)` and its vector-Jacobian product, the core of every `_backward`.

    Returns `(outputs, dx, pairs)`: `outputs = function(x)` (recorded on a tape
    that watches `x`), the gradient of `sum(outputs * output_gradients)` with
    respect to `x`, and its `(variable, gradient)` pairs for `variables`
    (zeros, not None, where a variable is not used).
    """
    variables = list(variables)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = function(x)
    grads = tape.gradient(
        outputs,
        [x] + variables,
        output_gradients=output_gradients,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return outputs, grads[0], list(zip(variables, grads[1:]))


class InvertibleLayer(keras.layers.Layer):
    """Base class of the package's invertible layers (see the module docstring).

    Args:
        is_constant_jacobian: the log-determinant does not depend on the input.
        is_volume_preserving: the log-determinant is identically zero (implies
            `is_constant_jacobian`).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).
    """

    def __init__(self, is_constant_jacobian=False, is_volume_preserving=False, **kwargs):
        super().__init__(**kwargs)
        self._is_volume_preserving = bool(is_volume_preserving)
        self._is_constant_jacobian = bool(is_constant_jacobian) or self._is_volume_preserving

    @property
    def is_constant_jacobian(self):
        """True when `log_det_jacobian` does not depend on the input."""
        return self._is_constant_jacobian

    @property
    def is_volume_preserving(self):
        """True when `log_det_jacobian` is identically zero."""
        return self._is_volume_preserving

    @property
    def input_dtype(self):
        # Keep the reversible stream in the variable dtype (float32 under mixed
        # precision) so that inversion does not drift.
        return self.variable_dtype

    def stream_dtype(self, dtype):
        """The dtype a tensor of `dtype` has on the stream (after Keras's autocast)."""
        dtype = keras.backend.standardize_dtype(dtype)
        if self.autocast and keras.backend.is_float_dtype(dtype):
            return self.input_dtype
        return dtype

    def compute_output_spec(self, *args, **kwargs):
        # Keras reports `compute_dtype` (float16 under mixed precision); the
        # maps return the stream dtype.
        spec = super().compute_output_spec(*args, **kwargs)
        inputs = args[0] if args else next(iter(kwargs.values()))
        dtype = self.stream_dtype(inputs.dtype)
        return keras.tree.map_structure(
            lambda s: keras.KerasTensor(s.shape, dtype=dtype)
            if keras.backend.is_float_dtype(s.dtype)
            else s,
            spec,
        )

    # === Public maps: convert, build, dispatch ===

    def _to_stream(self, x):
        """`x` as a tensor, floating inputs cast to the stream dtype like `__call__` does."""
        return tf.convert_to_tensor(self.dtype_policy.convert_input(x, self.autocast, self.input_dtype))

    def _build_from_input(self, input_shape):
        if not self.built:
            self.build(tuple(input_shape))

    def build_for_inverse(self, output_shape):
        """Builds the layer from the shape of `y`, so `inverse` can be called first."""
        if not self.built:
            self.build(tuple(self.compute_input_shape(tuple(output_shape))))

    def inverse(self, y, training=None):
        """`x = f^-1(y)`."""
        y = self._to_stream(y)
        self.build_for_inverse(y.shape)
        return self._inverse(y, training=training)

    def log_det_jacobian(self, x, training=None):
        """`log|det df/dx|` per example, shape `(batch,)`."""
        x = self._to_stream(x)
        self._build_from_input(x.shape)
        if self.is_volume_preserving:
            return tf.zeros(tf.shape(x)[:1], dtype=x.dtype)
        return self._log_det_jacobian(x, training=training)

    def forward_and_log_det(self, x, training=None):
        """`(call(x), log_det_jacobian(x))`."""
        x = self._to_stream(x)
        self._build_from_input(x.shape)
        return self._forward_and_log_det(x, training=training)

    def backward(self, y, dy, training=None, dlog_det=None):
        """`(x, dx, [(variable, gradient), ...])` for the engine (module docstring)."""
        y = self._to_stream(y)
        dy = tf.cast(dy, y.dtype)
        if dlog_det is not None:
            # The log-determinant of a volume-preserving layer is constant zero.
            dlog_det = None if self.is_volume_preserving else tf.cast(dlog_det, y.dtype)
        if self.pair_state:  # volume preserving: the halves' backward, joined
            x_halves, dx_halves, pairs = self.backward_halves(
                tf.split(y, 2, axis=-1), tf.split(dy, 2, axis=-1), training=training
            )
            return tf.concat(x_halves, axis=-1), tf.concat(dx_halves, axis=-1), pairs
        return self._backward(y, dy, training=training, dlog_det=dlog_det)

    def backward_halves(self, y_halves, dy_halves, training=None):
        """`backward` on a pair state given as its two channel halves (`pair_state` layers).

        Returns `((x_prev, x_cur), (dx_prev, dx_cur), pairs)`. The engine uses
        it between consecutive pair-state layers, so that the pair and its
        gradient are not concatenated by one layer only to be split again by
        the next (two state-sized copies each, per layer).
        """
        y_halves = tuple(self._to_stream(y) for y in y_halves)
        dy_halves = tuple(tf.cast(dy, y.dtype) for y, dy in zip(y_halves, dy_halves))
        return self._backward_halves(y_halves, dy_halves, training=training)

    #: True for layers whose stream is a pair `[Y_prev | Y_cur]` (two channel
    #: halves) and that implement `_backward_halves`; they are volume preserving.
    pair_state = False

    # === Hooks for subclasses ===

    def _inverse(self, y, training=None):
        raise NotImplementedError(f"{type(self).__name__} does not implement `_inverse`.")

    def _log_det_jacobian(self, x, training=None):
        raise NotImplementedError(
            f"{type(self).__name__} does not implement `_log_det_jacobian`."
        )

    def _forward_and_log_det(self, x, training=None):
        return self(x, training=training), self.log_det_jacobian(x, training=training)

    def _backward_halves(self, y_halves, dy_halves, training=None):
        raise NotImplementedError(f"{type(self).__name__} does not implement `_backward_halves`.")

    def _backward(self, y, dy, training=None, dlog_det=None):
        x = tf.stop_gradient(self._inverse(y, training=training))
        if dlog_det is None:
            _, dx, pairs = vjp(
                lambda x: self.call(x, training=training), x, self.trainable_variables, dy
            )
        else:
            _, dx, pairs = vjp(
                lambda x: list(self._forward_and_log_det(x, training=training)),
                x,
                self.trainable_variables,
                [dy, dlog_det],
            )
        return x, dx, pairs

    # === Shapes ===

    def compute_output_shape(self, input_shape):
        # Most invertible layers keep the shape; resolution changes override this.
        return tuple(input_shape)

    def compute_input_shape(self, output_shape):
        """Shape of `x` for an output shape `y` (the inverse of `compute_output_shape`)."""
        return tuple(output_shape)


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
        tf.norm(tf.cast(x, tf.float64) - tf.cast(x_rebuilt, tf.float64))
        / (tf.norm(tf.cast(x, tf.float64)) + atol)
    )
    if not np.isfinite(error) or error > rtol:
        raise AssertionError(
            f"{type(layer).__name__} is not invertible on this input: relative "
            f"reconstruction error {error:.3g} > rtol={rtol:g}"
        )
    return error
