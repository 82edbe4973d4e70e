"""A shared harness for invertible layers, in the spirit of Keras's `run_layer_test`.

`run_invertible_layer_test` exercises one layer the way every public layer of
the package must work: config round trip, `.keras` save/load with identical
outputs, a symbolic (functional-model) call, eager and `tf.function` round
trips `inverse(call(x)) == x` and `call(inverse(y)) == y`, `compute_output_shape`,
and one `model.fit` step.
"""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf


def relative_error(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / (np.linalg.norm(b) + 1e-30))


def round_trip_errors(layer, x, training=False):
    """(||f^-1(f(x)) - x|| / ||x||, ||f(f^-1(y)) - y|| / ||y||) for y = f(x)."""
    y = layer(x, training=training)
    forward_inverse = relative_error(layer.inverse(y, training=training), x)
    inverse_forward = relative_error(layer(layer.inverse(y, training=training), training=training), y)
    return forward_inverse, inverse_forward


def run_invertible_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    dtype="float32",
    tolerance=None,
    run_fit=True,
    seed=0,
):
    """Runs the standard battery on `layer_cls(**init_kwargs)` with inputs of `input_shape`.

    `input_shape` includes the batch axis. Returns the layer built in the test.
    """
    tolerance = tolerance or (1e-5 if dtype == "float32" else 1e-12)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(input_shape).astype(dtype)

    layer = layer_cls(dtype=dtype, **init_kwargs)
    y = layer(x)

    # Output shape is what compute_output_shape says.
    assert tuple(y.shape) == tuple(layer.compute_output_shape(input_shape)), (
        y.shape,
        layer.compute_output_shape(input_shape),
    )
    assert np.all(np.isfinite(y.numpy()))

    # Round trips, eager.
    fi, if_ = round_trip_errors(layer, x)
    assert fi <= tolerance, f"inverse(call(x)) error {fi}"
    assert if_ <= tolerance, f"call(inverse(y)) error {if_}"

    # Round trips inside tf.function.
    @tf.function
    def traced(inp):
        out = layer(inp)
        return out, layer.inverse(out), layer(layer.inverse(out))

    out, back, again = traced(tf.constant(x))
    assert relative_error(back, x) <= tolerance
    assert relative_error(again, out) <= tolerance
    assert relative_error(out, y) <= tolerance

    # log_det_jacobian has one value per example.
    ldj = layer.log_det_jacobian(x)
    assert tuple(ldj.shape) == (input_shape[0],)

    # Config round trip.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config

    # Symbolic call in a functional model, and .keras save/load.
    inputs = keras.Input(shape=input_shape[1:], batch_size=None, dtype=dtype)
    fresh = layer_cls(dtype=dtype, **init_kwargs)
    outputs = fresh(inputs)
    model = keras.Model(inputs, outputs)
    expected = model.predict(x, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    loaded_layer = loaded.layers[-1]
    # `predict` casts float inputs to floatx (float32), so a float64 round trip
    # is checked on a direct call of the loaded model.
    direct = loaded(tf.constant(x))
    np.testing.assert_allclose(
        loaded_layer.inverse(direct).numpy(), x, rtol=0, atol=tolerance * 10 * np.abs(x).max()
    )

    # One fit step (targets of the output's shape).
    if run_fit:
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse", jit_compile=False)
        target = rng.standard_normal(expected.shape).astype(dtype)
        history = model.fit(x, target, epochs=1, batch_size=input_shape[0], verbose=0)
        assert np.isfinite(history.history["loss"][0])
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
    ("fused") and for the base class's generic one ("generic").
    """
    from keras_hyperbolic.layers.invertible import InvertibleLayer

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
        ("generic", lambda *a: InvertibleLayer.backward(layer, *a)),
    ):
        x_rebuilt, dx, grads = backward(y, dy, training)
        assert len(grads) == len(variables)
        errors[name] = {
            "x": relative_error(x_rebuilt, x),
            "dx": relative_error(dx, reference[0]),
            "variables": max(
                [relative_error(g, r) for g, r in zip(grads, reference[1:])] or [0.0]
            ),
        }
    return errors
