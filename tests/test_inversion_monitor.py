"""InversionMonitor: drift of the rebuilt activations is visible, and the run survives it."""

import keras
import numpy as np
import pytest

from keras_hyperbolic import layers as khl
from keras_hyperbolic.callbacks import InversionMonitor, inversion_errors
from keras_hyperbolic.reversible import ReversibleSequence


def _model(h, depth=8, clipnorm=None):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    stack = ReversibleSequence(
        # Layer norm bounds f, so at an unstable h the state drifts while the
        # loss and the first updates stay finite; with the default "weight"
        # normalisation f grows with the state and h = 4 overflows in one step.
        [khl.HyperbolicBlock(rank=2, h=h, normalization="layer") for _ in range(depth)],
        name="hyperbolic_stack",
    )
    model = keras.Model(inputs, stack(inputs))
    model.compile(optimizer=keras.optimizers.SGD(1e-3, clipnorm=clipnorm), loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 8, 8, 4)).astype("float32")
    return x, np.tanh(x)


def test_stable_step_size_reports_small_error():
    x, y = _data()
    model = _model(h=0.1)
    monitor = InversionMonitor(x[:4], every_n_steps=1, tolerance=1e-4)
    with _no_runtime_warnings():
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[monitor])
    assert len(monitor.errors) == 2
    errors = monitor.errors[-1][1]
    assert set(errors) == {"hyperbolic_stack"}
    assert errors["hyperbolic_stack"] < 1e-5
    assert history.history["inversion_error"][0] < 1e-5


def test_unstable_step_size_is_caught_and_the_run_survives():
    x, y = _data()
    # h = 4 is far outside the stable range (h <~ 1): activations grow fast
    # and the inverse drifts, while the loss is still finite. Gradient
    # clipping keeps the updates bounded so that "survives" is about drift.
    model = _model(h=4.0, depth=16, clipnorm=1.0)
    before = inversion_errors(model, x[:4])["hyperbolic_stack"]
    assert before > 1e-4
    assert np.isfinite(model.evaluate(x, y, verbose=0))
    monitor = InversionMonitor(x[:4], every_n_steps=1, tolerance=1e-4, on_drift="fallback")
    with pytest.warns(RuntimeWarning, match="hyperbolic_stack"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.switched and monitor.switched[0][1] == "hyperbolic_stack"
    assert model.get_layer("hyperbolic_stack").memory_efficient is False
    # Training goes on with stored activations and exact gradients.
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_stop_option_stops_training():
    x, y = _data()
    model = _model(h=4.0, depth=16)
    monitor = InversionMonitor(x[:4], every_n_steps=1, tolerance=1e-4, on_drift="stop")
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 1
    assert model.stop_training
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_monitor_arguments_are_validated():
    with pytest.raises(ValueError, match="every_n_steps"):
        InversionMonitor(np.zeros((1, 8, 8, 4)), every_n_steps=0)
    with pytest.raises(ValueError, match="on_drift"):
        InversionMonitor(np.zeros((1, 8, 8, 4)), on_drift="ignore")
    with pytest.raises(ValueError, match="tolerance"):
        InversionMonitor(np.zeros((1, 8, 8, 4)), tolerance=-1)


class _no_runtime_warnings:
    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.simplefilter("error", RuntimeWarning)

    def __exit__(self, *exc):
        return self._catcher.__exit__(*exc)
