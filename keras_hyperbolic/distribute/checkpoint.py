"""Checkpoints that resume a distributed run at the step it stopped: `ResumableCheckpoint`."""

import os

import tensorflow as tf


def worker_role(strategy):
    """`(is_chief, worker_index)` of this process in `strategy`'s cluster; `(True, 0)` without one.

    The chief is the task of type "chief", or worker 0 in a cluster that has no
    "chief" task (the `MultiWorkerMirroredStrategy` convention).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True, 0
    index = resolver.task_id or 0
    if resolver.task_type == "chief":
        return True, index
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return resolver.task_type == "worker" and index == 0 and not has_chief, index


class _TrainingState(tf.Module):
    """Position of the loop (epoch, step in epoch), saved with the weights."""

    # The names (`state`, `epoch`, `step_in_epoch`) are the checkpoint's keys:
    # renaming them breaks resuming from checkpoints already written.
    def __init__(self):
        super().__init__(name="training_state")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")


class ResumableCheckpoint:
    """Checkpoints of a model, its optimizer and the training position, resumable mid-epoch.

    A checkpoint holds the weights, the optimizer state (iterations, moments,
    loss scale), every other model variable (moving statistics, random
    generator states) and the position: `(epoch, step)`, the next batch to
    train. Checkpoints are numbered by the optimizer's iterations.

    Saving is a collective operation under `MultiWorkerMirroredStrategy`:
    every worker must save. The chief's checkpoints go to `directory` and are
    kept (`max_to_keep`); any other worker writes a throw-away copy to
    `directory/.scratch_worker_<index>` and deletes it at once. `restore()`
    reads the chief's latest checkpoint on every worker, so all restart in the
    same state. Create the object inside `strategy.scope()`, with a built
    model and optimizer.

    Args:
        model: a compiled, built `keras.Model` (its optimizer built too).
        directory: where the checkpoints go (storage every worker can reach);
            `None`: the position is tracked but nothing is written or read.
        chief: whether this process keeps its checkpoints (see `worker_role`).
        worker_index: this worker's index, naming its scratch directory.
        max_to_keep: checkpoints the chief keeps on disk.

    Example:
    >>> checkpoint = ResumableCheckpoint(model, "/tmp/run/ckpt")
    >>> epoch, step = checkpoint.restore()      # (0, 0) when there is none
    >>> ...                                     # train batch `step` of `epoch`
    >>> checkpoint.mark(epoch, step + 1)
    >>> checkpoint.save()
    """

    def __init__(self, model, directory=None, chief=True, worker_index=0, max_to_keep=2):
        self.model = model
        self.chief = bool(chief)
        self.state = _TrainingState()
        self.directory = None if directory is None else os.fspath(directory)
        self._checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, state=self.state
        )
        self._manager = None
        if self.directory is not None:
            writes_to = self.directory if self.chief else os.path.join(
                self.directory, f".scratch_worker_{worker_index}"
            )
            self._manager = tf.train.CheckpointManager(
                self._checkpoint, writes_to, max_to_keep=max_to_keep
            )

    @property
    def position(self):
        """`(epoch, step)`: the next batch to train is batch `step` of epoch `epoch`."""
        return int(self.state.epoch.numpy()), int(self.state.step_in_epoch.numpy())

    def mark(self, epoch, step):
        """Records the position reached; the next `save()` stores it."""
        self.state.epoch.assign(epoch)
        self.state.step_in_epoch.assign(step)

    def restore(self):
        """Loads the chief's latest checkpoint, if there is one; returns `position`."""
        latest = self.directory and tf.train.latest_checkpoint(self.directory)
        if latest:
            self._checkpoint.restore(latest).assert_existing_objects_matched()
        return self.position

    def save(self):
        """Writes a checkpoint (every worker must call it); returns the chief's path or None."""
        if self._manager is None:
            return None
        path = self._manager.save(checkpoint_number=int(self.model.optimizer.iterations.numpy()))
        if not self.chief:
            tf.io.gfile.rmtree(self._manager.directory)
            return None
        return path
