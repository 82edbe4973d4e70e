"""LayerBijector: invertible layers, ReversibleSequence and ConvFlow as tfp.bijectors.Bijector."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_hyperbolic.bijectors import LayerBijector
from keras_hyperbolic.layers import (
    AdditiveCoupling,
    InvertibleConv2D,
    SneakyReLU,
    WaveletPooling2D,
)
from keras_hyperbolic.models.conv_flow import ConvFlow
from keras_hyperbolic.reversible import ReversibleSequence

tfd = tfp.distributions


def _perturb(layer, seed=0, scale=0.1):
    rng = np.random.default_rng(seed)
    for variable in layer.trainable_weights:
        value = keras.ops.convert_to_numpy(variable)
        variable.assign(value + scale * rng.standard_normal(value.shape).astype(value.dtype))


def _sequence():
    return ReversibleSequence(
        [
            InvertibleConv2D(kernel_size=3),
            SneakyReLU(slope=0.5),
            WaveletPooling2D(wavelet="haar"),
            AdditiveCoupling(rank=2, hidden_channels=4, normalization="none"),
        ]
    )


CASES = {
    "invertible_conv": lambda: InvertibleConv2D(kernel_size=3),
    "sneaky_relu": lambda: SneakyReLU(slope=0.3),
    "reversible_sequence": _sequence,
    "conv_flow": lambda: ConvFlow((4, 4, 1), levels=1, depth=1, num_bins=17),
}


def _make(name, shape):
    keras.config.set_dtype_policy("float64")  # conftest restores float32
    layer = CASES[name]()
    layer(tf.zeros(shape, tf.float64))  # build
    _perturb(layer)
    return LayerBijector(layer)


def _data(name, shape, seed=1):
    rng = np.random.default_rng(seed)
    if name == "conv_flow":  # data in (0, 1)
        return tf.constant(rng.uniform(0.05, 0.95, shape), tf.float64)
    return tf.constant(rng.standard_normal(shape), tf.float64)


SHAPE = (3, 4, 4, 1)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("mode", ["eager", "tf_function"])
def test_inverts_both_ways_and_log_dets_agree(name, mode):
    shape = SHAPE if name in ("conv_flow", "reversible_sequence") else (3, 4, 4, 2)
    bijector = _make(name, shape)
    wrap = tf.function if mode == "tf_function" else (lambda f: f)
    # For ConvFlow the bijector's forward is the generative direction z -> x.
    if name == "conv_flow":
        y = _data(name, shape)
        x = bijector.inverse(y)
    else:
        x = _data(name, shape)

    forward = wrap(bijector.forward)
    inverse = wrap(bijector.inverse)
    fldj = wrap(lambda t: bijector.forward_log_det_jacobian(t))
    ildj = wrap(lambda t: bijector.inverse_log_det_jacobian(t))

    y = forward(x)
    np.testing.assert_allclose(inverse(y).numpy(), x.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(forward(inverse(y)).numpy(), y.numpy(), rtol=1e-9, atol=1e-9)
    # Fresh tensors: TFP caches (x, y) pairs and would answer one log-det
    # from the other, hiding a wrong sign.
    f, i = fldj(tf.constant(x.numpy())), ildj(tf.constant(y.numpy()))
    assert f.shape == (shape[0],) and i.shape == (shape[0],)
    assert np.all(np.isfinite(f.numpy())) and np.all(np.isfinite(i.numpy()))
    assert np.all(np.isfinite(y.numpy()))
    np.testing.assert_allclose(f.numpy(), -i.numpy(), rtol=1e-9, atol=1e-9)

    # fldj == log|det| of the autodiff Jacobian of forward. A fresh tensor:
    # TFP caches forward/inverse pairs, and a cached result has no gradient path.
    x = tf.constant(x.numpy())
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = bijector.forward(x)
    jacobian = tape.batch_jacobian(out, x)
    n = int(np.prod(shape[1:]))
    _, expected = tf.linalg.slogdet(tf.reshape(jacobian, (shape[0], n, n)))
    np.testing.assert_allclose(f.numpy(), expected.numpy(), rtol=0, atol=1e-6)


def test_transformed_distribution_log_prob_equals_conv_flow_log_prob():
    keras.config.set_dtype_policy("float64")
    flow = ConvFlow((8, 8, 1), levels=2, depth=1, num_bins=17)
    _perturb(flow)
    base = tfd.Sample(tfd.Normal(tf.constant(0.0, tf.float64), 1.0), flow.latent_shape)
    density = tfd.TransformedDistribution(base, LayerBijector(flow))
    x = _data("conv_flow", (5, 8, 8, 1))
    np.testing.assert_allclose(
        density.log_prob(x).numpy(), flow.log_prob(x).numpy(), rtol=1e-10, atol=1e-8
    )
    samples = density.sample(4, seed=0)
    assert samples.shape == (4, 8, 8, 1) and np.all(np.isfinite(samples.numpy()))
    # Leading batch axes beyond one are folded and unfolded.
    stacked = tf.reshape(x[:4], (2, 2, 8, 8, 1))
    np.testing.assert_allclose(
        density.log_prob(stacked).numpy().ravel(), flow.log_prob(x[:4]).numpy(), atol=1e-8
    )


def test_bad_layer_is_refused_with_its_type():
    with pytest.raises(TypeError, match="Dense"):
        LayerBijector(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="event_ndims"):
        LayerBijector(InvertibleConv2D(kernel_size=3), event_ndims=0)
