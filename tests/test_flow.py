"""ConvFlow: exact log-likelihood (against an autodiff Jacobian), save/load, training beats a baseline."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic.models.conv_flow import ConvFlow
from keras_hyperbolic.tasks.flow_digits import factorised_gaussian_bits_per_dim


def _tiny_flow(**kwargs):
    config = dict(levels=1, depth=1, kernel_size=3, num_bins=17)
    config.update(kwargs)
    return ConvFlow((4, 4, 1), **config)


def _perturb(flow, seed=0):
    """Moves every weight off its initial value, so the test sees a non-trivial flow."""
    rng = np.random.default_rng(seed)
    for variable in flow.trainable_weights:
        value = keras.ops.convert_to_numpy(variable)
        variable.assign(value + 0.1 * rng.standard_normal(value.shape).astype(value.dtype))


def test_log_prob_equals_change_of_variables_with_autodiff_jacobian():
    keras.config.set_dtype_policy("float64")  # conftest restores float32
    flow = _tiny_flow()
    _perturb(flow)
    x = tf.constant(np.random.default_rng(1).uniform(0.05, 0.95, (2, 4, 4, 1)), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = flow(x)
    jacobian = tape.batch_jacobian(z, x)  # (2, 2, 2, 4, 4, 4, 1)
    jacobian = tf.reshape(jacobian, (2, 16, 16))
    _, log_abs_det = tf.linalg.slogdet(jacobian)
    flat = tf.reshape(z, (2, -1))
    expected = -0.5 * tf.reduce_sum(flat**2, axis=1) - 8.0 * math.log(2 * math.pi) + log_abs_det
    got = flow.log_prob(x)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=1e-4)
    # And the inverse is the inverse.
    np.testing.assert_allclose(flow.inverse(z).numpy(), x.numpy(), atol=1e-8)


def test_save_load_and_config_round_trip(tmp_path):
    flow = _tiny_flow()
    _perturb(flow)
    x = np.random.default_rng(2).uniform(0, 1, (3, 4, 4, 1)).astype("float32")
    path = os.path.join(tmp_path, "flow.keras")
    flow.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.log_prob(x).numpy(), flow.log_prob(x).numpy())
    assert loaded.get_config() == flow.get_config()
    samples = loaded.sample(4, seed=0)
    assert samples.shape == (4, 4, 4, 1) and np.all(np.isfinite(samples))


def test_bad_input_shape_names_the_shapes():
    flow = _tiny_flow()
    with pytest.raises(ValueError, match=r"\(4, 4, 1\).*Received: x.shape=\(2, 8, 8, 1\)"):
        flow.log_prob(np.zeros((2, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match="input_shape"):
        ConvFlow((6, 6, 1), levels=2)


def _factorised_gaussian_bits_per_dim(flow, x_train, x_test, seed=0):
    """The flow task's baseline (a per-pixel Gaussian in the flow's logit space) on dequantised data."""
    rng = np.random.default_rng(seed)
    deq_train = x_train + rng.uniform(size=x_train.shape).astype("float32") / flow.num_bins
    deq_test = x_test + rng.uniform(size=x_test.shape).astype("float32") / flow.num_bins
    return factorised_gaussian_bits_per_dim(flow, deq_train, deq_test)


def test_short_training_beats_factorised_gaussian_baseline():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[..., None] / 17.0).astype("float32")  # k / num_bins, k = 0..16
    order = np.random.default_rng(0).permutation(len(x))
    x_train, x_test = x[order[:1400]], x[order[1400:]]
    flow = ConvFlow((8, 8, 1), levels=2, depth=1, num_bins=17)
    flow.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = flow.fit(x_train, epochs=12, batch_size=128, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    flow_bpd = float(np.mean(flow.bits_per_dim(x_test, seed=0)))
    baseline_bpd = _factorised_gaussian_bits_per_dim(flow, x_train, x_test)
    print(f"held-out bits/dim: flow {flow_bpd:.3f}, factorised Gaussian {baseline_bpd:.3f}")
    assert flow_bpd < baseline_bpd
