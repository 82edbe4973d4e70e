"""SneakyReLU and Invertible1x1Conv."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic.layers import Invertible1x1Conv, SneakyReLU
from layer_testing import autodiff_log_det, relative_error, run_invertible_layer_test


# === SneakyReLU ===
def test_sneaky_relu_battery():
    run_invertible_layer_test(SneakyReLU, {"slope": 0.2}, (2, 5, 3), dtype="float64")


@pytest.mark.parametrize("slope", [0.01, 0.1, 1.0, 3.0])
def test_sneaky_relu_shape_and_inverse(slope):
    layer = SneakyReLU(slope=slope, dtype="float64")
    x = np.concatenate([np.linspace(-1e4, 1e4, 41), np.linspace(-3, 3, 61), [0.0]])[None]
    y = layer(x).numpy()
    assert y[0, -1] == 0.0
    assert np.all(np.diff(y[0, :41]) > 0) and np.all(np.diff(y[0, 41:-1]) > 0)
    # Asymptotic slopes: `slope` at -inf, 1 at +inf.
    np.testing.assert_allclose((y[0, 1] - y[0, 0]) / (x[0, 1] - x[0, 0]), slope, rtol=1e-3)
    np.testing.assert_allclose((y[0, 40] - y[0, 39]) / (x[0, 40] - x[0, 39]), 1.0, rtol=1e-3)
    np.testing.assert_allclose(layer.inverse(y).numpy(), x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer(layer.inverse(y)).numpy(), y, rtol=1e-12, atol=1e-12)


def test_sneaky_relu_log_det_is_slogdet():
    layer = SneakyReLU(slope=0.3, dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2)) * 2
    _, log_det = autodiff_log_det(layer, x)
    ldj = layer.log_det_jacobian(x).numpy()
    assert abs(log_det) > 1e-2
    assert abs(ldj[0] - log_det) <= 1e-4
    assert ldj[0] != ldj[1]  # depends on the input


def test_sneaky_relu_float32_round_trip_large_values():
    layer = SneakyReLU(slope=0.05)
    x = tf.constant(np.linspace(-500, 500, 1001)[None].astype("float32"))
    assert relative_error(layer.inverse(layer(x)), x) <= 1e-6


@pytest.mark.parametrize("slope", [0, -0.5, float("inf"), float("nan"), True, "0.1", None])
def test_sneaky_relu_invalid_slope(slope):
    with pytest.raises(ValueError, match="slope"):
        SneakyReLU(slope=slope)


# === Invertible1x1Conv ===
@pytest.mark.parametrize(
    "shape, dtype", [((2, 5, 6, 3), "float32"), ((2, 3, 2, 4, 5), "float64"), ((2, 7, 1), "float32")]
)
def test_1x1_battery(shape, dtype):
    run_invertible_layer_test(Invertible1x1Conv, {"seed": 3}, shape, dtype=dtype)


def test_1x1_starts_as_a_rotation():
    layer = Invertible1x1Conv(seed=1, dtype="float64")
    x = np.random.default_rng(1).standard_normal((2, 4, 3, 5))
    layer(x)
    w = layer.weight_matrix("float64").numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(layer.log_det_jacobian(x).numpy(), [0.0, 0.0], atol=1e-12)
    other = Invertible1x1Conv(seed=1, dtype="float64")
    other(x)
    np.testing.assert_array_equal(other.weight_matrix("float64").numpy(), w)
    different = Invertible1x1Conv(seed=2, dtype="float64")
    different(x)
    assert not np.allclose(different.weight_matrix("float64").numpy(), w)


@pytest.mark.parametrize("shape", [(2, 3, 2, 3), (2, 4, 2), (2, 2, 1, 2, 2)])
def test_1x1_log_det_is_slogdet(shape):
    layer = Invertible1x1Conv(seed=4, dtype="float64")
    x = np.random.default_rng(2).standard_normal(shape)
    layer(x)
    rng = np.random.default_rng(5)
    for variable in (layer.lower, layer.upper, layer.log_scale):
        variable.assign(variable.numpy() + 0.3 * rng.standard_normal(variable.shape))
    _, log_det = autodiff_log_det(layer, x)
    assert abs(log_det) > 1e-2
    np.testing.assert_allclose(layer.log_det_jacobian(x).numpy(), [log_det] * 2, atol=1e-4)
    assert relative_error(layer.inverse(layer(x)), x) <= 1e-12


def test_1x1_invalid_input():
    with pytest.raises(ValueError, match="seed"):
        Invertible1x1Conv(seed=1.5)
    with pytest.raises(ValueError, match="channels"):
        Invertible1x1Conv()(keras.Input((4, None)))
