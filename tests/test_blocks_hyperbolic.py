"""HyperbolicBlock: the leapfrog step on the pair state."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic.layers import HyperbolicBlock
from keras_hyperbolic.ops.layer_norm import layer_norm
from layer_testing import (
    assert_backward_matches_autodiff,
    autodiff_log_det,
    relative_error,
    run_invertible_layer_test,
)


def pair(shape, seed=0, dtype="float32"):
    """A `[Y, Y]` pair (zero velocity, how networks start the leapfrog)."""
    half = np.random.default_rng(seed).standard_normal(shape[:-1] + (shape[-1] // 2,))
    return np.concatenate([half, half], axis=-1).astype(dtype)


@pytest.mark.parametrize(
    "kwargs, shape, dtype",
    [
        ({"rank": 1, "normalization": "batch"}, (2, 7, 6), "float64"),
        ({"rank": 2, "hidden_channels": 5}, (2, 5, 3, 6), "float32"),
        ({"rank": 2, "normalization": "layer"}, (2, 4, 3, 6), "float32"),
        ({"rank": 3, "normalization": "instance"}, (2, 3, 4, 2, 6), "float64"),
        ({"rank": 3, "normalization": "none", "kernel_size": 2}, (2, 3, 4, 2, 2), "float32"),
    ],
)
def test_battery(kwargs, shape, dtype):
    run_invertible_layer_test(HyperbolicBlock, kwargs, shape, dtype=dtype)


def test_leapfrog_formula():
    layer = HyperbolicBlock(rank=2, h=0.3, dtype="float64")
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 6))
    y = layer(x).numpy()
    y_prev, y_cur = x[..., :3], x[..., 3:]
    np.testing.assert_array_equal(y[..., :3], y_cur)
    f = layer._f(tf.constant(y_cur), None).numpy()
    np.testing.assert_allclose(y[..., 3:], 2 * y_cur - y_prev + 0.09 * f, rtol=1e-12)


def test_transpose_shares_the_kernel():
    # Linear, no normalisation: f(Y) = -K^T K Y must be symmetric and negative
    # semi-definite, which holds only if K^T is the exact adjoint of K.
    layer = HyperbolicBlock(
        rank=2, normalization="none", activation="linear", hidden_channels=4, dtype="float64"
    )
    rng = np.random.default_rng(2)
    layer.build((None, 5, 6, 6))
    assert [v.name for v in layer.trainable_variables] == ["kernel", "bias"]
    a = tf.constant(rng.standard_normal((1, 5, 6, 3)))
    b = tf.constant(rng.standard_normal((1, 5, 6, 3)))
    fa, fb = layer._f(a, None), layer._f(b, None)
    np.testing.assert_allclose(
        float(tf.reduce_sum(b * fa)), float(tf.reduce_sum(a * fb)), rtol=1e-10
    )
    assert float(tf.reduce_sum(a * fa)) < 0


def f_jacobian(layer, y_cur, training=None):
    """Dense Jacobian of `f` at `y_cur` (one example), read off the public call.

    `d Y_next / d Y_cur = 2 I + h**2 f'(Y_cur)`.
    """
    y_cur = tf.constant(y_cur)
    channels = y_cur.shape[-1]
    with tf.GradientTape() as tape:
        tape.watch(y_cur)
        x = tf.concat([tf.zeros_like(y_cur), y_cur], axis=-1)
        y_next = layer(x, training=training)[..., channels:]
    n = int(np.prod(y_cur.shape))
    jacobian = tape.jacobian(y_next, y_cur).numpy().reshape(n, n)
    return (jacobian - 2 * np.eye(n)) / layer.h**2


def symmetry_and_definiteness(fp):
    """(relative asymmetry, largest eigenvalue of the symmetric part relative to ||f'||)."""
    scale = np.abs(fp).max()
    asymmetry = np.abs(fp - fp.T).max() / scale
    top = np.linalg.eigvalsh((fp + fp.T) / 2).max() / scale
    return asymmetry, top


@pytest.mark.parametrize(
    "rank, shape", [(1, (1, 7, 3)), (2, (1, 3, 4, 2)), (3, (1, 2, 2, 3, 2))]
)
def test_default_f_jacobian_is_symmetric_negative_semidefinite(rank, shape):
    # The stability claim rests on f'(Y) = -K^T D K. Check it on the default
    # block with non-trivial weight-norm scales and biases, at several inputs.
    layer = HyperbolicBlock(rank=rank, h=0.5, hidden_channels=5, dtype="float64")
    assert layer.normalization == "weight"
    rng = np.random.default_rng(7)
    layer.build(shape[:-1] + (2 * shape[-1],))
    layer.kernel_scale.assign(rng.uniform(-2.0, 2.0, layer.kernel_scale.shape))
    layer.bias.assign(rng.standard_normal(layer.bias.shape))
    for _ in range(3):
        fp = f_jacobian(layer, rng.standard_normal(shape))
        asymmetry, top = symmetry_and_definiteness(fp)
        assert np.abs(fp).max() > 1e-3  # f is not trivially zero
        assert asymmetry <= 1e-5
        assert top <= 1e-5


def test_inference_batch_norm_keeps_the_structure_layer_norm_does_not():
    # The settings the docstring's stability claim excludes really break it.
    rng = np.random.default_rng(8)
    y = rng.standard_normal((1, 6, 2))
    batch = HyperbolicBlock(rank=1, h=0.5, normalization="batch", hidden_channels=3,
                            dtype="float64")
    asymmetry, top = symmetry_and_definiteness(f_jacobian(batch, y, training=False))
    assert asymmetry <= 1e-10 and top <= 1e-10
    layer = HyperbolicBlock(rank=1, h=0.5, normalization="layer", hidden_channels=3,
                            dtype="float64")
    asymmetry, _ = symmetry_and_definiteness(f_jacobian(layer, y))
    assert asymmetry > 1e-2


def test_weight_normalization_fixes_the_kernel_norm():
    layer = HyperbolicBlock(rank=2, hidden_channels=4, dtype="float64")
    layer.build((None, 5, 5, 6))
    assert [v.name for v in layer.trainable_variables] == ["kernel", "bias", "kernel_scale"]
    layer.kernel.assign(layer.kernel * 7.0)  # the direction counts, not the size
    layer.kernel_scale.assign([0.5, 1.0, 2.0, 3.0])
    norms = np.sqrt(np.sum(np.square(layer._kernel("float64").numpy()), axis=(0, 1, 2)))
    np.testing.assert_allclose(norms, [0.5, 1.0, 2.0, 3.0], rtol=1e-12)


@pytest.mark.parametrize("rank, shape", [(1, (2, 4, 4)), (2, (2, 3, 2, 4)), (3, (2, 2, 2, 2, 2))])
def test_log_det_is_zero_and_sign_positive(rank, shape):
    layer = HyperbolicBlock(rank=rank, h=0.7, dtype="float64")
    x = np.random.default_rng(3).standard_normal(shape)
    sign, log_det = autodiff_log_det(layer, x)
    assert sign == 1.0
    assert abs(log_det) <= 1e-4
    np.testing.assert_array_equal(layer.log_det_jacobian(x).numpy(), [0.0, 0.0])


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({"rank": 1, "normalization": "batch"}, (3, 6, 4)),
        ({"rank": 2}, (2, 4, 3, 6)),
        ({"rank": 2, "normalization": "layer"}, (2, 4, 3, 6)),
        ({"rank": 3, "normalization": "instance"}, (2, 3, 2, 2, 2)),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_backward_matches_autodiff(kwargs, shape, dtype):
    layer = HyperbolicBlock(h=0.5, dtype=dtype, **kwargs)
    x = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    # float32: FLOAT32_BACKWARD_RTOL, measured with oneDNN on and off
    # (layer_testing.py); float64: round-off.
    assert_backward_matches_autodiff(layer, x)


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("float64", 1e-10)])
def test_64_block_stack_round_trip(dtype, tolerance):
    blocks = [HyperbolicBlock(rank=2, dtype=dtype) for _ in range(64)]
    x = tf.constant(pair((2, 6, 5, 4), seed=5), dtype=dtype)
    y = x
    for block in blocks:
        y = block(y)
    assert relative_error(y, x) > 1e-2
    for block in reversed(blocks):
        y = block.inverse(y)
    assert relative_error(y, x) <= tolerance


@pytest.mark.parametrize("h", [0, -0.1, float("inf"), float("nan"), "0.1", True, None])
def test_invalid_h(h):
    with pytest.raises(ValueError, match="`h`"):
        HyperbolicBlock(rank=2, h=h)


def test_invalid_shapes_and_arguments():
    with pytest.raises(ValueError, match=r"even.*\(2, 4, 4, 3\)"):
        HyperbolicBlock(rank=2)(np.zeros((2, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="rank 3"):
        HyperbolicBlock(rank=1)(np.zeros((2, 4, 4, 4), "float32"))
    with pytest.raises(ValueError, match="rank"):
        HyperbolicBlock(rank=4)
    with pytest.raises(ValueError, match="kernel_size"):
        HyperbolicBlock(rank=2, kernel_size=0)
    with pytest.raises(ValueError, match="normalization"):
        HyperbolicBlock(rank=2, normalization="group")


@pytest.mark.parametrize("groups", [1, -1])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_layer_norm_equals_keras_group_normalization(dtype, groups):
    # ops.layer_norm (the block's "layer" and "instance" normalisations, with a
    # leaner gradient) is GroupNormalization(groups=1)'s and (groups=-1)'s map:
    # values and gradients.
    x = tf.constant(np.random.default_rng(6).standard_normal((2, 5, 4, 3, 6)) * 3 + 1, dtype=dtype)
    weights = tf.constant(np.random.default_rng(7).standard_normal(x.shape), dtype=dtype)
    norm = keras.layers.GroupNormalization(groups=groups,
                                           dtype=dtype if dtype != "float16" else "mixed_float16")
    norm.build(x.shape)
    norm.gamma.assign(np.random.default_rng(8).standard_normal(6) + 1)
    norm.beta.assign(np.random.default_rng(9).standard_normal(6))
    results = []
    for fn in (lambda x: norm(x), lambda x: layer_norm(x, norm.gamma, norm.beta, norm.epsilon,
                                                       per_channel=groups == -1)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(tf.cast(y, "float32" if dtype == "float16" else dtype)
                                 * tf.cast(weights, "float32" if dtype == "float16" else dtype))
        results.append([y] + tape.gradient(loss, [x, norm.gamma, norm.beta]))
    # float64: round-off (measured 5e-16). float32 and float16 inputs (computed in
    # float32 inside): the two formulas' operation order, measured at most 4.6e-7
    # with oneDNN on and off (2026-12-03); 1e-5 leaves room for other CPUs.
    tolerance = {"float64": 1e-12, "float32": 1e-5, "float16": 1e-5}[dtype]
    for ours, keras_value in zip(results[1], results[0]):
        assert ours.dtype == keras_value.dtype
        assert relative_error(ours, keras_value) <= tolerance
