"""Callbacks for training reversible networks."""

import warnings

import keras
import numpy as np

from keras_hyperbolic.reversible import ReversibleSequence, record_inputs, reversible_layers
from keras_hyperbolic.validation import check_choice, check_positive_float, check_positive_int


def reversible_stacks(model):
    """Every top-level `ReversibleSequence` inside `model` (nested ones are part of their parent)."""
    stacks = reversible_layers(model)
    nested = [inner for stack in stacks for inner in stack.blocks
              if isinstance(inner, ReversibleSequence)]
    return [stack for stack in stacks if not any(stack is inner for inner in nested)]


def inversion_errors(model, inputs):
    """Relative reconstruction error of each reversible stack of `model` on `inputs`.

    Runs `model(inputs)` once in training mode inside a `keras.StatelessScope`
    (so nothing is updated: no moving statistics, no optimizer state) to record
    what each stack receives, then measures `||inverse(call(x)) - x|| / ||x||`
    for each stack in the same mode, which is the drift the memory-efficient
    backward pass sees. Returns `{stack.name: error}`.
    """
    stacks = reversible_stacks(model)
    errors = {}
    with keras.StatelessScope():
        with record_inputs(stacks) as recorded:
            model(inputs, training=True)
        for stack, seen in zip(stacks, recorded):
            if seen:
                errors[stack.name] = max(
                    float(stack.reconstruction_error(x, training=True)) for x in seen
                )
    return errors


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class InversionMonitor(keras.callbacks.Callback):
    """Watches the inversion drift of a model's reversible stacks while it trains.

    Reversible training fails in one characteristic way: the inverse stops
    reproducing the forward pass (large step sizes, exploding activations, low
    precision), and the rebuilt activations, hence the gradients, go wrong long
    before the loss turns NaN. Every `every_n_steps` training steps this
    callback measures the relative reconstruction error of every
    `ReversibleSequence` on a fixed probe batch, logs the largest as
    `inversion_error` (in `logs` at epoch end, and in `self.errors`), and acts
    when it exceeds `tolerance`:

    - `on_drift="warn"`: a `RuntimeWarning` naming the stack and the error;
    - `on_drift="fallback"`: warns, then switches that stack to stored
      activations (`memory_efficient=False`, plain autodiff, exact gradients at
      the cost of memory) and re-traces the training step;
    - `on_drift="stop"`: stops training with a message (`model.stop_training`).

    Non-finite errors always count as drift.

    Args:
        probe: a batch of model inputs used to measure the drift.
        every_n_steps: how often to measure, in training steps.
        tolerance: largest acceptable relative reconstruction error.
        on_drift: `"warn"`, `"fallback"` or `"stop"`.
        verbose: print each measurement.

    Example:
    >>> monitor = InversionMonitor(x_train[:8], every_n_steps=50, on_drift="fallback")
    >>> model.fit(x_train, y_train, callbacks=[monitor])
    >>> monitor.errors[-1]   # (step, {stack_name: error})
    """

    def __init__(self, probe, every_n_steps=100, tolerance=1e-3, on_drift="warn", verbose=0):
        super().__init__()
        self.probe = probe
        self.every_n_steps = check_positive_int(every_n_steps, "every_n_steps")
        self.tolerance = check_positive_float(tolerance, "tolerance")
        self.on_drift = check_choice(on_drift, {"warn", "fallback", "stop"}, "on_drift")
        self.verbose = verbose
        self.errors = []
        self.switched = []
        self._step = 0
        self._epoch_max = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_max = 0.0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every_n_steps:
            return
        self.check()

    def check(self):
        """Measures now; returns `{stack_name: error}` and acts on drift."""
        errors = inversion_errors(self.model, self.probe)
        self.errors.append((self._step, errors))
        if errors:
            worst = max(errors.values(), key=lambda e: e if np.isfinite(e) else np.inf)
            self._epoch_max = max(self._epoch_max, worst) if np.isfinite(worst) else np.inf
        if self.verbose:
            formatted = ", ".join(f"{name}: {err:.3g}" for name, err in errors.items())
            print(f"\nInversionMonitor step {self._step}: {formatted}")
        drifting = {name: err for name, err in errors.items()
                    if not np.isfinite(err) or err > self.tolerance}
        if drifting:
            self._act(drifting)
        return errors

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["inversion_error"] = self._epoch_max

    def _act(self, drifting):
        described = ", ".join(f"{name!r} ({err:.3g})" for name, err in drifting.items())
        message = (
            f"Inversion drift above tolerance {self.tolerance:g} at step {self._step} in "
            f"reversible stack(s) {described}: activations rebuilt by inversion no longer "
            "match the forward pass, so memory-efficient gradients are inaccurate. "
            "Typical causes: a hyperbolic step size `h` too large, exploding "
            "activations, or a low-precision reversible stream."
        )
        if self.on_drift == "stop":
            self.model.stop_training = True
            print("\n" + message + " Training stopped.")
            return
        if self.on_drift == "fallback":
            stacks = {stack.name: stack for stack in reversible_stacks(self.model)}
            for name in drifting:
                if stacks[name].memory_efficient:
                    stacks[name].memory_efficient = False
                    self.switched.append((self._step, name))
            # The traced training step captured the old mode: trace it again.
            self.model.train_function = None
            self.model.make_train_function(force=True)
            message += " Switched to stored activations (memory_efficient=False)."
        warnings.warn(message, RuntimeWarning, stacklevel=2)

    def get_config(self):
        return {
            "every_n_steps": self.every_n_steps,
            "tolerance": self.tolerance,
            "on_drift": self.on_drift,
            "verbose": self.verbose,
        }


