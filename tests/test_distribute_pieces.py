"""The pieces `fit_distributed` is made of: the epoch iterator's resume point, the resumable
checkpoint (chief and scratch copies, restore), and the training step traced again when Keras
marks it stale (recompile, `make_train_function(force=True)`, InversionMonitor's fallback).

Stated tolerance: 1e-6 relative for a logged loss against the same loss computed eagerly from the
same weights (float32, same device; measured ~1e-8); weights restored from a checkpoint are exact.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic import layers as khl
from keras_hyperbolic.callbacks import InversionMonitor
from keras_hyperbolic.distribute import (
    EpochIterator,
    ResumableCheckpoint,
    TrainFunction,
    build_for_training,
    fit_distributed,
)
from keras_hyperbolic.reversible import ReversibleSequence

BATCH = 4


def _two_devices():
    # Reduce-and-broadcast: see test_distribute_mirrored.two_device_strategy.
    return tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())


def _numbers(epoch):
    """Epoch-dependent data: batch k of epoch e is [100 e + 2 k, 100 e + 2 k + 1]."""
    return tf.data.Dataset.range(100 * epoch, 100 * epoch + 10).batch(2)


def _values(strategy, batch):
    return np.concatenate([np.asarray(v) for v in strategy.experimental_local_results(batch)])


# === EpochIterator ===

@pytest.mark.parametrize("devices", [1, 2])
def test_epoch_iterator_starts_at_the_resume_point(devices):
    strategy = tf.distribute.get_strategy() if devices == 1 else _two_devices()
    epochs = EpochIterator(_numbers, strategy)
    assert epochs.num_steps == 5
    seen = [(step, _values(strategy, next(iterator)).tolist())
            for step, iterator in epochs.steps(epoch=1, start=3)]
    assert seen == [(3, [106, 107]), (4, [108, 109])]
    # From the start, the same epoch gives all its batches in order.
    firsts = [_values(strategy, next(it))[0] for _, it in epochs.steps(1)]
    assert firsts == [100, 102, 104, 106, 108]
    assert list(epochs.steps(epoch=0, start=5)) == []


def test_epoch_iterator_steps_per_epoch_on_an_endless_dataset():
    strategy = tf.distribute.get_strategy()
    epochs = EpochIterator(lambda epoch: _numbers(epoch).repeat(), strategy, steps_per_epoch=7)
    seen = [(step, _values(strategy, next(it)).tolist()) for step, it in epochs.steps(2, start=5)]
    # Steps 5 and 6 of the repeated 5-batch epoch: batches 0 and 1 of its second pass.
    assert seen == [(5, [200, 201]), (6, [202, 203])]
    assert epochs.first_batch().numpy().tolist() == [0, 1]


def test_epoch_iterator_needs_a_length():
    unknown = lambda epoch: _numbers(epoch).filter(lambda v: v[0] >= 0)  # noqa: E731
    with pytest.raises(ValueError, match="steps_per_epoch"):
        EpochIterator(unknown, tf.distribute.get_strategy())
    with pytest.raises(ValueError, match="steps_per_epoch"):
        EpochIterator(lambda epoch: _numbers(epoch).repeat(), tf.distribute.get_strategy())


# === ResumableCheckpoint ===

def _dense_model(seed=0, loss="mse"):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    return model


def _dense_data(samples=16):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
    return x, y


def _dense_dataset():
    return tf.data.Dataset.from_tensor_slices(_dense_data()).batch(BATCH)


def _trained_checkpoint(directory, **kwargs):
    model = _dense_model()
    fit_distributed(model, _dense_dataset(), epochs=1, verbose=0)  # 4 Adam steps: moments != 0
    checkpoint = ResumableCheckpoint(model, directory, **kwargs)
    checkpoint.mark(2, 3)
    return model, checkpoint


def _optimizer_state(model):
    return [v.numpy() for v in model.optimizer.variables]


def test_checkpoint_restores_weights_optimizer_and_position(tmp_path):
    directory = os.path.join(str(tmp_path), "ckpt")
    model, checkpoint = _trained_checkpoint(directory)
    assert checkpoint.position == (2, 3)
    path = checkpoint.save()
    assert path.endswith("ckpt-4")  # numbered by the optimizer's iterations
    assert tf.train.latest_checkpoint(directory) == path

    fresh = _dense_model(seed=1)
    build_for_training(fresh, next(iter(_dense_dataset())), tf.distribute.get_strategy())
    restored = ResumableCheckpoint(fresh, directory)
    assert restored.position == (0, 0)
    assert restored.restore() == (2, 3)
    for got, want in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(_optimizer_state(fresh), _optimizer_state(model)):
        np.testing.assert_array_equal(got, want)
    assert int(fresh.optimizer.iterations.numpy()) == 4


def test_checkpoint_other_workers_write_scratch_copies_and_restore_the_chiefs(tmp_path):
    directory = os.path.join(str(tmp_path), "ckpt")
    chief_model, chief = _trained_checkpoint(directory)
    chief_path = chief.save()

    worker_model = _dense_model(seed=1)
    build_for_training(worker_model, next(iter(_dense_dataset())), tf.distribute.get_strategy())
    worker = ResumableCheckpoint(worker_model, directory, chief=False, worker_index=1)
    worker.mark(5, 1)
    assert worker.save() is None
    # The worker's copy is gone, and the chief's latest checkpoint is unchanged.
    assert not any(name.startswith(".scratch") for name in os.listdir(directory))
    assert tf.train.latest_checkpoint(directory) == chief_path
    assert worker.restore() == (2, 3)
    for got, want in zip(worker_model.get_weights(), chief_model.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_checkpoint_without_directory_tracks_the_position_only(tmp_path):
    model, checkpoint = _trained_checkpoint(None)
    assert checkpoint.save() is None
    assert checkpoint.restore() == (2, 3)


# === TrainFunction: traced again when Keras marks the trace stale ===

def test_train_function_traces_again_after_recompile_and_forced_make():
    model = _dense_model()
    strategy = tf.distribute.get_strategy()
    batch = next(iter(_dense_dataset()))
    build_for_training(model, batch, strategy)
    step = TrainFunction(model, strategy, batch)
    iterator = iter(_dense_dataset().repeat())
    step(iterator)
    step(iterator)
    assert step.traces == 1
    installed = model.train_function
    # A plain function, as Keras's own (TensorBoard treats a tf.function there specially).
    assert installed is not None and not hasattr(installed, "function_spec")
    model.compile(optimizer=model.optimizer, loss="mae")  # empties the slot
    assert model.train_function is None
    step(iterator)
    assert step.traces == 2
    model.make_train_function(force=True)  # replaces the slot with Keras's own
    step(iterator)
    assert step.traces == 3
    step.close()
    assert model.train_function is None


class _Recompile(keras.callbacks.Callback):
    """After batch `at`, recompiles with mean absolute error; records eager losses per batch."""

    def __init__(self, at, x, y):
        super().__init__()
        self.at, self.x, self.y = at, x, y
        self.mse, self.mae, self.logged = [], [], []

    def on_train_batch_begin(self, batch, logs=None):
        rows = slice(batch * BATCH, (batch + 1) * BATCH)
        error = np.asarray(self.model(self.x[rows])) - self.y[rows]
        self.mse.append(np.mean(error**2))
        self.mae.append(np.mean(np.abs(error)))

    def on_train_batch_end(self, batch, logs=None):
        self.logged.append(logs["loss"])
        if batch == self.at:
            self.model.compile(optimizer=self.model.optimizer, loss="mae")


def test_fit_distributed_traces_again_after_a_recompile():
    # Before the fix, a model never `fit` had `train_function=None` before and
    # after the recompile, so the loop kept training with mean squared error.
    x, y = _dense_data()
    model = _dense_model()
    recompile = _Recompile(1, x, y)
    fit_distributed(model, _dense_dataset(), epochs=1, verbose=0, callbacks=[recompile])
    assert len(recompile.logged) == 4
    # Step 0: the compiled mse. Step 2: the first step after the recompile,
    # with a fresh loss tracker, logs the mean absolute error of its batch.
    np.testing.assert_allclose(recompile.logged[0], recompile.mse[0], rtol=1e-6)
    np.testing.assert_allclose(recompile.logged[2], recompile.mae[2], rtol=1e-6)
    assert abs(recompile.mse[2] - recompile.mae[2]) > 1e-2 * recompile.mae[2]  # distinguishable
    assert model.train_function is None  # given back: a later `fit` makes its own


class _Freeze(keras.callbacks.Callback):
    """After batch `at`, freezes the first layer the way Keras documents it."""

    def __init__(self, at):
        super().__init__()
        self.at = at
        self.frozen = self.other = None

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.at:
            self.model.layers[0].trainable = False
            self.model.make_train_function(force=True)
            self.frozen = self.model.layers[0].get_weights()
            self.other = self.model.layers[1].get_weights()


def test_fit_distributed_traces_again_after_make_train_function_force():
    model = _dense_model()
    freeze = _Freeze(1)
    fit_distributed(model, _dense_dataset(), epochs=1, verbose=0, callbacks=[freeze])
    for got, want in zip(model.layers[0].get_weights(), freeze.frozen):
        np.testing.assert_array_equal(got, want)
    # The step kept training the layer left trainable.
    assert np.abs(model.layers[1].get_weights()[0] - freeze.other[0]).max() > 1e-6


class _Installed(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.functions = []

    def on_train_batch_end(self, batch, logs=None):
        self.functions.append(self.model.train_function)


def test_fit_distributed_traces_again_after_inversion_monitor_fallback():
    # The unstable set-up of test_inversion_monitor: h = 4 drifts at once.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    stack = ReversibleSequence(
        [khl.HyperbolicBlock(rank=2, h=4.0, normalization="layer") for _ in range(16)],
        name="hyperbolic_stack")
    model = keras.Model(inputs, stack(inputs))
    model.compile(optimizer=keras.optimizers.SGD(1e-3, clipnorm=1.0), loss="mse")
    x = np.random.default_rng(0).standard_normal((8, 8, 8, 4)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.tanh(x))).batch(BATCH)
    ran, after_monitor = _Installed(), _Installed()
    monitor = InversionMonitor(x[:4], every_n_steps=1, tolerance=1e-4, on_drift="fallback")
    with pytest.warns(RuntimeWarning, match="hyperbolic_stack"):
        history = fit_distributed(model, data, epochs=1, verbose=0,
                                  callbacks=[ran, monitor, after_monitor])
    assert monitor.switched and monitor.switched[0][1] == "hyperbolic_stack"
    assert stack.memory_efficient is False
    # After step 0 the monitor replaced the step with one of Keras's own; step 1
    # ran neither that nor step 0's, but a new trace (with stored activations).
    first, second = ran.functions
    keras_own = after_monitor.functions[0]
    assert None not in (first, second, keras_own)
    assert keras_own is not first and second is not first and second is not keras_own
    assert np.isfinite(history.history["loss"][0])
