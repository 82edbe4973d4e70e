"""What Keras's `run_layer_test` does not check: the invertible-layer contract.

Config and serialisation round trips, symbolic vs eager shapes and dtypes, a
`fit` step and mixed precision are Keras's own harness
(`keras.src.testing.TestCase.run_layer_test`, run on every public layer in
test_layer_harness.py). Here, in the spirit of TFP's bijector tests:

- `run_invertible_layer_test`: `inverse(call(x)) == x` and `call(inverse(y)) == y`,
  finite values, eagerly, inside `tf.function` and after `.keras` save/load;
  `log_det_jacobian` has one value per example;
- `autodiff_log_det`: `slogdet` of the autodiff Jacobian on a tiny input;
- `backward_errors`: the engine hook (`backward`, fused and generic) against
  plain autodiff; `assert_backward_matches_autodiff` asserts them small.
"""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.reversible import match_gradients

#: float32 tolerance of one block's `backward` (fused and generic) against autodiff:
#: the largest relative error measured over the block test files (2026-12-03, this
#: CPU) was 1.71e-7 with TF_ENABLE_ONEDNN_OPTS=0 and 1.75e-7 with =1; float64: 2.5e-16.
FLOAT32_BACKWARD_RTOL = 1e-6


def relative_error(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / (np.linalg.norm(b) + 1e-30))


def _assert_round_trips(out, back, again, x, tolerance, where):
    assert np.all(np.isfinite(np.asarray(out))), f"{where}: non-finite outputs"
    error = relative_error(back, x)
    assert error <= tolerance, f"{where}: inverse(call(x)) error {error:.3g} > {tolerance}"
    error = relative_error(again, out)
    assert error <= tolerance, f"{where}: call(inverse(y)) error {error:.3g} > {tolerance}"


def run_invertible_layer_test(layer_cls, init_kwargs, input_shape, dtype="float32", tolerance=None,
                              seed=0):
    """Inversion both ways on `layer_cls(**init_kwargs)`, inputs of `input_shape` (batch included).

    Eager, `tf.function` and after a `.keras` save/load. Tolerance (relative):
    1e-5 in float32, 1e-12 in float64 unless given. Returns the eager layer.
    """
    tolerance = tolerance or (1e-5 if dtype == "float32" else 1e-12)
    x = np.random.default_rng(seed).standard_normal(input_shape).astype(dtype)

    layer = layer_cls(dtype=dtype, **init_kwargs)
    y = layer(x)
    _assert_round_trips(y, layer.inverse(y), layer(layer.inverse(y)), x, tolerance, "eager")

    @tf.function
    def traced(inputs):
        out = layer(inputs)
        return out, layer.inverse(out), layer(layer.inverse(out))

    out, back, again = traced(tf.constant(x))
    _assert_round_trips(out, back, again, x, tolerance, "tf.function")
    assert relative_error(out, y) <= tolerance

    log_det = layer.log_det_jacobian(x)
    assert tuple(log_det.shape) == (input_shape[0],)
    assert np.all(np.isfinite(log_det.numpy()))

    # A fresh layer in a functional model, saved and loaded: still inverts.
    inputs = keras.Input(shape=input_shape[1:], dtype=dtype)
    model = keras.Model(inputs, layer_cls(dtype=dtype, **init_kwargs)(inputs))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    loaded_layer = loaded.layers[-1]
    out = loaded(tf.constant(x))
    np.testing.assert_array_equal(out.numpy(), model(tf.constant(x)).numpy())
    back = loaded_layer.inverse(out)
    _assert_round_trips(out, back, loaded_layer(back), x, tolerance, "after .keras save/load")
    return layer


def autodiff_log_det(layer, x, training=False):
    """`(sign, log|det|)` of the autodiff Jacobian of `layer` at the first example of `x`.

    For tiny inputs only: the Jacobian is `n x n` with `n = x[0].size`.
    """
    x0 = tf.convert_to_tensor(x[:1])
    flat = tf.reshape(x0, [-1])
    with tf.GradientTape() as tape:
        tape.watch(flat)
        y = layer(tf.reshape(flat, x0.shape), training=training)
        y_flat = tf.reshape(y, [-1])
    jacobian = tape.jacobian(y_flat, flat)
    return np.linalg.slogdet(np.asarray(jacobian, dtype=np.float64))


def backward_errors(layer, x, training=True, seed=0):
    """Relative errors of `layer.backward` against plain autodiff of `call`.

    Returns a dict with the largest relative errors of the rebuilt input, the
    input gradient and the variable gradients, for the layer's own `backward`
    ("fused") and for the base class's generic rebuild ("generic").
    """
    x = tf.convert_to_tensor(x)
    y = layer(x, training=training)
    dy = tf.constant(np.random.default_rng(seed).standard_normal(y.shape), dtype=y.dtype)
    variables = list(layer.trainable_variables)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y_ref = layer(x, training=training)
    reference = tape.gradient(
        y_ref, [x] + variables, output_gradients=dy,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    errors = {}
    for name, backward in (
        ("fused", layer.backward),
        ("generic", lambda *a: InvertibleLayer._backward(layer, *a)),
    ):
        x_rebuilt, dx, pairs = backward(y, dy, training)
        grads = match_gradients(variables, pairs)
        assert all(g is not None for g in grads), "a trainable variable got no gradient"
        errors[name] = {
            "x": relative_error(x_rebuilt, x),
            "dx": relative_error(dx, reference[0]),
            "variables": max(
                [relative_error(g, r) for g, r in zip(grads, reference[1:])] or [0.0]
            ),
        }
    return errors


def assert_backward_matches_autodiff(layer, x, tolerance=None, training=True):
    """Asserts every `backward_errors` entry (fused and generic) is within `tolerance`.

    The default tolerance is `FLOAT32_BACKWARD_RTOL` for a float32 `x` and
    1e-10 (round-off) otherwise. Returns the errors.
    """
    if tolerance is None:
        tolerance = FLOAT32_BACKWARD_RTOL if np.asarray(x).dtype == np.float32 else 1e-10
    errors = backward_errors(layer, x, training=training)
    for kind in ("fused", "generic"):
        for what in ("x", "dx", "variables"):
            assert errors[kind][what] <= tolerance, errors
    return errors
