"""What the video tasks share: the one-video dataset, training for a fixed number of steps, IoU, the PNG.

The paper's protocol (Lensink, Peters & Haber, section 6.1.2): ONE video, the
loss sees the masks of a few labelled frames (per-pixel sample weights 1 there
and 0 elsewhere), and the IoU is measured over all frames. One training step
is one pass over the whole video, so "epochs" of these tasks are steps.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic import runtime
from keras_hyperbolic.data import segmentation_iou
from keras_hyperbolic.training import standard_callbacks

#: Steps between two backups of a run (a killed run resumes from its last backup).
BACKUP_EVERY_STEPS = 30


class StepCounter(keras.callbacks.Callback):
    """Counts training steps; with `seconds`, stops training once they have passed.

    The wall-clock limit is an explicit option only: by default training runs
    its fixed number of steps, so a slower machine gets the same model, later.
    """

    def __init__(self, seconds=None):
        super().__init__()
        self.seconds = seconds
        self.steps_done = 0
        self.stopped_by_time = False

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done += 1
        if self.seconds is not None and time.perf_counter() - self.start > self.seconds:
            self.stopped_by_time = True
            self.model.stop_training = True


def augment(x, y, w):
    """Random flips of time and space (the weights flip with the frames they label)."""
    rank = len(x.shape) - 2
    for axis in range(1, rank + 1):
        flip = tf.random.uniform(()) < 0.5
        x, y, w = (tf.cond(flip, lambda t=t: tf.reverse(t, [axis]), lambda t=t: t)
                   for t in (x, y, w))
    return x, y, w


def video_dataset(video, masks, weights, flips=True):
    """The one video as an endless dataset of batches of 1 (optionally randomly flipped)."""
    data = tf.data.Dataset.from_tensors((video[None], masks[None], weights[None])).repeat()
    if flips:
        data = data.map(augment)
    return data.prefetch(2)


def steps_per_backup(steps):
    """The largest divisor of `steps` up to BACKUP_EVERY_STEPS: epochs that add up to `steps` exactly."""
    return max(d for d in range(1, min(steps, BACKUP_EVERY_STEPS) + 1) if steps % d == 0)


def train_for_steps(model, data, steps, learning_rate, run_dir, verbose=1, time_budget=None):
    """Compiles `model` (Adam, cosine decay, masked cross-entropy) and trains exactly `steps` steps.

    Args:
        model: a segmentation model producing per-voxel logits.
        data: `(video, masks, weights)` arrays of one video (trained on whole,
            randomly flipped), or a `tf.data.Dataset` of such batches.
        steps: training steps (one step = the whole video once).
        learning_rate: Adam's initial learning rate (cosine decay to 5 %).
        run_dir: where `standard_callbacks` keep the backup and the CSV log.
        verbose: Keras `fit` verbosity.
        time_budget: seconds after which training stops early (None: never).

    Returns:
        A dict: `steps` (run), `steps_planned`, `train_seconds`, `seconds_per_step`,
        `stopped_by_time_budget`, `final_loss`.
    """
    runtime.warn_if_onednn_off()
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    counter = StepCounter(time_budget)
    per_epoch = steps_per_backup(steps)
    start = time.perf_counter()
    history = model.fit(
        data if isinstance(data, tf.data.Dataset) else video_dataset(*data),
        steps_per_epoch=per_epoch, epochs=steps // per_epoch, shuffle=False,
        callbacks=[counter] + standard_callbacks(run_dir), verbose=verbose,
    )
    seconds = time.perf_counter() - start
    return {
        "steps": counter.steps_done,
        "steps_planned": steps,
        "train_seconds": seconds,
        "seconds_per_step": seconds / max(counter.steps_done, 1),
        "stopped_by_time_budget": counter.stopped_by_time,
        "final_loss": float(history.history["loss"][-1]),
    }


def predict_labels(model, video):
    """Per-voxel class labels of one video (argmax of the logits)."""
    logits = model.predict(video[None], verbose=0)[0]
    return np.argmax(logits, axis=-1).astype(np.int32)


def evaluate(model, video, masks):
    """`(labels, IoUs over all frames)` of a binary segmentation model on one video."""
    labels = predict_labels(model, video)
    return labels, segmentation_iou(masks, labels)


def _overlay(frame, mask, colour):
    out = frame.copy()
    out[mask.astype(bool)] = 0.45 * out[mask.astype(bool)] + 0.55 * np.asarray(colour)
    return out


def write_slices_png(path, video, masks, predictions, labelled_frames, scale=3):
    """Rows: video, true mask (green), each model's prediction (red); columns: frames.

    Labelled frames are marked by a white bar on top. Returns the frames shown.
    """
    from PIL import Image

    frames = len(video)
    picked = sorted(set(np.linspace(0, frames - 1, 8).round().astype(int)) | set(labelled_frames))
    rows = [[video[t] for t in picked], [_overlay(video[t], masks[t], (0, 1, 0)) for t in picked]]
    for pred in predictions.values():
        rows.append([_overlay(video[t], pred[t], (1, 0, 0)) for t in picked])
    pad = np.ones((video.shape[1], 2, 3), np.float32)
    grid = np.concatenate(
        [np.concatenate(sum(([img, pad] for img in row), [])[:-1], axis=1) for row in rows], axis=0
    )
    bar = np.zeros((3, grid.shape[1], 3), np.float32)
    for i, t in enumerate(picked):
        if t in labelled_frames:
            x0 = i * (video.shape[2] + 2)
            bar[:, x0 : x0 + video.shape[2]] = 1.0
    grid = np.concatenate([bar, grid], axis=0)
    image = Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.save(path)
    return picked


def describe_training(result):
    """'300 steps, 1.10 s/step' (+ the time-budget note when the budget cut training)."""
    text = f"{result['steps']} steps, {result['seconds_per_step']:.2f} s/step"
    if result["stopped_by_time_budget"]:
        text += (f" (STOPPED BY THE TIME BUDGET after {result['steps']} of "
                 f"{result['steps_planned']} steps)")
    return text

