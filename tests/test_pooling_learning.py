"""Learnable poolings: gradients, orthogonality while training, and learning on a real image."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage import data

from keras_hyperbolic import layers
from keras_hyperbolic.ops import wavelets as wavelet_ops
from layer_testing import relative_error


def _detail_l1(pool, x):
    """Mean |detail coefficient| away from the periodic seam.

    Coefficient 0 along an axis mixes the crop's first and last samples (periodic
    wrap) for a 4-tap filter but not for Haar; leaving it out keeps the
    comparison about the image, not about the crop boundary.
    """
    y = pool(x)
    inner = y[(slice(None),) + (slice(1, None),) * pool.rank]
    return tf.reduce_mean(tf.abs(inner[..., x.shape[-1] :]))


def _central_difference(f, variable, eps=1e-6):
    value = variable.numpy()
    grad = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        step = np.zeros_like(value)
        step[index] = eps
        variable.assign(value + step)
        plus = float(f())
        variable.assign(value - step)
        minus = float(f())
        grad[index] = (plus - minus) / (2 * eps)
    variable.assign(value)
    return grad


@pytest.mark.parametrize(
    "layer,shape",
    [
        (layers.WaveletPooling2D("learnable", init=[0.3, 1.2], dtype="float64"), (1, 4, 6, 2)),
        (layers.WaveletUnpooling1D("learnable", init="db2", dtype="float64"), (2, 4, 4)),
        (layers.OrthogonalPooling1D("expm", init="random", dtype="float64"), (1, 4, 2)),
        (layers.OrthogonalPooling2D("cayley", init="random", dtype="float64"), (1, 4, 4, 1)),
        (layers.OrthogonalUnpooling2D("expm", init="haar", dtype="float64"), (1, 2, 2, 4)),
    ],
)
def test_gradients_match_finite_differences(layer, shape):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal(shape))
    layer(x)
    weights = tf.constant(rng.standard_normal(layer(x).shape))

    def loss(inp=x):
        return tf.reduce_sum(weights * layer(inp) ** 2)  # nonlinear in x, so dL/dx depends on x

    # With respect to the input.
    theoretical, numerical = tf.test.compute_gradient(lambda inp: loss(inp), [x], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-7)
    # With respect to every parameter.
    variable = layer.trainable_weights[0]
    with tf.GradientTape() as tape:
        value = loss()
    autodiff = tape.gradient(value, variable).numpy()
    assert np.abs(autodiff).max() > 1e-3  # the parameters do matter
    np.testing.assert_allclose(autodiff, _central_difference(loss, variable), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "layer",
    [
        layers.WaveletPooling2D("learnable"),
        layers.OrthogonalPooling2D("expm", init="haar"),
        layers.OrthogonalPooling3D("cayley", init="random"),
        layers.OrthogonalUnpooling1D("cayley", init="squeeze"),
    ],
)
def test_stays_orthogonal_after_20_optimizer_steps(layer):
    rng = np.random.default_rng(1)
    rank = layer.rank
    shape = (4,) + (8,) * rank + (2,)
    if layer.upsample:
        shape = (4,) + (4,) * rank + (2 * 2**rank,)
    x = tf.constant(rng.standard_normal(shape).astype("float32"))
    layer(x)
    before = [w.numpy().copy() for w in layer.trainable_weights]
    optimizer = keras.optimizers.Adam(0.05)
    for _ in range(20):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(layer(x)[..., : x.shape[-1]]))  # move energy out of block 0
        optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_weights), layer.trainable_weights))
    assert any(np.abs(w.numpy() - b).max() > 1e-2 for w, b in zip(layer.trainable_weights, before))
    y = layer(x)
    assert abs(float(tf.norm(y)) / float(tf.norm(x)) - 1.0) <= 1e-5
    assert relative_error(layer.inverse(y), x) <= 1e-5
    assert relative_error(layer(layer.inverse(y)), y) <= 1e-5


def _camera_tiles():
    """The 64 tiles (64x64) of skimage's camera in [0, 1], split as a checkerboard."""
    image = data.camera().astype("float32") / 255.0
    tiles = image.reshape(8, 64, 8, 64).transpose(0, 2, 1, 3)[..., None]
    black = np.add.outer(np.arange(8), np.arange(8)) % 2 == 0
    return tf.constant(tiles[black]), tf.constant(tiles[~black])


def test_learnable_wavelet_sparsifies_camera_better_than_haar():
    # iUNet's Fig. 4 experiment: learn the wavelet that minimises the l1 norm of the
    # detail coefficients on half of the tiles of a real image, test on the others.
    # The start is Haar shifted by one sample (c = [0, 0, 1, 1]/sqrt2), as sparse as
    # Haar. (From init="haar" itself gradient descent stays put: along the valley
    # of filters with a vanishing moment, Haar is a local minimum of this l1.)
    train, test = _camera_tiles()
    learnable = layers.WaveletPooling2D("learnable", init=[-np.pi / 2, 3 * np.pi / 4])
    haar_test = float(_detail_l1(layers.WaveletPooling2D("haar"), test))
    start_train, start_test = float(_detail_l1(learnable, train)), float(_detail_l1(learnable, test))
    optimizer = keras.optimizers.Adam(0.02)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = _detail_l1(learnable, train)
        optimizer.apply_gradients([(tape.gradient(loss, learnable.angles), learnable.angles)])

    for _ in range(150):
        step()
    learned_train, learned_test = float(_detail_l1(learnable, train)), float(_detail_l1(learnable, test))
    print(f"detail l1 on held-out tiles: Haar {haar_test:.5f}, start {start_test:.5f}, "
          f"learned {learned_test:.5f} (a, b = {[float(v) for v in learnable.wavelet_angles()]})")
    assert start_test >= 0.99 * haar_test  # the start is no better than Haar
    assert learned_train < 0.95 * start_train
    assert learned_test < 0.95 * haar_test
    # Learning kept the wavelet orthogonal.
    coeffs = wavelet_ops.coefficients_from_angles(*learnable.wavelet_angles()).numpy()
    assert wavelet_ops.orthogonality_residual(coeffs) < 1e-6
