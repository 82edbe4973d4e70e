"""`fit_distributed`: arguments, set-up, and the training loop over the pieces of this package."""

import os

import keras
import tensorflow as tf

from keras_hyperbolic.distribute.checkpoint import ResumableCheckpoint, worker_role
from keras_hyperbolic.distribute.epochs import EpochIterator
from keras_hyperbolic.distribute.step import TrainFunction, build_for_training
from keras_hyperbolic.validation import check_positive_int, invalid


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
            with `verbose`, the Keras progress bar are added. A callback that
            recompiles the model or calls `model.make_train_function(force=True)`
            makes the next step trace again, as in `fit`.
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
    data = EpochIterator(dataset_fn, strategy, steps_per_epoch)  # checks the dataset's length
    chief, worker_index = worker_role(strategy)
    if verbose == "auto":
        verbose = 1 if chief else 0

    # === Set-up: variables, checkpoint, step, callbacks ===
    _check_variables_in_scope(model, strategy)  # before building anything more in the wrong place
    first_batch = data.first_batch()
    build_for_training(model, first_batch, strategy)
    if checkpoint_dir is not None:
        checkpoint_dir = os.fspath(checkpoint_dir)
    with strategy.scope():
        checkpoint = ResumableCheckpoint(
            model, checkpoint_dir, chief=chief, worker_index=worker_index, max_to_keep=max_to_keep
        )
    start = checkpoint.restore()
    train_function = TrainFunction(model, strategy, first_batch, jit_compile=jit_compile)
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose,
        epochs=epochs, steps=data.num_steps, model=model,
    )
    try:
        _train(model, data, epochs, start, train_function, checkpoint, callback_list,
               save_every_n_steps)
    finally:
        train_function.close()
    return model.history


def _train(model, data, epochs, start, train_function, checkpoint, callbacks,
           save_every_n_steps):
    """The loop: epochs from the resume point, one checkpoint per epoch and per n steps."""
    start_epoch, start_step = start
    model.stop_training = False
    callbacks.on_train_begin()
    logs = {}
    for epoch in range(start_epoch, epochs):
        if model.stop_training:
            break
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        for step, iterator in data.steps(epoch, start=start_step):
            callbacks.on_train_batch_begin(step)
            logs = train_function(iterator)
            checkpoint.mark(epoch, step + 1)
            callbacks.on_train_batch_end(step, logs)
            if save_every_n_steps and (step + 1) % save_every_n_steps == 0:
                checkpoint.save()
            if model.stop_training:
                break
        start_step = 0  # only the resumed epoch starts mid-way
        checkpoint.mark(epoch + 1, 0)
        callbacks.on_epoch_end(epoch, dict(logs))
        checkpoint.save()
    callbacks.on_train_end(logs)


def _check_variables_in_scope(model, strategy):
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
