"""HyperbolicSegmenter, InvertibleUNet, IRevNet and BaselineUNet: save/load, inversion,
memory-efficient gradients equal plain autodiff, one fit epoch, and the argument errors."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic.models import (
    BaselineUNet,
    HyperbolicSegmenter,
    InvertibleUNet,
    IRevNet,
    get_preset,
)


def _segmenter(rank=2, **kwargs):
    config = dict(num_classes=2, rank=rank, width=4, units=[(1, "down"), (1, "up"), (1, None)],
                  h=0.5, hidden_channels=4)
    config.update(kwargs)
    return HyperbolicSegmenter(**config)


MODELS = {
    "segmenter_2d_haar": (lambda **kw: _segmenter(2, **kw), (2, 8, 8, 3)),
    "segmenter_3d_learnable": (lambda **kw: _segmenter(3, pooling="learnable", **kw), (1, 4, 4, 4, 2)),
    "segmenter_2d_orthogonal": (lambda **kw: _segmenter(2, pooling="orthogonal", **kw), (2, 8, 8, 3)),
    "segmenter_2d_head": (lambda **kw: _segmenter(2, head_channels=6, **kw), (2, 8, 8, 3)),
    "iunet_2d": (lambda **kw: InvertibleUNet(rank=2, channels=4, levels=2, blocks_per_level=1,
                                             project_input=True, output_channels=2, **kw),
                 (2, 8, 8, 3)),
    "iunet_3d": (lambda **kw: InvertibleUNet(rank=3, channels=8, levels=2, blocks_per_level=1,
                                             output_channels=2, **kw), (1, 4, 4, 4, 8)),
    "irevnet_2d": (lambda **kw: IRevNet(num_classes=3, input_shape=(8, 8, 1), stages=(1, 1),
                                        normalization="layer", **kw), (2, 8, 8, 1)),
}


def _perturb(model, seed=0):
    # Move away from the identity initialisation so the checks are not trivial.
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v.numpy() + 0.2 * rng.standard_normal(v.shape).astype("float32"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_identical_predictions(name, tmp_path):
    make, shape = MODELS[name]
    model = make()
    x = np.random.default_rng(1).random(shape).astype("float32")
    model(x)
    _perturb(model)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_memory_efficient_gradients_equal_plain(name):
    make, shape = MODELS[name]
    x = tf.constant(np.random.default_rng(2).random(shape).astype("float32"))
    grads = {}
    weights = None
    for efficient in (True, False):
        keras.utils.set_random_seed(3)
        model = make(memory_efficient=efficient)
        model(x)
        if weights is None:
            _perturb(model)
            weights = [v.numpy() for v in model.weights]
        else:
            for v, w in zip(model.weights, weights):
                v.assign(w)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(model(x, training=True)))
        grads[efficient] = [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
    assert len(grads[True]) == len(grads[False]) > 0
    for a, b in zip(grads[True], grads[False]):
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("pooling", ["haar", "learnable", "orthogonal"])
def test_full_segmenter_gradients_equal_plain_float64(pooling, mode):
    # The whole `lensink_video` layout at a small size (two input Haar steps,
    # two pair un-poolings, leapfrog blocks with layer norm), stem and head
    # included: the engine's gradients of every weight and of the input equal
    # plain autodiff's to round-off in float64 (measured about 1e-15).
    config = dict(get_preset("lensink_video")["config"], width=2, pooling=pooling,
                  units=[(2, "up"), (2, "up"), (2, None)], h=0.5)
    x = tf.constant(np.random.default_rng(4).standard_normal((1, 8, 8, 8, 3)))
    grads = {}
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        for efficient in (False, True):
            keras.utils.set_random_seed(5)
            model = HyperbolicSegmenter(num_classes=2, memory_efficient=efficient, **config)
            model(x)
            if not efficient:
                weights = []
                for v in model.trainable_variables:  # away from the identity start
                    v.assign(v + 0.3 * tf.random.stateless_normal(v.shape, (len(weights), 1), dtype=v.dtype))
                    weights.append(v.numpy())
            else:
                for v, w in zip(model.trainable_variables, weights):
                    v.assign(w)

            def step(x, model=model):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = model(x, training=True)
                    w = tf.reshape(tf.cos(tf.range(tf.size(y), dtype=y.dtype)), tf.shape(y))
                    loss = tf.reduce_sum(w * y * y)
                return tape.gradient(loss, [x] + model.trainable_variables)

            grads[efficient] = (tf.function(step) if mode == "function" else step)(x)
    finally:
        keras.config.set_dtype_policy(previous)
    assert len(grads[True]) == len(grads[False]) > 2
    for index, (a, b) in enumerate(zip(grads[True], grads[False])):
        assert a.dtype == tf.float64
        error = float(tf.norm(a - b) / (tf.norm(b) + 1e-300))
        assert error <= 1e-10, f"gradient {index}: relative error {error:.3g}"


@pytest.mark.parametrize("name", ["segmenter_3d_learnable", "iunet_3d", "irevnet_2d"])
def test_invertible_core_round_trip(name):
    make, shape = MODELS[name]
    model = make()
    x = np.random.default_rng(4).random(shape).astype("float32")
    model(x)
    _perturb(model)
    if isinstance(model, HyperbolicSegmenter):
        pair = model.opened_pair(x)
        rebuilt = model.hyperbolic.inverse(model.hyperbolic(pair))
        reference = pair
    elif isinstance(model, InvertibleUNet):
        rebuilt, reference = model.inverse(model.forward_invertible(x)), x
    else:
        rebuilt, reference = model.inverse(model.features(x)), x
    error = np.linalg.norm(rebuilt - reference) / np.linalg.norm(reference)
    assert error <= 1e-4, error


def test_iunet_starts_as_identity():
    net = InvertibleUNet(rank=2, channels=8, levels=3, blocks_per_level=1)
    x = np.random.default_rng(5).random((1, 16, 16, 8)).astype("float32")
    np.testing.assert_allclose(net(x), x, atol=1e-5)


@pytest.mark.parametrize("name", ["segmenter_3d_learnable", "iunet_2d", "irevnet_2d"])
def test_one_fit_epoch(name):
    make, shape = MODELS[name]
    model = make()
    rng = np.random.default_rng(6)
    x = rng.random(shape).astype("float32")
    if isinstance(model, IRevNet):
        y = rng.integers(0, 3, size=shape[0])
    else:
        y = rng.integers(0, 2, size=shape[:-1])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [v.numpy().copy() for v in model.trainable_variables] if model.built else None
    history = model.fit(x, y, epochs=1, batch_size=shape[0], verbose=0)
    assert np.isfinite(history.history["loss"][0])
    if before is not None:
        assert any(not np.allclose(a, v.numpy()) for a, v in zip(before, model.trainable_variables))


def test_unet_baseline_save_load_and_fit(tmp_path):
    unet = BaselineUNet(num_classes=2, rank=3, filters=2, levels=1)
    x = np.random.default_rng(7).random((1, 4, 4, 4, 2)).astype("float32")
    y = (x[..., 0] > 0.5).astype("int32")
    unet.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    unet.fit(x, y, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "unet.keras")
    unet.save(path)
    np.testing.assert_array_equal(unet.predict(x, verbose=0),
                                  keras.models.load_model(path).predict(x, verbose=0))


# === Argument errors ===


def test_indivisible_input_size_names_size_and_multiple():
    model = _segmenter(2, units=[(1, "down"), (1, "down"), (1, "up"), (1, "up")])
    with pytest.raises(ValueError, match=r"size 10.*divisible by 4"):
        model.build((None, 10, 8, 3))
    with pytest.raises(ValueError, match=r"size 6.*divisible by 4"):
        model(np.zeros((1, 8, 6, 3), "float32"))
    with pytest.raises(ValueError, match=r"size 5.*divisible by 2"):
        InvertibleUNet(rank=2, channels=4, levels=2).build((None, 5, 8, 4))
    with pytest.raises(ValueError, match=r"size 12.*divisible by 8"):
        IRevNet(num_classes=2, input_shape=(12, 16, 1), stages=(1, 1, 1))
    with pytest.raises(ValueError, match=r"size 6.*divisible by 4"):
        BaselineUNet(num_classes=2, rank=2, levels=2).build((None, 6, 8, 1))


def test_input_pooling_levels_count_in_the_multiple():
    model = HyperbolicSegmenter.from_preset("lensink_video", num_classes=2)
    assert model.input_multiple == 4
    with pytest.raises(ValueError, match=r"size 18.*divisible by 4"):
        model.build((None, 16, 16, 18, 6))


@pytest.mark.parametrize("num_classes", [0, -1, 1.5, True])
def test_num_classes_below_one(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        _segmenter(num_classes=num_classes)
    with pytest.raises(ValueError, match="num_classes"):
        IRevNet(num_classes=num_classes, input_shape=(8, 8, 1), stages=(1,))
    with pytest.raises(ValueError, match="num_classes"):
        BaselineUNet(num_classes=num_classes)


def test_unknown_pooling():
    with pytest.raises(ValueError, match="pooling.*'max'"):
        _segmenter(pooling="max")


@pytest.mark.parametrize(
    "units",
    [
        [(1, "down"), (1, None)],                      # down without up
        [(1, "up"), (1, "down")],                      # up before any down
        [(1, "down"), (1, "up"), (1, "up")],           # more ups
        [(1, "sideways")],                             # unknown direction
        [],                                            # empty
        "down",
    ],
)
def test_unbalanced_or_malformed_units(units):
    with pytest.raises(ValueError, match="units"):
        _segmenter(units=units)


def test_units_balanced_by_input_pooling_levels():
    model = _segmenter(2, units=[(1, "up"), (1, None)], input_pooling_levels=1)
    assert model(np.zeros((1, 8, 8, 3), "float32")).shape == (1, 8, 8, 2)


def test_hidden_channels_per_unit_reach_each_units_blocks_and_round_trip_the_config():
    model = _segmenter(2, hidden_channels=[8, None, 3])
    model.build((None, 8, 8, 3))
    hidden = [b.hidden_channels for b in model.hyperbolic.blocks if hasattr(b, "hidden_channels")]
    assert hidden == [8, None, 3]
    clone = HyperbolicSegmenter.from_config(model.get_config())
    clone.build((None, 8, 8, 3))
    assert clone.count_params() == model.count_params()


def test_head_channels_make_a_nonlinear_closing_head():
    linear, head = _segmenter(2), _segmenter(2, head_channels=6)
    x = np.random.default_rng(6).random((1, 8, 8, 3)).astype("float32")
    assert head(x).shape == linear(x).shape == (1, 8, 8, 2)
    # 1x1 conv to 6 channels (4 + 4 pair channels in, 6 biases), ReLU, 1x1 conv to the classes.
    assert head.count_params() - linear.count_params() == (8 * 6 + 6 + 6 * 2 + 2) - (8 * 2 + 2)
    assert [layer.name for layer in head.closing.layers] == ["closing_hidden", "closing_logits"]
    assert head.closing.layers[0].activation is keras.activations.relu


@pytest.mark.parametrize("head", [0, -3, 2.5, "32", True])
def test_bad_head_channels_name_the_argument(head):
    with pytest.raises(ValueError, match="head_channels"):
        _segmenter(head_channels=head)


@pytest.mark.parametrize("hidden", [[4, 4], [4, 0, 4], [4, "4", 4], [4, True, 4], 0])
def test_bad_hidden_channels_name_the_argument(hidden):
    with pytest.raises(ValueError, match="hidden_channels"):
        _segmenter(hidden_channels=hidden)


def test_iunet_channels_must_split():
    with pytest.raises(ValueError, match="channels"):
        InvertibleUNet(rank=3, channels=6, levels=2)  # 6 * 1/4 is not whole


def test_presets_are_table_2():
    for name in ("lensink_video", "lensink_hyperspectral"):
        preset = get_preset(name)
        config = preset["config"]
        assert sum(n for n, _ in config["units"]) == 19
        assert config["input_pooling_levels"] == 2 and config["kernel_size"] == 3
        assert config["rank"] == 3 and config["pooling"] == "haar"
    # Table 2 (video): 384 channels at 60x106x18, 48 at 120x212x36, 6 at full size.
    model = HyperbolicSegmenter.from_preset("lensink_video", num_classes=2)
    full = get_preset("lensink_video")["input_shape"]
    shape = (1,) + full[:-1] + (model.width,)
    for layer in model.input_pooling:
        shape = tuple(layer.compute_output_shape(shape))
    assert shape == (1, 60, 106, 18, 384)
    pair = shape[:-1] + (2 * 384,)
    assert tuple(model.hyperbolic.compute_output_shape(pair)) == (1, 240, 424, 72, 12)
    with pytest.raises(ValueError, match="preset"):
        get_preset("nope")


# === Input checks (before any work: not Keras's errors from the first convolution) ===

_CHECKED = {
    "segmenter": lambda: _segmenter(2),
    "iunet_projected": lambda: InvertibleUNet(rank=2, channels=4, levels=2, blocks_per_level=1,
                                              project_input=True, output_channels=2),
    "iunet": lambda: InvertibleUNet(rank=2, channels=4, levels=2, blocks_per_level=1),
}
_BUILT_CHANNELS = {"segmenter": 3, "iunet_projected": 3, "iunet": 4}


@pytest.mark.parametrize("name", sorted(_CHECKED))
def test_wrong_channel_count_names_inputs_and_expected_channels(name):
    model = _CHECKED[name]()
    c = _BUILT_CHANNELS[name]
    model(np.zeros((1, 8, 8, c), "float32"))
    wrong = np.zeros((1, 8, 8, c + 1), "float32")
    message = rf"`inputs`.*expected {c} channels.*inputs.shape=\(1, 8, 8, {c + 1}\)"
    with pytest.raises(ValueError, match=message) as info:
        model(wrong)
    assert "opening" not in str(info.value) and "projection" not in str(info.value)
    with pytest.raises(ValueError, match=message):
        tf.function(model)(tf.constant(wrong))
    # Symbolic (functional) calls use compute_output_spec, not call: checked there too.
    with pytest.raises(ValueError, match=rf"expected {c} channels.*\(None, 8, 8, {c + 1}\)"):
        model(keras.Input((8, 8, c + 1)))
    with pytest.raises(ValueError, match=r"`inputs`.*expected rank 4.*\(1, 8, 3\)"):
        model(np.zeros((1, 8, 3), "float32"))


@pytest.mark.parametrize("name", sorted(_CHECKED))
@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool"])
def test_non_float_inputs_raise_naming_the_dtype(name, dtype):
    model = _CHECKED[name]()
    x = np.ones((1, 8, 8, _BUILT_CHANNELS[name]), dtype)
    message = rf"`inputs`.*floating-point.*inputs.dtype={dtype}"
    with pytest.raises(TypeError, match=message) as info:
        model(x)  # unbuilt
    assert "kernel" not in str(info.value)
    with pytest.raises(TypeError, match=message):
        model(x)  # built by the first attempt; still not converted
    with pytest.raises(TypeError, match=message):
        model(keras.Input(x.shape[1:], dtype=dtype))


def test_float64_inputs_are_still_accepted_and_autocast():
    model = _segmenter(2)
    x = np.random.default_rng(0).random((1, 8, 8, 3))
    np.testing.assert_allclose(model(x).numpy(), model(x.astype("float32")).numpy(), atol=1e-6)


def test_iunet_forward_invertible_and_inverse_check_their_tensor():
    net = _CHECKED["iunet_projected"]()
    net(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match=r"`x`.*expected 4 channels.*x.shape=\(1, 8, 8, 3\)"):
        net.forward_invertible(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match=r"`y`.*expected 4 channels.*y.shape=\(1, 8, 8, 5\)"):
        net.inverse(np.zeros((1, 8, 8, 5), "float32"))
    with pytest.raises(TypeError, match=r"`y`.*y.dtype=int32"):
        net.inverse(np.zeros((1, 8, 8, 4), "int32"))
    y = net.forward_invertible(np.ones((1, 8, 8, 4), "float32"))
    np.testing.assert_allclose(net.inverse(y).numpy(), 1.0, atol=1e-5)
