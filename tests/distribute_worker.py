"""One training process for the multi-worker and kill-and-resume tests (run as a script).

The tests start it in subprocesses, possibly with `TF_CONFIG` (then it is one
worker of a `MultiWorkerMirroredStrategy` cluster), and the in-process
references import `make_model` / `make_data` from it, so every run trains the
same tiny `HyperbolicSegmenter` (memory-efficient engine on) on the same data.

`--pause-at-step k` makes the process print `PAUSED` after its k-th training
step (counted over the whole run, resumed steps included) and sleep, so the
test can SIGKILL it at a known point in the middle of an epoch.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

SAMPLES, BATCH, EPOCHS = 32, 8, 3  # 4 steps per epoch, 12 in all


def make_data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 8, 8, 3)).astype("float32")
    y = (x.mean(axis=-1) > 0.5).astype("int32")
    return x, y


def make_model():
    import keras

    from keras_hyperbolic.models import HyperbolicSegmenter

    keras.utils.set_random_seed(7)
    model = HyperbolicSegmenter(
        num_classes=2, rank=2, width=4, units=[(1, "down"), (1, "up"), (1, None)],
        h=0.5, hidden_channels=4, memory_efficient=True,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.build((None, 8, 8, 3))
    return model


# === Process helpers for the tests ===

def free_ports(n):
    """`n` distinct free loopback ports (bound, read, released)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start(args, log_path, tf_config=None):
    """Starts this script with `args`; stdout is a pipe (markers), stderr goes to `log_path`."""
    import subprocess

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        env=env, stdout=subprocess.PIPE, stderr=open(log_path, "w"), text=True,
    )


def cluster_configs(n):
    """`TF_CONFIG` of each of `n` workers on loopback, on free ports."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(n)]
    return [{"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
            for i in range(n)]


def wait_for_line(process, marker, timeout):
    """Reads `process`'s stdout until a line equal to `marker`; False on timeout or exit."""
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                return False
            line = process.stdout.readline()
            if not line:
                return False
            if line.strip() == marker:
                return True
        return False
    finally:
        selector.close()


def finish(process, timeout):
    """Waits for `process` (killing it after `timeout` s); returns its exit code."""
    import subprocess

    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def weights_digest(model):
    return [w.tolist() for w in model.get_weights()]


def _pause_callback(keras, step):
    class Pause(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = 0

        def on_train_batch_end(self, batch, logs=None):
            self.seen = int(self.model.optimizer.iterations.numpy())
            if self.seen == step:
                print("PAUSED", flush=True)
                time.sleep(600)

    return Pause()


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["fit_distributed", "keras_fit"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--pause-at-step", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from keras_hyperbolic.distribute import fit_distributed
    from keras_hyperbolic.training import standard_callbacks

    class Count(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.steps += 1

    callbacks = [Count()]
    if args.pause_at_step:
        callbacks.append(_pause_callback(keras, args.pause_at_step))
    x, y = make_data()
    if args.mode == "keras_fit":
        model = make_model()
        callbacks = standard_callbacks(args.checkpoint_dir, csv_log=False) + callbacks
        model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                  callbacks=callbacks)
    else:
        if "TF_CONFIG" in os.environ:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            strategy = tf.distribute.get_strategy()
        with strategy.scope():
            model = make_model()
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
        fit_distributed(model, data, epochs=EPOCHS, strategy=strategy, callbacks=callbacks,
                        checkpoint_dir=args.checkpoint_dir, save_every_n_steps=1, verbose=0)
    with open(args.out, "w") as f:
        json.dump({"weights": weights_digest(model),
                   "iterations": int(model.optimizer.iterations.numpy()),
                   "steps_this_run": Count.steps}, f)
    print("DONE", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
