"""Fault-tolerant `model.fit`: a subprocess training with
`keras_hyperbolic.training.standard_callbacks` (Keras `BackupAndRestore`) is killed with SIGKILL
in the middle of an epoch, started again with the same command, and ends with the weights of an
uninterrupted run with the same seed. Plus in-process checks of `fit_distributed`'s resume and
callbacks.

Stated tolerance: 1e-6 absolute + 1e-5 relative (same process layout, same single device, so the
only difference is a save/load round trip, which is exact; measured 0).
"""

import json
import os
import signal
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import distribute_worker as worker  # noqa: E402

from keras_hyperbolic.distribute import fit_distributed  # noqa: E402
from keras_hyperbolic.training import standard_callbacks  # noqa: E402

TIMEOUT = 120


def test_keras_fit_killed_mid_epoch_resumes_from_backup(tmp_path):
    tmp_path = str(tmp_path)
    run_dir = os.path.join(tmp_path, "run")
    out = os.path.join(tmp_path, "result.json")
    args = ["--mode", "keras_fit", "--out", out, "--checkpoint-dir", run_dir]
    # Step 6 = epoch 2 of 3, batch 2 of 4: after the epoch-1 backup, mid-epoch.
    process = worker.start(args + ["--pause-at-step", "6"], os.path.join(tmp_path, "killed.log"))
    try:
        assert worker.wait_for_line(process, "PAUSED", TIMEOUT), open(
            os.path.join(tmp_path, "killed.log")).read()[-3000:]
        os.kill(process.pid, signal.SIGKILL)
    finally:
        worker.finish(process, 10)
    assert process.returncode == -signal.SIGKILL
    assert not os.path.exists(out)
    metadata = json.load(open(os.path.join(run_dir, "backup", "training_metadata.json")))
    assert metadata["epoch"] == 1  # one finished epoch was backed up

    process = worker.start(args, os.path.join(tmp_path, "resumed.log"))
    code = worker.finish(process, TIMEOUT)
    assert code == 0, open(os.path.join(tmp_path, "resumed.log")).read()[-3000:]
    result = json.load(open(out))
    # The restart redid epochs 2 and 3 only (8 of 12 steps) ...
    assert result["steps_this_run"] == 8
    assert result["iterations"] == 12
    # ... and the backup was removed once training finished.
    assert not os.path.exists(os.path.join(run_dir, "backup"))

    x, y = worker.make_data()
    reference = worker.make_model()
    reference.fit(x, y, batch_size=worker.BATCH, epochs=worker.EPOCHS, shuffle=False, verbose=0)
    for got, want in zip(result["weights"], reference.get_weights()):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-6, rtol=1e-5)


class _Crash(keras.callbacks.Callback):
    """Stands in for a crash after `step` steps: raises before that step's checkpoint."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise KeyboardInterrupt("simulated crash")


def _data():
    x, y = worker.make_data()
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(worker.BATCH)


def test_fit_distributed_resumes_mid_epoch_exactly(tmp_path):
    # One device (the multi-worker test covers resume under a strategy).
    strategy = tf.distribute.get_strategy()
    checkpoint_dir = os.path.join(str(tmp_path), "ckpt")
    with strategy.scope():
        reference = worker.make_model()
    fit_distributed(reference, _data(), epochs=worker.EPOCHS, strategy=strategy, verbose=0)

    with strategy.scope():
        first = worker.make_model()
    # Crashes after step 6, before its checkpoint: the last one is step 5
    # (epoch 2, after its first batch).
    with pytest.raises(KeyboardInterrupt):
        fit_distributed(first, _data(), epochs=worker.EPOCHS, strategy=strategy, verbose=0,
                        checkpoint_dir=checkpoint_dir, save_every_n_steps=1,
                        callbacks=[_Crash(6)])
    assert tf.train.latest_checkpoint(checkpoint_dir).endswith("ckpt-5")

    with strategy.scope():
        resumed = worker.make_model()
    steps = []
    history = fit_distributed(
        resumed, _data(), epochs=worker.EPOCHS, strategy=strategy, verbose=0,
        checkpoint_dir=checkpoint_dir, save_every_n_steps=1,
        callbacks=[keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: steps.append((batch, logs["loss"])))],
    )
    # Resumed at epoch 2, batch index 1: 3 + 4 batches left.
    assert [b for b, _ in steps] == [1, 2, 3, 0, 1, 2, 3]
    assert all(np.isfinite(loss) for _, loss in steps)
    assert len(history.history["loss"]) == 2
    assert int(resumed.optimizer.iterations.numpy()) == 12
    for got, want in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)


def test_fit_distributed_argument_errors():
    model = worker.make_model()
    with pytest.raises(TypeError, match="dataset"):
        fit_distributed(model, np.zeros((4, 8, 8, 3)))
    with pytest.raises(ValueError, match="epochs"):
        fit_distributed(model, _data(), epochs=0)
    with pytest.raises(ValueError, match="verbose"):
        fit_distributed(model, _data(), verbose=3)
    uncompiled = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not compiled"):
        fit_distributed(uncompiled, _data())
    with pytest.raises(ValueError, match="steps_per_epoch"):
        fit_distributed(model, _data().repeat(), verbose=0)
    # Built outside the strategy's scope.
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    with pytest.raises(ValueError, match="strategy.scope"):
        fit_distributed(model, _data(), strategy=strategy, verbose=0)


def test_standard_callbacks_contents(tmp_path):
    callbacks = standard_callbacks(str(tmp_path), inversion_probe=np.zeros((1, 8, 8, 3)))
    kinds = [type(c).__name__ for c in callbacks]
    assert kinds == ["BackupAndRestore", "CSVLogger", "InversionMonitor"]
    assert callbacks[0].double_checkpoint
    assert standard_callbacks(str(tmp_path), backup=False, csv_log=False) == []
    with pytest.raises(ValueError, match="backup_freq"):
        standard_callbacks(str(tmp_path), backup_freq=0)
    with pytest.raises(ValueError, match="output_dir"):
        standard_callbacks("")
