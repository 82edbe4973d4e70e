"""`fit_distributed`: a training loop for `tf.distribute` strategies, with resume.

`model.fit` works under `tf.distribute.MirroredStrategy` (one machine, several
devices) and is the first choice there. Under
`tf.distribute.MultiWorkerMirroredStrategy` Keras 3.15's `model.fit` fails
upstream (keras-team/keras issue 20585, "PerReplica ... unsupported type").
`fit_distributed` is the replacement: a custom loop that calls the model's own
`train_step` through `strategy.run` (so compiled losses and metrics, custom
`train_step`s such as `HyperbolicVAE`'s, mixed precision loss scaling and the
memory-efficient reversible engine all behave as in `fit`), drives ordinary
Keras callbacks (`on_train_*`, `on_epoch_*`, `on_train_batch_*` with logs,
`model.stop_training`), shows the Keras progress bar and writes
`tf.train.CheckpointManager` checkpoints it resumes from.

Resume is exact, at step granularity: a checkpoint holds the weights, the
optimizer state (iterations, moments, loss scale), every other model variable
(moving statistics, random generator states) and the position (epoch, step in
the epoch). On restart the loop restores the latest checkpoint and skips the
batches of the current epoch that were already trained on, so a run killed
with SIGKILL and started again ends with the weights of an uninterrupted run,
provided the data order is a function of the epoch only (pass
`dataset_fn(epoch)`, or a dataset without per-iteration reshuffling).
Keras's own `BackupAndRestore` resumes at epoch granularity only: it restores
the weights saved mid-epoch but replays the epoch from its first batch.

Running on a real cluster (MultiWorkerMirroredStrategy)
-------------------------------------------------------
Every host runs the same script; only `TF_CONFIG` differs, and it must be set
before TensorFlow starts (before the strategy is created)::

    # host 0 (the chief: writes the checkpoints that count, prints progress)
    export TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
                       "task": {"type": "worker", "index": 0}}'
    # host 1
    export TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
                       "task": {"type": "worker", "index": 1}}'

and in the script::

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = HyperbolicSegmenter(...)
        model.compile(optimizer="adam", loss=...)
    fit_distributed(model, dataset, epochs=10, strategy=strategy,
                    checkpoint_dir="/shared/run1/ckpt")

`checkpoint_dir` must be on storage every host can reach: the chief writes
there, the other workers write throw-away copies (saving is a collective
operation every worker must join) and delete them, and on restart every
worker restores the chief's latest checkpoint. The
dataset passed is the *global* batch: the strategy splits it across all
replicas of all workers (auto-sharding by data; pass a `dataset_fn` to shard
by file yourself). When a worker dies, the others fail or block in their next
collective: the job (a cluster manager, or a shell loop) restarts every
worker, and each resumes from the latest checkpoint. Set
`tf.distribute.experimental.CommunicationOptions(timeout_seconds=...)` in the
strategy so survivors fail instead of waiting for ever.

Where TPUStrategy fits: the loop is the standard `strategy.run` loop, so it
runs under `tf.distribute.TPUStrategy` as well (create the strategy from a
`TPUClusterResolver`, build and compile inside its scope, and use
`drop_remainder=True` batches: TPUs need static shapes). TPUs require XLA; the
reversible engine compiles with `jit_compile=True` (tested on CPU), but this
package has not been run on a TPU. Checkpoints then must go to storage the TPU
workers can reach (e.g. a GCS bucket).
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.validation import check_positive_int, invalid


def _is_chief(strategy):
    """True on the worker that owns the real checkpoints and the output (task 0 or chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def _worker_index(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return getattr(resolver, "task_id", 0) or 0


def _first_local(value, strategy):
    """Keras's "first" reduction: metric results are already synchronised across replicas."""
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _to_python(logs):
    out = {}
    for key, value in logs.items():
        value = keras.ops.convert_to_numpy(value)
        out[key] = float(value) if np.ndim(value) == 0 else value
    return out


class _TrainingState(tf.Module):
    """Position of the loop (epoch, step in epoch), saved with the weights."""

    def __init__(self):
        super().__init__(name="training_state")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")


def fit_distributed(
    model,
    dataset,
    epochs=1,
    strategy=None,
    callbacks=None,
    checkpoint_dir=None,
    save_every_n_steps=None,
    max_to_keep=2,
    steps_per_epoch=None,
    verbose="auto",
    jit_compile=False,
):
    """Trains a compiled Keras model with `strategy.run`, resuming from checkpoints.

    Use it where `model.fit` does not work (MultiWorkerMirroredStrategy under
    Keras 3.15) or where resume must be exact mid-epoch. Build and compile the
    model inside `strategy.scope()`.

    Args:
        model: a compiled `keras.Model` whose variables were created inside
            `strategy.scope()`. Its `train_step` is what runs on each replica.
        dataset: a `tf.data.Dataset` of *global* batches (`(x, y)`, `(x, y,
            sample_weight)` or `x` for self-supervised models), or a callable
            `epoch -> tf.data.Dataset` (the way to reshuffle per epoch and still
            resume exactly: seed the shuffle with the epoch).
        epochs: number of epochs to train in total (a resumed run trains only
            the ones left).
        strategy: a `tf.distribute.Strategy`; default: the current one
            (`tf.distribute.get_strategy()`).
        callbacks: list of `keras.callbacks.Callback`. A `History` callback and,
            with `verbose`, the Keras progress bar are added.
        checkpoint_dir: directory for `tf.train.CheckpointManager` checkpoints
            (weights, optimizer state, all other variables, loop position).
            When it holds a checkpoint, training resumes from it. `None`: no
            checkpoints.
        save_every_n_steps: also save every this many steps within an epoch
            (a checkpoint is always written at the end of every epoch).
        max_to_keep: checkpoints kept on disk.
        steps_per_epoch: batches per epoch; default: the whole dataset.
        verbose: 0 (silent), 1 (progress bar), 2 (one line per epoch) or
            "auto" (1 on the chief worker, 0 on the others).
        jit_compile: compile the replica step with XLA.

    Returns:
        The `keras.callbacks.History` of this call (the epochs it trained).

    Raises:
        ValueError: bad arguments, an uncompiled model, or a model whose
            variables were created outside `strategy.scope()`.
        TypeError: `dataset` is neither a dataset nor a callable.

    Example:
    >>> strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    >>> with strategy.scope():
    ...     model = HyperbolicSegmenter(num_classes=2, rank=2, width=8,
    ...                                 units=[(2, "down"), (2, "up")])
    ...     model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    >>> data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    >>> history = fit_distributed(model, data, epochs=5, strategy=strategy,
    ...                           checkpoint_dir="/tmp/run/ckpt", save_every_n_steps=50)
    """
    # === Arguments ===
    if not isinstance(model, keras.Model):
        raise invalid("model", model, "a keras.Model")
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            "Invalid value for argument `model`: the model is not compiled. Call "
            "`model.compile(optimizer=..., loss=...)` inside `strategy.scope()` first. "
            f"Received: model={model.name!r}"
        )
    if isinstance(dataset, tf.data.Dataset):
        dataset_fn = lambda epoch: dataset  # noqa: E731
    elif callable(dataset):
        dataset_fn = dataset
    else:
        raise TypeError(
            "Invalid value for argument `dataset`. Expected a tf.data.Dataset or a "
            f"callable epoch -> tf.data.Dataset. Received: dataset={dataset!r}"
        )
    epochs = check_positive_int(epochs, "epochs")
    max_to_keep = check_positive_int(max_to_keep, "max_to_keep")
    if save_every_n_steps is not None:
        save_every_n_steps = check_positive_int(save_every_n_steps, "save_every_n_steps")
    if steps_per_epoch is not None:
        steps_per_epoch = check_positive_int(steps_per_epoch, "steps_per_epoch")
    if verbose not in ("auto", 0, 1, 2):
        raise invalid("verbose", verbose, "one of 'auto', 0, 1, 2")
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.Strategy):
        raise invalid("strategy", strategy, "a tf.distribute.Strategy")
    chief = _is_chief(strategy)
    if verbose == "auto":
        verbose = 1 if chief else 0

    # === Building (inside the strategy's scope, outside any tf.function) ===
    first_batch = next(iter(dataset_fn(0).take(1)))
    with strategy.scope():
        # Builds the model, the optimizer and the compiled metrics exactly as
        # `fit` does (Keras's own symbolic build on one batch).
        model._symbolic_build(data_batch=first_batch)
    foreign = [
        v.path for v in model.trainable_variables
        if not strategy.extended.variable_created_in_scope(getattr(v, "_value", v))
    ]
    if foreign:
        raise ValueError(
            "Invalid value for argument `model`: its variables were created outside "
            "`strategy.scope()` (e.g. " + ", ".join(foreign[:3]) + "). Build and compile "
            "the model inside `with strategy.scope():`."
        )

    # === Checkpointing ===
    with strategy.scope():
        state = _TrainingState()
    manager = None
    if checkpoint_dir is not None:
        checkpoint_dir = os.fspath(checkpoint_dir)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, state=state)
        # Saving is collective: every worker saves, but only the chief's copy
        # is kept; the others write to a scratch directory and delete it. All
        # workers restore from the chief's, so they restart in the same state.
        directory = checkpoint_dir if chief else os.path.join(
            checkpoint_dir, f".scratch_worker_{_worker_index(strategy)}"
        )
        manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)
        latest = tf.train.latest_checkpoint(checkpoint_dir)
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()

    def save():
        if manager is None:
            return
        manager.save(checkpoint_number=int(model.optimizer.iterations.numpy()))
        if not chief:
            tf.io.gfile.rmtree(manager.directory)

    # === The step ===
    def make_step():
        def replica_step(batch):
            return model.train_step(batch)

        def step(iterator):
            outputs = strategy.run(replica_step, args=(next(iterator),))
            return tf.nest.map_structure(lambda v: _first_local(v, strategy), outputs)

        return tf.function(step, jit_compile=jit_compile, reduce_retracing=True)

    step_fn = make_step()
    traced_for = getattr(model, "train_function", None)

    def epoch_data(epoch):
        data = dataset_fn(epoch)
        if steps_per_epoch is not None:
            return data.take(steps_per_epoch), steps_per_epoch
        steps = int(data.cardinality())
        if steps < 0:
            raise ValueError(
                "Invalid value for argument `steps_per_epoch`: the dataset's length is "
                "unknown or infinite, so pass the number of batches per epoch. "
                "Received: steps_per_epoch=None"
            )
        return data, steps

    _, steps_hint = epoch_data(0)

    # === Callbacks ===
    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=steps_hint,
        model=model,
    )
    model.stop_training = False
    start_epoch = int(state.epoch.numpy())
    skip = int(state.step_in_epoch.numpy())
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(start_epoch, epochs):
        if model.stop_training:
            break
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        data, steps = epoch_data(epoch)
        # Batches already trained on before the checkpoint we resumed from.
        iterator = iter(strategy.experimental_distribute_dataset(data.skip(skip)))
        for step_in_epoch in range(skip + 1, steps + 1):
            callback_list.on_train_batch_begin(step_in_epoch - 1)
            outputs = step_fn(iterator)
            state.step_in_epoch.assign(step_in_epoch)
            logs = _to_python(outputs)
            callback_list.on_train_batch_end(step_in_epoch - 1, logs)
            # A callback (InversionMonitor's fallback) changed the model's
            # mode and asked for a new training function: trace ours again.
            if getattr(model, "train_function", None) is not traced_for:
                step_fn = make_step()
                traced_for = model.train_function
            if save_every_n_steps and step_in_epoch % save_every_n_steps == 0:
                save()
            if model.stop_training:
                break
        skip = 0
        state.epoch.assign(epoch + 1)
        state.step_in_epoch.assign(0)
        epoch_logs = dict(logs)
        callback_list.on_epoch_end(epoch, epoch_logs)
        save()
    callback_list.on_train_end(logs)
    return model.history
