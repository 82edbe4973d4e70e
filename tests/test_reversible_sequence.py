"""The memory-efficient engine: gradients equal plain autodiff's, everywhere it must run."""

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic import layers as khl
from keras_hyperbolic.reversible import ReversibleSequence

# float32 tolerances of memory-efficient vs plain-autodiff gradients, set from the
# spread measured on this CPU (2026-12-03) over every float32 gradient parity test
# of this file, run with TF_ENABLE_ONEDNN_OPTS=0 and =1:
# - stacks of one block type (eager, tf.function, XLA, poolings + nested stack,
#   MirroredStrategy): largest relative error 3.3e-6 with oneDNN off, 2.2e-6
#   with it on -> 1e-5;
# - the 7-layer flow with its log-det: 6.6e-7 (eager), and in tf.function
#   1.33e-5 with oneDNN off, 6.7e-6 with it on (seven layers of float32
#   round-off through two different graphs) -> 5e-5.
# In float64 the same tests agree to 5e-15 on both paths: checked at 1e-10.
FLOAT32_RTOL = 1e-5
FLOAT32_FLOW_RTOL = 5e-5


def _blocks(kind, rank, depth=3, dtype=None):
    """`depth` invertible layers of one kind, for a stack on 4 channels."""
    factories = {
        "additive": lambda: khl.AdditiveCoupling(rank=rank, hidden_channels=6, dtype=dtype),
        "additive_layer_norm": lambda: khl.AdditiveCoupling(
            rank=rank, normalization="layer", dtype=dtype
        ),
        "affine": lambda: khl.AffineCoupling(rank=rank, hidden_channels=6, dtype=dtype),
        "hyperbolic": lambda: khl.HyperbolicBlock(rank=rank, h=0.5, dtype=dtype),
        "invertible_conv": lambda: [
            khl.InvertibleConv1D, khl.InvertibleConv2D, khl.InvertibleConv3D
        ][rank - 1](kernel_size=3, dtype=dtype),
        "sneaky_relu": lambda: khl.SneakyReLU(dtype=dtype),
        "one_by_one": lambda: khl.Invertible1x1Conv(dtype=dtype),
    }
    return [factories[kind]() for _ in range(depth)]


def _input(rank, channels=4, batch=2, size=8, seed=0, dtype="float32"):
    shape = (batch,) + (size,) * (rank - 1) + (size + 2,) + (channels,)
    return tf.constant(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def _gradients(stack, x, mode="eager", training=True):
    weights = tf.reshape(tf.range(tf.size(x), dtype=x.dtype) % 7 - 3.0, tf.shape(x))

    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = stack(x, training=training)
            loss = tf.reduce_sum(tf.cast(y, x.dtype) ** 2 * tf.reshape(weights, tf.shape(y)))
        return tape.gradient(loss, [x] + stack.trainable_variables)

    if mode != "eager":
        step = tf.function(step, jit_compile=(mode == "xla"))
    return [np.asarray(g) for g in step()]


def _twin_stacks(kind, rank, depth=3, x=None):
    """The same stack twice (same initial weights), memory_efficient True and False.

    Blocks and stack take `x`'s dtype (float32 or float64).
    """
    dtype = x.dtype.name
    stacks = []
    for memory_efficient in (False, True):
        keras.utils.set_random_seed(7)
        stack = ReversibleSequence(
            _blocks(kind, rank, depth, dtype=dtype), memory_efficient=memory_efficient, dtype=dtype
        )
        stack.build(x.shape)
        stacks.append(stack)
    stacks[1].set_weights(stacks[0].get_weights())
    return stacks


def assert_gradients_close(reference, candidate, rtol):
    """Relative error of every gradient, with a floor of 1e-3 of the overall norm.

    The floor matters for gradients that are exactly zero in exact arithmetic
    (the bias of a convolution followed by batch normalisation), where any
    round-off is an infinite relative error.
    """
    assert len(reference) == len(candidate)
    total = np.sqrt(sum(np.sum(np.square(r, dtype=np.float64)) for r in reference))
    for index, (r, c) in enumerate(zip(reference, candidate)):
        error = np.linalg.norm(r - c) / (np.linalg.norm(r) + 1e-3 * total)
        assert error <= rtol, f"gradient {index}: relative error {error:.3g} > {rtol}"


_STRATEGY = None


def _mirrored():
    """One MirroredStrategy per test module, reducing on one device.

    Several collective-all-reduce MirroredStrategies in one process collide on
    TensorFlow's collective instance keys ("Shape mismatch in the collective
    instance"); ReductionToOneDevice computes the same sums without them.
    """
    global _STRATEGY
    if _STRATEGY is None:
        _STRATEGY = tf.distribute.MirroredStrategy(
            ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    return _STRATEGY


KINDS = ["additive", "additive_layer_norm", "affine", "hyperbolic", "invertible_conv",
         "sneaky_relu", "one_by_one"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_gradients_equal_plain_autodiff_eager(kind, rank):
    x = _input(rank)
    plain, efficient = _twin_stacks(kind, rank, x=x)
    assert_gradients_close(_gradients(plain, x), _gradients(efficient, x), rtol=FLOAT32_RTOL)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_equal_plain_autodiff_float64(kind, mode):
    # In float64 the engine is exact to round-off on every math path (oneDNN
    # on or off): the rebuilt activations and the fused VJPs agree to 1e-10.
    x = _input(2, dtype="float64")
    plain, efficient = _twin_stacks(kind, 2, x=x)
    assert_gradients_close(_gradients(plain, x, mode), _gradients(efficient, x, mode), rtol=1e-10)


@pytest.mark.parametrize("mode", ["function", "xla"])
@pytest.mark.parametrize("kind", ["additive", "affine", "hyperbolic", "invertible_conv"])
def test_gradients_equal_plain_autodiff_traced(kind, mode):
    x = _input(2)
    plain, efficient = _twin_stacks(kind, 2, x=x)
    assert_gradients_close(
        _gradients(plain, x, mode), _gradients(efficient, x, mode), rtol=FLOAT32_RTOL
    )


def test_gradients_with_poolings_and_nested_stack():
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 8, 12, 2)).astype("float32"))
    stacks = []
    for memory_efficient in (False, True):
        keras.utils.set_random_seed(3)
        inner = ReversibleSequence(
            [khl.AdditiveCoupling(rank=2), khl.AdditiveCoupling(rank=2)],
            memory_efficient=memory_efficient,
        )
        stack = ReversibleSequence(
            [
                khl.AdditiveCoupling(rank=2),
                khl.WaveletPooling2D(wavelet="learnable"),
                khl.AdditiveCoupling(rank=2),
                khl.OrthogonalPooling2D(),
                inner,
                khl.OrthogonalUnpooling2D(),
            ],
            memory_efficient=memory_efficient,
        )
        stack.build(x.shape)
        stacks.append(stack)
    stacks[1].set_weights(stacks[0].get_weights())
    assert_gradients_close(_gradients(stacks[0], x), _gradients(stacks[1], x), rtol=FLOAT32_RTOL)
    assert_gradients_close(
        _gradients(stacks[0], x, "function"), _gradients(stacks[1], x, "function"),
        rtol=FLOAT32_RTOL,
    )


def test_gradients_under_mirrored_strategy():
    strategy = _mirrored()
    x = _input(2, batch=4)
    results = []
    for memory_efficient in (False, True):
        with strategy.scope():
            keras.utils.set_random_seed(11)
            stack = ReversibleSequence(
                _blocks("additive", 2, 3) + _blocks("hyperbolic", 2, 2),
                memory_efficient=memory_efficient,
            )
            stack.build(x.shape)

        @tf.function
        def replica_step(batch):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(stack(batch, training=True) ** 2)
            return tape.gradient(loss, stack.trainable_variables)

        dataset = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(x).batch(4)
        )
        batch = next(iter(dataset))
        per_replica = strategy.run(replica_step, args=(batch,))
        grads = [strategy.reduce("SUM", g, axis=None).numpy() for g in per_replica]
        results.append((grads, stack.get_weights()))
    # Same starting weights: the seed was reset before each stack was built.
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)
    assert_gradients_close(results[0][0], results[1][0], rtol=FLOAT32_RTOL)


def test_fit_under_mirrored_strategy_matches_plain():
    strategy = _mirrored()
    x = _input(2, batch=8).numpy()
    target = np.random.default_rng(1).standard_normal(x.shape).astype("float32")
    weights = []
    for memory_efficient in (False, True):
        with strategy.scope():
            keras.utils.set_random_seed(5)
            inputs = keras.Input(x.shape[1:])
            outputs = ReversibleSequence(
                _blocks("additive", 2, 3), memory_efficient=memory_efficient
            )(inputs)
            model = keras.Model(inputs, outputs)
            model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        model.fit(x, target, batch_size=8, epochs=2, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_mixed_precision_keeps_stream_float32_and_matches_plain():
    keras.config.set_dtype_policy("mixed_float16")
    x = _input(2)
    plain, efficient = _twin_stacks("additive", 2, depth=4, x=x)
    y = efficient(x, training=True)
    assert y.dtype == tf.float32
    # F/G compute in float16, so a float32 round-off in the stream can flip a
    # float16 rounding inside F/G: the round trip is good to ~1e-4, not 1e-7.
    # (A float16 stream drifts to 0.135 after 24 blocks: docs/design.md, "The memory engine".)
    rebuilt = efficient.inverse(y, training=True)
    assert np.linalg.norm(rebuilt - x) / np.linalg.norm(x) < 1e-3
    # Stated tolerance under mixed_float16: 1e-2 relative (float16 compute in F/G).
    assert_gradients_close(_gradients(plain, x), _gradients(efficient, x), rtol=1e-2)


def test_batch_norm_statistics_updated_once_per_step():
    x = _input(2, batch=4)
    plain, efficient = _twin_stacks("additive", 2, depth=3, x=x)
    _gradients(plain, x)
    _gradients(efficient, x)
    moving_plain = [v.numpy() for v in plain.non_trainable_variables]
    moving_efficient = [v.numpy() for v in efficient.non_trainable_variables]
    assert moving_plain, "the stack should have BatchNormalization statistics"
    initial = [np.zeros_like(v) if "mean" in v_.path else np.ones_like(v)
               for v, v_ in zip(moving_plain, plain.non_trainable_variables)]
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(moving_plain, initial))
    for a, b in zip(moving_plain, moving_efficient):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-4), ("float64", 1e-10)])
@pytest.mark.parametrize("normalization", ["batch", "layer"])
def test_deep_stack_round_trip(dtype, tolerance, normalization):
    # Batch normalisation is checked in training mode: untrained moving
    # statistics (mean 0, variance 1) do not normalise, and 32 blocks of
    # un-normalised residuals overflow in inference mode before training.
    # 32 blocks (eager, four passes) keep the drift measurable; the 64-block
    # stacks of each block kind are in test_blocks_*.py.
    keras.utils.set_random_seed(0)
    stack = ReversibleSequence(
        [khl.AdditiveCoupling(rank=2, normalization=normalization, dtype=dtype)
         for _ in range(32)],
        dtype=dtype,
    )
    x = tf.cast(_input(2), dtype)
    assert float(stack.reconstruction_error(x, training=True)) <= tolerance
    y = stack(x, training=True)
    forward_again = stack(stack.inverse(y, training=True), training=True)
    assert np.linalg.norm(forward_again - y) / np.linalg.norm(y) <= tolerance


def test_log_det_is_sum_of_blocks():
    x = _input(2)
    blocks = _blocks("affine", 2, 2) + _blocks("sneaky_relu", 2, 1) + _blocks("one_by_one", 2, 1)
    stack = ReversibleSequence(blocks)
    stack.build(x.shape)
    expected = np.zeros(x.shape[0])
    h = x
    for block in blocks:
        expected += block.log_det_jacobian(h).numpy()
        h = block(h)
    np.testing.assert_allclose(stack.log_det_jacobian(x).numpy(), expected, rtol=1e-5)


def test_config_and_keras_round_trip():
    keras.utils.set_random_seed(0)
    x = _input(2).numpy()
    inputs = keras.Input(x.shape[1:])
    stack = ReversibleSequence(_blocks("additive", 2, 2) + _blocks("hyperbolic", 2, 1))
    model = keras.Model(inputs, stack(inputs))
    config = stack.get_config()
    clone = ReversibleSequence.from_config(config)
    assert clone.get_config()["memory_efficient"] is True
    assert len(clone.blocks) == 3
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stack.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_trains_with_fit():
    keras.utils.set_random_seed(0)
    x = _input(2, batch=8).numpy()
    target = np.tanh(x[..., ::-1]).copy()
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, ReversibleSequence(_blocks("additive", 2, 4))(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(x, target, batch_size=4, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_rejects_non_invertible_layer():
    with pytest.raises(TypeError, match="my_dense"):
        ReversibleSequence([khl.AdditiveCoupling(rank=2), keras.layers.Dense(4, name="my_dense")])


def test_rejects_bad_layers_argument():
    with pytest.raises(ValueError, match="layers"):
        ReversibleSequence([])
    with pytest.raises(TypeError, match="layers"):
        ReversibleSequence(khl.AdditiveCoupling(rank=2))
    with pytest.raises(ValueError, match="memory_efficient"):
        ReversibleSequence([khl.AdditiveCoupling(rank=2)], memory_efficient="yes")


def test_refuses_dropout_when_memory_efficient():
    f = keras.Sequential([keras.layers.Conv2D(2, 3, padding="same"), keras.layers.Dropout(0.5)])
    block = khl.AdditiveCoupling(rank=2, f=f, use_g=False)
    with pytest.raises(ValueError, match="Dropout"):
        ReversibleSequence([block], memory_efficient=True)
    # The reference mode stores activations, so dropout is fine there.
    ReversibleSequence([block], memory_efficient=False)


def test_mismatched_shapes_raise():
    stack = ReversibleSequence(_blocks("additive", 2, 2))
    with pytest.raises(ValueError, match="channels|shape"):
        stack.build((2, 8, 8, 3))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_flow_log_det_gradients_equal_plain_autodiff(mode, dtype):
    """Flows train on y and log|det J|: the engine carries the log-det gradient too."""
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 8, 12, 4)).astype(dtype))

    def blocks():
        return [
            khl.InvertibleConv2D(kernel_size=3, seed=1, dtype=dtype),
            khl.SneakyReLU(dtype=dtype),
            khl.AffineCoupling(rank=2, hidden_channels=6, dtype=dtype),
            khl.Invertible1x1Conv(seed=2, dtype=dtype),
            khl.WaveletPooling2D(wavelet="learnable", dtype=dtype),
            khl.AffineCoupling(rank=2, hidden_channels=6, dtype=dtype),
            khl.AdditiveCoupling(rank=2, hidden_channels=6, dtype=dtype),
        ]

    grads = []
    for memory_efficient in (False, True):
        keras.utils.set_random_seed(9)
        stack = ReversibleSequence(blocks(), memory_efficient=memory_efficient, dtype=dtype)
        stack.build(x.shape)
        if grads:
            stack.set_weights(reference_weights)
        reference_weights = stack.get_weights()

        def step():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y, log_det = stack.forward_and_log_det(x, training=True)
                loss = 0.5 * tf.reduce_sum(y**2) - tf.reduce_sum(log_det)
            return tape.gradient(loss, [x] + stack.trainable_variables)

        if mode == "function":
            step = tf.function(step)
        grads.append([np.asarray(g) for g in step()])
    assert_gradients_close(
        grads[0], grads[1], rtol=FLOAT32_FLOW_RTOL if dtype == "float32" else 1e-10
    )


def test_reversible_layers_find_stacks_held_by_plain_layers():
    # Keras has no public recursive listing of sub-layers (`Model.layers` is one
    # level and models only): `reversible_layers` must still see a stack that a
    # plain custom layer holds, nested stacks, and the model itself outermost first.
    from keras_hyperbolic.callbacks import reversible_stacks
    from keras_hyperbolic.reversible import reversible_layers

    class Holder(keras.layers.Layer):
        def __init__(self, stack, **kwargs):
            super().__init__(**kwargs)
            self.stack = stack

        def call(self, x):
            return self.stack(x)

    inner = ReversibleSequence([khl.AdditiveCoupling(rank=1)], name="inner")
    outer = ReversibleSequence([inner, khl.AdditiveCoupling(rank=1)], name="outer")
    inputs = keras.Input((8, 4))
    model = keras.Model(inputs, Holder(outer)(inputs))
    assert [s.name for s in reversible_layers(model)] == ["outer", "inner"]
    assert [s.name for s in reversible_layers(outer)] == ["outer", "inner"]
    assert [s.name for s in reversible_stacks(model)] == ["outer"]
    assert model.layers[-1].name.startswith("holder")  # the stack is not a direct layer
