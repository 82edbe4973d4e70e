"""AdditiveCoupling, AffineCoupling and their built-in ResidualFunction."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic.layers import AdditiveCoupling, AffineCoupling, ResidualFunction
from keras_hyperbolic.reversible import match_gradients
from layer_testing import (
    assert_backward_matches_autodiff,
    autodiff_log_det,
    relative_error,
    run_invertible_layer_test,
)


# === Standard battery ===
@pytest.mark.parametrize(
    "cls, kwargs, shape, dtype",
    [
        (AdditiveCoupling, {"rank": 1}, (2, 7, 6), "float64"),
        (AdditiveCoupling, {"rank": 2, "normalization": "layer"}, (2, 5, 6, 6), "float32"),
        (
            AdditiveCoupling,
            {"rank": 3, "normalization": "none", "use_g": False, "activation": "tanh"},
            (2, 3, 4, 2, 2),
            "float32",
        ),
        (AffineCoupling, {"rank": 1, "normalization": "instance"}, (2, 7, 6), "float64"),
        (AffineCoupling, {"rank": 3, "hidden_channels": 4}, (2, 3, 2, 4, 2), "float32"),
        (AffineCoupling, {"rank": 2, "updated_half": "first"}, (2, 4, 3, 6), "float64"),
    ],
)
def test_battery(cls, kwargs, shape, dtype):
    run_invertible_layer_test(cls, kwargs, shape, dtype=dtype)


def test_battery_user_functions():
    # User layers as F and G, serialised with the block.
    kwargs = {
        "rank": 2,
        "f": keras.layers.Conv2D(3, 3, padding="same", activation="tanh"),
        "g": keras.layers.Dense(3, activation="relu"),
    }
    layer = run_invertible_layer_test(AdditiveCoupling, kwargs, (2, 4, 5, 6))
    assert layer.f is kwargs["f"] and layer.g is kwargs["g"]
    config = layer.get_config()
    assert config["f"]["class_name"] == "Conv2D"
    clone = AdditiveCoupling.from_config(config)
    assert isinstance(clone.g, keras.layers.Dense)


def test_battery_affine_user_network():
    network = keras.layers.Conv1D(4, 3, padding="same")
    run_invertible_layer_test(AffineCoupling, {"rank": 1, "network": network}, (2, 6, 4))


# === Log-determinants ===
@pytest.mark.parametrize("rank, shape", [(1, (2, 5, 4)), (2, (2, 3, 2, 4))])
def test_additive_log_det_is_slogdet(rank, shape):
    layer = AdditiveCoupling(rank=rank, dtype="float64")
    x = np.random.default_rng(1).standard_normal(shape)
    layer(x)
    sign, log_det = autodiff_log_det(layer, x)
    assert sign == 1.0
    np.testing.assert_allclose(layer.log_det_jacobian(x).numpy(), [log_det] * 2, atol=1e-4)
    assert abs(log_det) < 1e-10


@pytest.mark.parametrize("rank, shape", [(1, (2, 5, 4)), (2, (2, 3, 2, 4)), (3, (2, 2, 2, 1, 4))])
def test_affine_log_det_is_slogdet(rank, shape):
    layer = AffineCoupling(rank=rank, normalization="layer", dtype="float64")
    x = np.random.default_rng(2).standard_normal(shape)
    ldj = layer.log_det_jacobian(x).numpy()
    _, log_det = autodiff_log_det(layer, x)
    assert abs(ldj[0]) > 1e-2  # a non-trivial scale
    assert abs(ldj[0] - log_det) <= 1e-4
    y, ldj_fused = layer.forward_and_log_det(x)
    np.testing.assert_allclose(ldj_fused.numpy(), ldj, rtol=1e-12)
    np.testing.assert_allclose(y.numpy(), layer(x).numpy(), rtol=1e-12)


def test_affine_first_half_is_the_second_with_the_halves_swapped():
    """`updated_half="first"` is the default block conjugated by swapping the halves."""
    first = AffineCoupling(rank=1, updated_half="first", dtype="float64")
    second = AffineCoupling(rank=1, dtype="float64")
    x = np.random.default_rng(4).standard_normal((2, 5, 4))
    first(x), second(x)
    second.set_weights(first.get_weights())

    def swap(a):  # the two channel halves exchanged
        return np.concatenate(np.split(np.asarray(a), 2, axis=-1)[::-1], axis=-1)

    y = first(x).numpy()
    np.testing.assert_allclose(y, swap(second(swap(x))), rtol=1e-12)
    assert np.array_equal(y[..., 2:], x[..., 2:]) and not np.allclose(y[..., :2], x[..., :2])
    np.testing.assert_allclose(first.log_det_jacobian(x), second.log_det_jacobian(swap(x)),
                               rtol=1e-12)
    assert AffineCoupling.from_config(first.get_config()).updated_half == "first"


# === Fused backward ===
# float32 tolerance: see FLOAT32_BACKWARD_RTOL in layer_testing.py (measured with
# oneDNN on and off); float64 is exact to round-off on both paths.
@pytest.mark.parametrize(
    "cls, kwargs, shape",
    [
        (AdditiveCoupling, {"rank": 1}, (3, 6, 4)),
        (AdditiveCoupling, {"rank": 2, "normalization": "layer"}, (2, 4, 3, 6)),
        (AdditiveCoupling, {"rank": 3, "use_g": False}, (2, 3, 2, 2, 2)),
        (AffineCoupling, {"rank": 1}, (3, 6, 4)),
        (AffineCoupling, {"rank": 2}, (2, 4, 3, 6)),
        (AffineCoupling, {"rank": 3, "normalization": "none"}, (2, 3, 2, 2, 2)),
        (AffineCoupling, {"rank": 2, "updated_half": "first"}, (2, 4, 3, 6)),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_backward_matches_autodiff(cls, kwargs, shape, dtype):
    # BatchNormalization (the default) in training mode uses batch statistics.
    layer = cls(dtype=dtype, **kwargs)
    x = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    assert_backward_matches_autodiff(layer, x)


def test_fused_backward_inside_tf_function():
    layer = AdditiveCoupling(rank=2)
    x = tf.random.normal((2, 4, 4, 4))
    y = layer(x, training=True)
    dy = tf.random.normal(y.shape)
    eager = layer.backward(y, dy, training=True)
    traced = tf.function(lambda a, b: layer.backward(a, b, training=True))(y, dy)
    assert relative_error(traced[1], eager[1]) <= 1e-6
    for (_, a), (_, b) in zip(traced[2], eager[2]):
        assert relative_error(a, b) <= 1e-6


def test_affine_backward_with_log_det_gradient():
    layer = AffineCoupling(rank=1, normalization="layer")
    x = tf.random.normal((3, 6, 4))
    y, _ = layer.forward_and_log_det(x)
    dy = tf.random.normal(y.shape)
    dlog_det = tf.constant([0.5, -1.0, 2.0])
    variables = layer.trainable_variables
    with tf.GradientTape() as tape:
        tape.watch(x)
        y_ref, ldj = layer.forward_and_log_det(x)
        objective = tf.reduce_sum(y_ref * dy) + tf.reduce_sum(ldj * dlog_det)
    reference = tape.gradient(objective, [x] + variables)
    _, dx, pairs = layer.backward(y, dy, training=False, dlog_det=dlog_det)
    assert relative_error(dx, reference[0]) <= 1e-5
    for g, r in zip(match_gradients(variables, pairs), reference[1:]):
        assert relative_error(g, r) <= 1e-5


# === Deep stacks and initialisation ===
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("float64", 1e-10)])
def test_64_block_stack_round_trip(dtype, tolerance):
    blocks = [AdditiveCoupling(rank=2, hidden_channels=4, dtype=dtype) for _ in range(64)]
    x = tf.constant(np.random.default_rng(4).standard_normal((2, 6, 5, 4)), dtype=dtype)
    y = x
    for block in blocks:
        y = block(y)
    assert relative_error(y, x) > 1e-2  # the stack does something
    for block in reversed(blocks):
        y = block.inverse(y)
    assert relative_error(y, x) <= tolerance


@pytest.mark.parametrize("normalization", ["batch", "layer", "none"])
def test_zero_init_is_identity(normalization):
    layer = AdditiveCoupling(rank=2, zero_init=True, normalization=normalization, activation="sigmoid")
    x = np.random.default_rng(5).standard_normal((2, 4, 4, 4)).astype("float32")
    np.testing.assert_array_equal(layer(x, training=True).numpy(), x)
    affine = AffineCoupling(rank=2, zero_init=True, normalization=normalization)
    np.testing.assert_array_equal(affine(x).numpy(), x)
    np.testing.assert_array_equal(affine.log_det_jacobian(x).numpy(), [0.0, 0.0])
    # Still trainable: the last convolution gets a gradient.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) ** 2)
    grad = tape.gradient(loss, layer.f.conv2.kernel)
    assert float(tf.norm(grad)) > 0


# === Errors ===
def test_odd_channels_raise():
    with pytest.raises(ValueError, match=r"even.*\(2, 4, 4, 5\)"):
        AdditiveCoupling(rank=2)(np.zeros((2, 4, 4, 5), "float32"))
    with pytest.raises(ValueError, match=r"even.*\(2, 4, 3\)"):
        AffineCoupling(rank=1)(np.zeros((2, 4, 3), "float32"))


def test_wrong_input_rank_raises():
    with pytest.raises(ValueError, match="rank 4"):
        AdditiveCoupling(rank=2)(np.zeros((2, 4, 4), "float32"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 4}, "rank"),
        ({"rank": 0}, "rank"),
        ({"rank": 2, "normalization": "group"}, "normalization"),
        ({"rank": 2, "kernel_size": 0}, "kernel_size"),
        ({"rank": 2, "hidden_channels": -1}, "hidden_channels"),
        ({"rank": 2, "init_scale": -0.1}, "init_scale"),
        ({"rank": 2, "init_scale": float("nan")}, "init_scale"),
        ({"rank": 2, "activation": "no_such_activation"}, "activation"),
        ({"rank": 2, "g": keras.layers.Dense(2), "use_g": False}, "use_g"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdditiveCoupling(**kwargs)


def test_invalid_functions():
    with pytest.raises(TypeError, match="`f`"):
        AdditiveCoupling(rank=2, f=lambda x: x)
    with pytest.raises(ValueError, match="`f`"):
        AdditiveCoupling(rank=2, f=keras.layers.Conv2D(5, 3, padding="same"))(
            np.zeros((1, 4, 4, 4), "float32")
        )
    with pytest.raises(ValueError, match="`network`"):
        AffineCoupling(rank=2, network=keras.layers.Conv2D(3, 3, padding="same"))(
            np.zeros((1, 4, 4, 4), "float32")
        )
    for bound in (0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="scale_bound"):
            AffineCoupling(rank=2, scale_bound=bound)


# === ResidualFunction ===
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_residual_function(rank):
    shape = (2,) + (4, 3, 2)[:rank] + (3,)
    f = ResidualFunction(rank=rank, filters=5, hidden_channels=7, normalization="layer")
    y = f(np.random.default_rng(7).standard_normal(shape).astype("float32"))
    assert tuple(y.shape) == shape[:-1] + (5,)
    assert tuple(y.shape) == f.compute_output_shape(shape)
    assert f.conv1.kernel.shape == (3,) * rank + (3, 7)
    assert f.conv1.bias is None  # the normalisation's beta is the bias
    clone = ResidualFunction.from_config(f.get_config())
    assert clone.get_config() == f.get_config()
    zero = ResidualFunction(rank=rank, zero_init=True)
    np.testing.assert_array_equal(zero(np.ones(shape, "float32")).numpy(), 0.0)
    with pytest.raises(ValueError, match="inputs"):
        ResidualFunction(rank=rank)(np.zeros((2, 3), "float32"))


def test_affine_updated_half_is_first_or_second():
    with pytest.raises(ValueError, match=r"`updated_half`.*Received: updated_half='third'"):
        AffineCoupling(rank=2, updated_half="third")
