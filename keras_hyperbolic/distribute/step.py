"""The step of `fit_distributed`: `model.train_step` on every replica, via `strategy.run`."""

import keras
import numpy as np
import tensorflow as tf


def build_for_training(model, batch, strategy):
    """Creates the variables of the model, its compiled loss and metrics and its optimizer.

    This is the symbolic build `model.fit` runs before its first step when a
    strategy is set (shapes and dtypes of `batch` only: nothing is computed or
    updated, and what is built already is left alone), inside
    `strategy.scope()` so the variables are mirrored. Keras 3.15 has no public
    API for it: `model.build` covers the layers only, and the compiled loss,
    metrics and optimizer otherwise build inside the first traced step. So
    this function is the package's one call of the private
    `Trainer._symbolic_build`.
    """
    with strategy.scope():
        model._symbolic_build(data_batch=batch)


def logs_to_python(logs):
    """Step outputs as Python floats (scalars) and NumPy arrays, as callbacks expect them."""
    out = {}
    for key, value in logs.items():
        value = keras.ops.convert_to_numpy(value)
        out[key] = float(value) if np.ndim(value) == 0 else value
    return out


class TrainFunction:
    """`model.train_step` on every replica, traced again whenever Keras marks the trace stale.

    Calls the model's own `train_step` through `strategy.run`, so compiled
    losses and metrics, custom `train_step`s, loss scaling and the reversible
    engine behave as in `fit`. Metric results are already synchronised across
    replicas, so the first replica's values are the logs (Keras's "first"
    reduction).

    While it runs, the traced function sits in the model's `train_function`
    slot, where `fit` keeps its own. That slot is how Keras says a trace is
    stale: `compile()` empties it, and `make_train_function(force=True)` (what
    Keras asks a callback to call after changing `trainable`, and what
    `InversionMonitor`'s fallback calls) replaces it. So when the slot no
    longer holds this object's function, the next call builds whatever a
    recompile left unbuilt and traces the step again. `close()` empties the
    slot, so a later `model.fit` makes its own function.

    Args:
        model: a compiled `keras.Model`.
        strategy: the `tf.distribute.Strategy` to run the step under.
        batch: a global batch whose shapes and dtypes build what a recompile
            leaves unbuilt (see `build_for_training`).
        jit_compile: compile the step with XLA.

    Attributes:
        traces: how many step functions were made (each traces on its first
            call): 1, plus one per stale trace replaced.
    """

    def __init__(self, model, strategy, batch, jit_compile=False):
        self.model = model
        self.strategy = strategy
        self.batch = batch
        self.jit_compile = jit_compile
        self.traces = 0
        self._function = None

    def __call__(self, iterator):
        """Trains on the next batch of the distributed `iterator`; returns the logs."""
        if self._function is None or self.model.train_function is not self._function:
            self._function = self._trace()
            self.model.train_function = self._function
        return logs_to_python(self._function(iterator))

    def close(self):
        """Empties the model's `train_function` slot if it still holds this step."""
        if self._function is not None and self.model.train_function is self._function:
            self.model.train_function = None
        self._function = None

    def _trace(self):
        build_for_training(self.model, self.batch, self.strategy)
        model, strategy = self.model, self.strategy

        def step(iterator):
            outputs = strategy.run(model.train_step, args=(next(iterator),))
            return tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v,
                outputs,
            )

        traced = tf.function(step, jit_compile=self.jit_compile, reduce_retracing=True)
        self.traces += 1

        # A plain function in the slot, like Keras's own: TensorBoard's graph
        # writer expects private attributes on any tf.function it finds there.
        def train_function(iterator):
            return traced(iterator)

        return train_function
