"""i-RevNet as in Jacobsen's thesis: the block of eq. (39), the injective variant, the presets."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic.models import IRevNet, get_preset
from keras_hyperbolic.layers.channel_zero_padding import ChannelZeroPadding
from keras_hyperbolic.layers.irevnet_block import IRevNetBlock
from keras_hyperbolic.ops.pixel_shuffle import squeeze
from layer_testing import (
    assert_backward_matches_autodiff,
    relative_error,
    run_invertible_layer_test,
)


def _perturb(model, seed=0):
    # Move away from the initialisation so inversion checks are not trivial.
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v.numpy() + 0.2 * rng.standard_normal(v.shape).astype(v.dtype))


# === IRevNetBlock ===


@pytest.mark.parametrize(
    "kwargs, shape, dtype",
    [
        ({"rank": 2, "stride": 1}, (2, 4, 4, 8), "float32"),
        ({"rank": 2, "stride": 2, "normalization": "layer"}, (2, 4, 6, 4), "float64"),
        ({"rank": 1, "stride": 2, "kernel_size": 5}, (2, 8, 6), "float32"),
        ({"rank": 3, "stride": 2, "hidden_channels": 3}, (2, 2, 4, 2, 2), "float32"),
    ],
)
def test_block_battery(kwargs, shape, dtype):
    run_invertible_layer_test(IRevNetBlock, kwargs, shape, dtype=dtype)


@pytest.mark.parametrize("stride", [1, 2])
def test_block_is_equation_39(stride):
    # x_next = S x~ and x~_next = S x + F(x~): each half squeezed on its own.
    block = IRevNetBlock(rank=2, stride=stride, dtype="float64")
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 6))
    y = block(x).numpy()
    x1, x2 = tf.constant(x[..., :3]), tf.constant(x[..., 3:])
    s = (lambda t: squeeze(t, 2)) if stride == 2 else (lambda t: t)
    half = y.shape[-1] // 2
    np.testing.assert_array_equal(y[..., :half], s(x2).numpy())
    f = block.bottleneck(x2).numpy()
    np.testing.assert_allclose(y[..., half:], s(x1).numpy() + f, rtol=1e-12, atol=1e-12)
    # F never sees x: changing x leaves x_next and F alone.
    x_other = x.copy()
    x_other[..., :3] += 1.0
    np.testing.assert_array_equal(block(x_other).numpy()[..., :half], y[..., :half])


def test_block_bottleneck_is_pre_activation_1_3_1_with_a_quarter_of_the_channels():
    block = IRevNetBlock(rank=2, stride=2)
    block.build((None, 8, 8, 32))  # halves of 16; down-sampled output half: 64 channels
    kernels = [tuple(conv.kernel.shape) for conv in block.convs]
    assert kernels == [(1, 1, 16, 16), (3, 3, 16, 16), (1, 1, 16, 64)]
    assert [conv.strides for conv in block.convs] == [(1, 1), (2, 2), (1, 1)]
    assert all(isinstance(n, keras.layers.BatchNormalization) for n in block.norms)
    assert [n.gamma.shape[0] for n in block.norms] == [16, 16, 16]  # before each conv
    assert not any(conv.use_bias for conv in block.convs)  # BN's beta is the bias


@pytest.mark.parametrize("stride", [1, 2])
def test_block_fused_backward_matches_autodiff(stride):
    block = IRevNetBlock(rank=2, stride=stride)
    x = np.random.default_rng(2).standard_normal((3, 4, 4, 8)).astype("float32")
    assert_backward_matches_autodiff(block, x, tolerance=1e-5)


def test_block_invalid_arguments():
    for stride in (0, 3, True, "2"):
        with pytest.raises(ValueError, match="stride"):
            IRevNetBlock(rank=2, stride=stride)
    with pytest.raises(ValueError, match="normalization"):
        IRevNetBlock(rank=2, normalization="weight")
    with pytest.raises(ValueError, match="even"):
        IRevNetBlock(rank=2)(np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="divisible by 2"):
        IRevNetBlock(rank=2, stride=2)(np.zeros((1, 4, 5, 4), "float32"))


# === Zero padding (the injective input operator) ===


def test_channel_zero_padding_is_a_left_inverse():
    layer = ChannelZeroPadding(8)
    x = np.random.default_rng(3).standard_normal((2, 3, 3, 3)).astype("float32")
    y = layer(x).numpy()
    assert y.shape == (2, 3, 3, 8)
    np.testing.assert_array_equal(y[..., :5], 0.0)
    np.testing.assert_array_equal(y[..., 5:], x)
    np.testing.assert_array_equal(layer.inverse(y), x)
    assert ChannelZeroPadding.from_config(layer.get_config()).channels == 8
    with pytest.raises(ValueError, match="fewer than `channels`=8"):
        ChannelZeroPadding(8)(np.zeros((1, 2, 2, 8), "float32"))


# === The model ===


def _injective(**kwargs):
    return IRevNet(num_classes=3, input_shape=(8, 8, 2), stages=(1, 2), injective=True,
                   **kwargs)


@pytest.mark.parametrize("training", [False, True])
def test_injective_irevnet_rebuilds_x_from_twice_as_many_features(training):
    model = _injective()
    _perturb(model)
    x = np.random.default_rng(4).random((2, 8, 8, 2)).astype("float32")
    features = model.features(x, training=training)
    assert np.prod(features.shape[1:]) == 2 * np.prod(x.shape[1:])
    assert model.feature_shape == tuple(features.shape[1:])
    rebuilt = model.inverse(features, training=training)
    assert relative_error(rebuilt, x) <= 1e-5
    # Not trivially: the padded zeros have been mixed into the features.
    assert np.abs(features.numpy()).min() > 0


def test_bijective_irevnet_keeps_the_dimension_and_inverts():
    model = IRevNet(num_classes=3, input_shape=(8, 8, 1), stages=(1, 1), strides=(2, 2))
    _perturb(model)
    x = np.random.default_rng(5).random((2, 8, 8, 1)).astype("float32")
    features = model.features(x)
    assert features.shape == (2, 1, 1, 64)
    assert relative_error(model.inverse(features), x) <= 1e-5


def test_memory_efficient_gradients_equal_plain_autodiff():
    x = np.random.default_rng(6).random((2, 8, 8, 2)).astype("float32")
    y = np.array([0, 2])
    grads = {}
    for efficient in (True, False):
        keras.utils.set_random_seed(7)
        model = _injective(memory_efficient=efficient)
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(
                y, model(x, training=True), from_logits=True)
        grads[efficient] = tape.gradient(loss, model.trainable_variables)
    for a, b in zip(grads[True], grads[False]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_injective_save_load(tmp_path):
    model = _injective(stem_channels=12)
    x = np.random.default_rng(8).random((2, 8, 8, 2)).astype("float32")
    _perturb(model)
    path = os.path.join(tmp_path, "irevnet.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == model.get_config()
    assert loaded.injective and loaded.stem_channels == 12
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert relative_error(loaded.inverse(loaded.features(x)), x) <= 1e-5


def test_model_invalid_arguments():
    with pytest.raises(ValueError, match="strides"):
        IRevNet(num_classes=2, input_shape=(8, 8, 1), stages=(1, 1), strides=(2,))
    with pytest.raises(ValueError, match="strides"):
        IRevNet(num_classes=2, input_shape=(8, 8, 1), stages=(1,), strides=(3,))
    with pytest.raises(ValueError, match="init_squeeze"):
        IRevNet(num_classes=2, input_shape=(8, 8, 1), stages=(1,), init_squeeze=3)
    with pytest.raises(ValueError, match="stem_channels"):
        IRevNet(num_classes=2, input_shape=(8, 8, 1), stages=(1,), stem_channels=8)
    with pytest.raises(ValueError, match="stem_channels"):
        IRevNet(num_classes=2, input_shape=(8, 8, 1), stages=(1,), injective=True,
                stem_channels=3)
    with pytest.raises(ValueError, match="stem_channels"):
        IRevNet(num_classes=2, input_shape=(8, 8, 1), stages=(1,), injective=True,
                stem_channels=7)
    with pytest.raises(ValueError, match="stages"):
        IRevNet(num_classes=2, input_shape=(8, 8, 1), stages=(1, 0))
    with pytest.raises(ValueError, match=r"size 16.*divisible by 32"):
        IRevNet(num_classes=2, input_shape=(16, 16, 3), stages=(1, 1, 1, 1),
                strides=(1, 2, 2, 2), init_squeeze=4)


# === Presets: Jacobsen's thesis, Table 9 ===

# (trainable, count_params()) as built; count_params also counts the batch
# norms' moving statistics. The thesis (Table 9) gives 181M for (a), 29M for (b):
# (b) matches; (a) does not (see docs/papers.md).
PRESET_COUNTS = {
    "irevnet_a": (48_352_456, 48_412_264),
    "irevnet_b": (29_201_104, 29_319_820),
}


@pytest.mark.parametrize("name", sorted(PRESET_COUNTS))
def test_thesis_presets_parameter_counts(name):
    preset = get_preset(name)
    assert preset["input_shape"] == (224, 224, 3)
    # The count does not depend on the spatial size: build at 32 x 32.
    model = IRevNet.from_preset(name, input_shape=(32, 32, 3))
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert (trainable, model.count_params()) == PRESET_COUNTS[name]
    channels = {"irevnet_a": 2 * 3072, "irevnet_b": 2 * 1536}[name]
    assert model.feature_shape == (1, 1, channels)
    assert model.injective == (name == "irevnet_a")


def test_thesis_presets_structure():
    a, b = get_preset("irevnet_a")["config"], get_preset("irevnet_b")["config"]
    # (a): 56 layers (18 blocks of 3, plus input operator and head), 48 -> 96 channels.
    assert 3 * sum(a["stages"]) == 54 and a["init_squeeze"] == 4 and a["stem_channels"] == 96
    assert get_preset("irevnet_a")["input_shape"][-1] * 4**2 == 48  # 4x4 squeeze of RGB
    # (b): 300 layers (100 blocks), down-sampling at depths 3j = 3, 21, 69, 285.
    assert 3 * sum(b["stages"]) == 300 and not b.get("injective", False)
    starts = np.cumsum((0,) + b["stages"][:-1]) + 1
    assert list(3 * starts) == [3, 21, 69, 285]
    starts = np.cumsum((0,) + a["stages"][:-1]) + 1
    assert list(3 * starts[1:]) == [15, 27, 45]


def test_preset_of_another_model_is_refused():
    with pytest.raises(ValueError, match="HyperbolicSegmenter"):
        IRevNet.from_preset("tiny_2d")
