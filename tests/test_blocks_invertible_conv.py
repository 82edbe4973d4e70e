"""InvertibleConv1D/2D/3D and the Fourier-domain maths of ops/fourier.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic.layers import InvertibleConv1D, InvertibleConv2D, InvertibleConv3D
from keras_hyperbolic.ops import fourier
from layer_testing import autodiff_log_det, backward_errors, relative_error, run_invertible_layer_test

CLASSES = {1: InvertibleConv1D, 2: InvertibleConv2D, 3: InvertibleConv3D}


def numpy_circular_conv(x, kernel):
    """Reference: circular cross-correlation by rolling, centred on tap k // 2."""
    rank = kernel.ndim - 2
    y = np.zeros(x.shape[:-1] + (kernel.shape[-1],))
    for tap in np.ndindex(*kernel.shape[:rank]):
        shifted = x
        for axis, t in enumerate(tap):
            shifted = np.roll(shifted, -(t - kernel.shape[axis] // 2), axis=axis + 1)
        y += shifted @ kernel[tap]
    return y


def randomise(layer, seed, scale=0.3):
    """Moves the kernel well away from the identity (still invertible)."""
    rng = np.random.default_rng(seed)
    kernel = layer.kernel.numpy()
    layer.kernel.assign(kernel + scale * rng.standard_normal(kernel.shape))


@pytest.mark.parametrize(
    "rank, kwargs, shape, dtype",
    [
        (1, {}, (2, 7, 3), "float64"),
        (2, {"kernel_size": 5}, (2, 5, 6, 3), "float32"),
        (3, {"kernel_size": 1}, (2, 3, 4, 2, 3), "float32"),
    ],
)
def test_battery(rank, kwargs, shape, dtype):
    run_invertible_layer_test(CLASSES[rank], kwargs, shape, dtype=dtype)


@pytest.mark.parametrize(
    "rank, kernel_size, shape",
    [
        (1, 3, (2, 7, 3)),
        (2, 3, (2, 5, 6, 3)),
        (2, 5, (2, 4, 3, 2)),  # kernel wider than the grid: taps wrap and add up
        (3, 3, (1, 3, 4, 2, 2)),
    ],
)
def test_forward_is_circular_conv_and_inverse_exact(rank, kernel_size, shape):
    layer = CLASSES[rank](kernel_size=kernel_size, dtype="float64")
    x = np.random.default_rng(1).standard_normal(shape)
    layer(x)
    randomise(layer, seed=2)
    y = layer(x).numpy()
    np.testing.assert_allclose(y, numpy_circular_conv(x, layer.kernel.numpy()), atol=1e-12)
    np.testing.assert_allclose(
        fourier.circular_conv_fft(tf.constant(x), layer.kernel).numpy(), y, atol=1e-12
    )
    assert relative_error(layer.inverse(y), x) <= 1e-12
    assert relative_error(layer(layer.inverse(y)), y) <= 1e-12


@pytest.mark.parametrize(
    "rank, kernel_size, shape",
    [(1, 3, (2, 6, 2)), (2, 3, (2, 3, 4, 2)), (2, 5, (2, 2, 3, 2)), (3, 3, (2, 2, 3, 2, 1))],
)
def test_log_det_is_slogdet(rank, kernel_size, shape):
    layer = CLASSES[rank](kernel_size=kernel_size, dtype="float64")
    x = np.random.default_rng(3).standard_normal(shape)
    layer(x)
    randomise(layer, seed=4)
    _, log_det = autodiff_log_det(layer, x)
    ldj = layer.log_det_jacobian(x).numpy()
    assert abs(log_det) > 1e-2
    np.testing.assert_allclose(ldj, [log_det, log_det], atol=1e-4)


@pytest.mark.parametrize("rank, shape", [(1, (2, 6, 2)), (2, (2, 3, 4, 2)), (3, (2, 2, 3, 2, 2))])
def test_engine_backward_matches_autodiff_float64(rank, shape):
    # The engine's rebuild (inverse in the Fourier domain, then a VJP of the
    # forward convolution) against plain autodiff, exact to round-off.
    layer = CLASSES[rank](dtype="float64")
    x = np.random.default_rng(9).standard_normal(shape)
    layer(x)
    randomise(layer, seed=10)
    errors = backward_errors(layer, x, training=True)
    assert max(errors["fused"].values()) <= 1e-10, errors


def test_log_det_gradient_matches_finite_differences():
    layer = InvertibleConv2D(dtype="float64")
    x = np.zeros((1, 4, 3, 2))
    layer(x)
    randomise(layer, seed=5)
    with tf.GradientTape() as tape:
        ldj = layer.log_det_jacobian(x)[0]
    grad = tape.gradient(ldj, layer.kernel).numpy()
    kernel = layer.kernel.numpy()
    eps = 1e-6
    for index in [(0, 0, 0, 1), (1, 1, 1, 1), (2, 1, 1, 0)]:
        bumped = kernel.copy()
        bumped[index] += eps
        plus = fourier.circular_conv_log_det(tf.constant(bumped), (4, 3))
        bumped[index] -= 2 * eps
        minus = fourier.circular_conv_log_det(tf.constant(bumped), (4, 3))
        np.testing.assert_allclose(grad[index], float(plus - minus) / (2 * eps), rtol=1e-5)


def test_near_identity_initialisation():
    layer = InvertibleConv2D(kernel_size=3, seed=7)
    x = np.random.default_rng(6).standard_normal((2, 6, 6, 4)).astype("float32")
    assert relative_error(layer(x), x) < 0.2
    assert abs(float(layer.log_det_jacobian(x)[0])) < 0.1 * 6 * 6 * 4
    same = InvertibleConv2D(kernel_size=3, seed=7)
    same(x)
    np.testing.assert_array_equal(same.kernel.numpy(), layer.kernel.numpy())


def test_inverse_under_jit_compile():
    layer = InvertibleConv2D()
    x = tf.random.normal((2, 4, 5, 3))
    y = layer(x)
    compiled = tf.function(layer.inverse, jit_compile=True)
    assert relative_error(compiled(y), x) <= 1e-5


@pytest.mark.parametrize("kernel_size", [2, 4, 0, -1, 2.5, True, "3"])
def test_invalid_kernel_size(kernel_size):
    with pytest.raises(ValueError, match="kernel_size"):
        InvertibleConv2D(kernel_size=kernel_size)


def test_invalid_shapes_and_arguments():
    with pytest.raises(ValueError, match="static"):
        InvertibleConv2D()(keras.Input((None, None, 3)))
    layer = InvertibleConv1D()
    layer(np.zeros((1, 8, 2), "float32"))
    with pytest.raises(ValueError, match=r"spatial shape \(8,\)"):
        layer(np.zeros((1, 6, 2), "float32"))
    with pytest.raises(ValueError, match=r"spatial shape \(8,\)"):
        layer.inverse(np.zeros((1, 6, 2), "float32"))
    with pytest.raises(ValueError, match="rank 5"):
        InvertibleConv3D()(np.zeros((1, 4, 4, 2), "float32"))
    with pytest.raises(ValueError, match="init_noise"):
        InvertibleConv2D(init_noise=-1.0)
    with pytest.raises(ValueError, match="seed"):
        InvertibleConv2D(seed="a")
    with pytest.raises(TypeError):
        InvertibleConv2D(rank=3)
