"""The batches of each epoch, distributed by a strategy, from any step on: `EpochIterator`."""


class EpochIterator:
    """Distributed batches of each epoch, starting at a resume point.

    Each epoch's data comes from `dataset_fn(epoch)`, so the order can change
    from epoch to epoch and still be the same when a run resumes. Resuming at
    step `k` of an epoch skips its first `k` batches before they are
    distributed, so a resumed epoch trains on exactly the batches an
    uninterrupted one would have trained on next.

    Args:
        dataset_fn: callable `epoch -> tf.data.Dataset` of global batches.
        strategy: the `tf.distribute.Strategy` that splits each batch across
            its replicas.
        steps_per_epoch: batches per epoch; `None`: the length of the dataset,
            which must then be known and finite.

    Raises:
        ValueError: `steps_per_epoch` is `None` and epoch 0's dataset has an
            unknown or infinite length.

    Example:
    >>> epochs = EpochIterator(lambda epoch: dataset, strategy)
    >>> for step, iterator in epochs.steps(epoch=1, start=3):
    ...     logs = train_function(iterator)   # takes one batch from `iterator`
    """

    def __init__(self, dataset_fn, strategy, steps_per_epoch=None):
        self.dataset_fn = dataset_fn
        self.strategy = strategy
        self.steps_per_epoch = steps_per_epoch
        # Epoch 0's length: the progress bar's count, and the check that it is known.
        self.num_steps = self._length(dataset_fn(0))

    def first_batch(self):
        """The first global batch of epoch 0 (its shapes and dtypes build the model)."""
        return next(iter(self.dataset_fn(0).take(1)))

    def steps(self, epoch, start=0):
        """Yields `(step, iterator)` for steps `start, start + 1, ...` of `epoch`.

        Every step must take exactly one batch from `iterator` (the same
        distributed iterator for the whole epoch) before asking for the next.
        """
        data = self.dataset_fn(epoch)
        num_steps = self._length(data)
        if self.steps_per_epoch is not None:
            data = data.take(num_steps)
        iterator = iter(self.strategy.experimental_distribute_dataset(data.skip(start)))
        for step in range(start, num_steps):
            yield step, iterator

    def _length(self, data):
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        length = int(data.cardinality())
        if length < 0:  # tf.data.INFINITE_CARDINALITY or UNKNOWN_CARDINALITY
            raise ValueError(
                "Invalid value for argument `steps_per_epoch`: the dataset's length is "
                "unknown or infinite, so pass the number of batches per epoch. "
                "Received: steps_per_epoch=None"
            )
        return length
