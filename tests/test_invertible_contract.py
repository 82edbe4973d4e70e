"""The InvertibleLayer contract: public maps on the base, private hooks, properties, engine hooks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic import layers as khl
from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.layers.active_channels import ActiveChannels
from keras_hyperbolic.reversible import ReversibleSequence, match_gradients, record_inputs
from layer_testing import relative_error


class Scale(InvertibleLayer):
    """Only the private hooks: the base does conversion, building and dispatch."""

    def __init__(self, **kwargs):
        super().__init__(is_constant_jacobian=True, **kwargs)

    def build(self, input_shape):
        self.log_scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x, training=None):
        return x * tf.exp(self.log_scale)

    def _inverse(self, y, training=None):
        return y * tf.exp(-self.log_scale)

    def _log_det_jacobian(self, x, training=None):
        positions = tf.cast(tf.reduce_prod(tf.shape(x)[1:-1]), x.dtype)
        return tf.fill(tf.shape(x)[:1], positions * tf.reduce_sum(self.log_scale))


def test_public_maps_convert_build_and_dispatch():
    layer = Scale()
    y = np.ones((2, 3, 4), "float64")  # numpy, float64: cast to the float32 stream
    x = layer.inverse(y)  # inverse first: builds the layer from y's shape
    assert layer.built and x.dtype == tf.float32
    np.testing.assert_allclose(x.numpy(), np.exp(-1.0), rtol=1e-6)
    np.testing.assert_allclose(layer.log_det_jacobian(x).numpy(), [12.0, 12.0], rtol=1e-6)
    out, log_det = layer.forward_and_log_det(x)
    np.testing.assert_allclose(out.numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(log_det.numpy(), [12.0, 12.0], rtol=1e-6)
    rebuilt, dx, pairs = layer.backward(out, tf.ones_like(out), dlog_det=tf.ones((2,)))
    assert relative_error(rebuilt, x) <= 1e-6
    assert [v for v, _ in pairs] == layer.trainable_variables


def test_missing_hooks_name_the_hook():
    class Forward(InvertibleLayer):
        def call(self, x, training=None):
            return x

    with pytest.raises(NotImplementedError, match="_inverse"):
        Forward().inverse(np.zeros((1, 2), "float32"))
    with pytest.raises(NotImplementedError, match="_log_det_jacobian"):
        Forward().log_det_jacobian(np.zeros((1, 2), "float32"))
    # Volume preserving: the base answers zeros without asking the subclass.
    zeros = Forward(is_volume_preserving=True).log_det_jacobian(np.ones((3, 2), "float32"))
    np.testing.assert_array_equal(zeros.numpy(), [0.0, 0.0, 0.0])


@pytest.mark.parametrize(
    "make, constant, volume_preserving",
    [
        (lambda: khl.AdditiveCoupling(rank=2), True, True),
        (lambda: khl.HyperbolicBlock(rank=2), True, True),
        (lambda: khl.WaveletPooling2D(), True, True),
        (lambda: khl.PairPooling(khl.OrthogonalPooling2D()), True, True),
        (lambda: khl.InvertibleConv2D(), True, False),
        (lambda: khl.Invertible1x1Conv(), True, False),
        (lambda: khl.AffineCoupling(rank=2), False, False),
        (lambda: khl.SneakyReLU(), False, False),
        (lambda: ReversibleSequence([khl.AdditiveCoupling(rank=2), khl.WaveletPooling2D()]), True, True),
        (lambda: ReversibleSequence([khl.AdditiveCoupling(rank=2), khl.InvertibleConv2D()]), True, False),
        (lambda: ReversibleSequence([khl.AdditiveCoupling(rank=2), khl.SneakyReLU()]), False, False),
    ],
)
def test_jacobian_properties(make, constant, volume_preserving):
    layer = make()
    assert layer.is_constant_jacobian is constant
    assert layer.is_volume_preserving is volume_preserving


def test_wrapper_derives_properties_from_what_it_wraps():
    # The old bug: ActiveChannels declared `is_constant_jacobian = True` as a
    # class attribute, so wrapping an affine coupling (whose log-det depends
    # on the input) claimed a constant Jacobian, and a TFP bijector built on
    # it would cache one log-det for every input.
    affine = ActiveChannels(khl.AffineCoupling(rank=1, normalization="layer"), active=4)
    assert not affine.is_constant_jacobian and not affine.is_volume_preserving
    x = np.random.default_rng(0).standard_normal((2, 5, 6)).astype("float32")
    log_det = affine.log_det_jacobian(x).numpy()
    assert abs(log_det[0] - log_det[1]) > 1e-3  # really not constant
    additive = ActiveChannels(khl.AdditiveCoupling(rank=1), active=4)
    assert additive.is_constant_jacobian and additive.is_volume_preserving
    conv = ActiveChannels(khl.InvertibleConv1D(), active=4)
    assert conv.is_constant_jacobian and not conv.is_volume_preserving
    # Round trip through the config keeps what is derived.
    clone = ActiveChannels.from_config(affine.get_config())
    assert not clone.is_constant_jacobian


def test_wrapped_flow_layer_trains_with_the_engine():
    # The engine hands `dlog_det` to every non-volume-preserving block: a
    # wrapper must pass it through to what it wraps.
    x = tf.constant(np.random.default_rng(1).standard_normal((2, 6, 6)), tf.float64)
    grads = []
    for memory_efficient in (False, True):
        keras.utils.set_random_seed(3)
        stack = ReversibleSequence(
            [ActiveChannels(khl.AffineCoupling(rank=1, hidden_channels=4, normalization="layer",
                                              dtype="float64"),
                            active=4, dtype="float64"),
             khl.Invertible1x1Conv(seed=0, dtype="float64")],
            memory_efficient=memory_efficient, dtype="float64",
        )
        stack.build(x.shape)
        if grads:
            stack.set_weights(reference)
        reference = stack.get_weights()
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, log_det = stack.forward_and_log_det(x, training=True)
            loss = 0.5 * tf.reduce_sum(y**2) - tf.reduce_sum(log_det)
        grads.append(tape.gradient(loss, [x] + stack.trainable_variables))
    for plain, efficient in zip(*grads):
        assert relative_error(efficient, plain) <= 1e-10


def test_match_gradients_sums_shared_and_leaves_missing_none():
    a, b, c = (keras.Variable(np.zeros(2), name=n) for n in "abc")
    pairs = [(a, tf.ones(2)), (b, None), (a, 2 * tf.ones(2)), (b, tf.ones(2))]
    matched = match_gradients([b, c, a], pairs)
    np.testing.assert_array_equal(matched[0].numpy(), [1.0, 1.0])
    assert matched[1] is None
    np.testing.assert_array_equal(matched[2].numpy(), [3.0, 3.0])
    # custom_gradient hands over the tf.Variables behind the Keras variables.
    underlying = match_gradients([a.value if hasattr(a.value, "ref") else a._value], pairs)
    np.testing.assert_array_equal(underlying[0].numpy(), [3.0, 3.0])


def test_record_inputs_records_eager_calls_only_inside_the_block():
    stack = ReversibleSequence([khl.AdditiveCoupling(rank=1)])
    x = tf.random.normal((2, 4, 2))
    stack(x)
    with record_inputs([stack]) as (seen,):
        stack(x)
        tf.function(lambda t: stack(t))(x)  # traced: not recorded
    stack(x)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0].numpy(), x.numpy())
    with pytest.raises(TypeError, match="stacks"):
        with record_inputs([khl.SneakyReLU()]):
            pass
