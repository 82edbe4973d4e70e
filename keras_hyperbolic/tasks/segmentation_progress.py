"""Training progress with an ETA: what the segmentation runs print instead of Keras's progress bar.

The plan of a run never depends on the machine's speed; only this does. After
the first steps (the very first one also traces the graph, so it is timed on
its own) `StepProgress` prints the measured time per step and the estimated
training time, then keeps one line up to date (verbose 1) or prints a line at
every backup interval (verbose 2): the step, the loss, seconds per step and
the time left.
"""

import sys
import time

import keras

#: Steps timed (after the first one) before the time per step is reported.
FIRST_STEPS = 3


def format_seconds(seconds):
    """`"1 h 02 min"`, `"4 min 05 s"`, `"12 s"`."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


class StepProgress(keras.callbacks.Callback):
    """Prints the measured time per step, the estimated total and a progress line with an ETA.

    Args:
        total_steps: the steps of the whole run (a resumed run counts those done before).
        steps_per_epoch: steps of one `fit` epoch (the backup interval).
        verbose: 1: one line kept up to date (`\\r`); 2: a line per epoch.
        stream: where to print (default `sys.stdout`).
    """

    def __init__(self, total_steps, steps_per_epoch, verbose=1, stream=None):
        super().__init__()
        self.total_steps = int(total_steps)
        self.steps_per_epoch = int(steps_per_epoch)
        self.verbose = verbose
        self.stream = stream
        self.start_step = None  # the run's first step (after the steps of a resumed run)
        self.step = 0
        self.times = []
        self.last_print = 0.0

    def _print(self, text, end="\n"):
        stream = self.stream or sys.stdout
        stream.write(text + end)
        stream.flush()

    def on_train_begin(self, logs=None):
        self.begin = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        if self.start_step is None:
            self.start_step = epoch * self.steps_per_epoch
            self.step = self.start_step
            if self.start_step:
                self._print(f"  resumed at step {self.start_step} of {self.total_steps}")

    def seconds_per_step(self):
        """The mean time of the steps after the first (None before two steps)."""
        if len(self.times) < 2:
            return None
        return (self.times[-1] - self.times[0]) / (len(self.times) - 1)

    def eta(self):
        """Seconds left at the measured pace (None before it is measured)."""
        pace = self.seconds_per_step()
        return None if pace is None else pace * (self.total_steps - self.step)

    def line(self, logs):
        """`"step 45/300  loss 0.1234  1.23 s/step  ETA 5 min 13 s"`."""
        loss = (logs or {}).get("loss")
        pace, eta = self.seconds_per_step(), self.eta()
        return (f"  step {self.step}/{self.total_steps}"
                + (f"  loss {float(loss):.4f}" if loss is not None else "")
                + (f"  {pace:.2f} s/step  ETA {format_seconds(eta)}" if pace else ""))

    def measured(self):
        """The measured time per step and the estimated training time (after the first steps)."""
        first = self.times[0] - self.begin
        pace = self.seconds_per_step()
        total = first + pace * (self.total_steps - self.start_step - 1)
        return (f"  measured: {pace:.2f} s/step (the first step, tracing included: "
                f"{first:.1f} s); estimated training time {format_seconds(total)}, "
                f"{format_seconds(self.eta())} left")

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self.times.append(time.perf_counter())
        if len(self.times) == FIRST_STEPS + 1:
            self._print(("\r" if self.verbose == 1 else "") + self.measured().ljust(60))
        if self.verbose == 1 and (time.perf_counter() - self.last_print > 0.5
                                  or self.step == self.total_steps):
            self.last_print = time.perf_counter()
            self._print("\r" + self.line(logs).ljust(60), end="")

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose == 2:
            self._print(self.line(logs))

    def on_train_end(self, logs=None):
        if self.verbose == 1:
            self._print("")
