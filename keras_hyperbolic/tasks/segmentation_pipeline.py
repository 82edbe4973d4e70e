"""Segmenting a video from a few labelled frames, in stages: build, prepare, train, predict, write.

The protocol of the hyperbolic paper (Lensink, Peters & Haber, section
6.1.2): ONE video, the loss sees the masks of a few labelled frames only
(per-pixel sample weights 1 there and 0 elsewhere), random flips of time and
space, and every frame is predicted. The main job (`video_segmentation`), the
iUNet task, `keras-hyperbolic segment` and the benchmarks run these stages:

1. `build_network(name, num_classes, settings)`: the segmenter, the U-Net
   baseline or the iUNet, sized by a `SegmentationSettings`.
2. `prepare(model, video, targets, weights, budget_mb, max_voxels, crop)`:
   pads (reflect) to a multiple of the network's `input_multiple` along
   time, height and width, and plans (`segmentation_plan`): the whole video
   when the network's estimated training step fits what the video's arrays
   leave of the budget and convolves
   at most `max_voxels` voxels, otherwise windows of whole frames or crops in
   space and time that do.
3. `train(model, prepared, steps, learning_rate, run_dir)`: exactly `steps`
   steps (one step: the whole video, one window or one crop once; crops
   drawn around labelled pixels, the classes in turn), compiled by
   `compile_for_segmentation`, backed up every up to 30 steps so a killed
   run resumes; progress with an ETA (`segmentation_progress`).
4. `predict(model, prepared)`: the labels of every frame, cropped back; from
   windows or crops, the video is covered by tiles overlapping by a quarter
   (`TILE_OVERLAP`), whose class probabilities are blended by a tent weight
   (`blend_tiles`: highest at a tile's centre), predicted in batches.
5. `write_label_outputs`, `write_metrics`: masks, animations, metrics.json.
"""

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic import runtime
from keras_hyperbolic.data import media
from keras_hyperbolic.reversible import plain_autodiff
from keras_hyperbolic.tasks.segmentation_plan import (  # noqa: F401  (the stages' interface)
    BadCrop, BudgetTooSmall, crop_origins, largest_frames, plan_training, resident_mb)
from keras_hyperbolic.tasks.segmentation_progress import StepProgress
from keras_hyperbolic.training import standard_callbacks
from keras_hyperbolic.validation import invalid

#: Steps between two backups of a run (a killed run resumes from its last backup).
BACKUP_EVERY_STEPS = 30

# === 1. The network ===


def build_network(name, num_classes, settings):
    """The "hyperbolic" segmenter (`settings.preset`), the "unet" baseline or the "iunet"."""
    from keras_hyperbolic.models import BaselineUNet, HyperbolicSegmenter, InvertibleUNet

    if name == "hyperbolic":
        return HyperbolicSegmenter.from_preset(settings.preset, num_classes=num_classes)
    if name == "unet":
        return BaselineUNet(num_classes=num_classes, rank=3, filters=settings.unet_filters,
                            levels=settings.unet_levels)
    if name == "iunet":
        # Learnable orthogonal up/down-sampling, additive couplings, identity at initialisation;
        # a linear convolution in (RGB -> 8 channels) and out (-> class logits).
        return InvertibleUNet(rank=3, channels=8, levels=3, blocks_per_level=2,
                              hidden_channels=16, project_input=True,
                              output_channels=num_classes)
    raise invalid("name", name, "one of ['hyperbolic', 'iunet', 'unet']")


# === 2. Prepare: pad, plan the whole video, windows or crops (`segmentation_plan`) ===


def pad_amounts(size, multiple):
    """(before, after) padding bringing `size` to a multiple of `multiple` (all after)."""
    return (0, -size % multiple)


def pad_reflect(array, pads):
    """Reflect padding (edge padding along an axis of size 1, where nothing reflects)."""
    for axis, (before, after) in enumerate(pads):
        if before or after:
            mode = "reflect" if array.shape[axis] > 1 else "edge"
            width = [(0, 0)] * array.ndim
            width[axis] = (before, after)
            array = np.pad(array, width, mode=mode)
    return array


def valid_window_starts(length, window, labelled):
    """Starts of `window`-frame windows in `[0, length)` holding at least one labelled frame."""
    return [s for s in range(length - window + 1) if any(s <= f < s + window for f in labelled)]


#: How much neighbouring prediction tiles overlap, a fraction of a tile along each axis: a
#: quarter, as MONAI's sliding-window inference does by default. Half overlap (nnU-Net's)
#: predicted every voxel of the DAVIS-size video 3.7 times instead of 1.8, for no better IoU
#: (docs/guides/segment.md, "At the sizes people have").
TILE_OVERLAP = 0.25


def window_starts(length, window, overlap=TILE_OVERLAP):
    """Windows overlapping by `overlap` of their length covering `[0, length)`, the last flush."""
    if window >= length:
        return [0]
    stride = max(1, window - int(window * overlap))
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def tent(window):
    """Blending weight of a window's frames: highest at the centre, > 0 at the ends."""
    t = np.arange(window, dtype=np.float32)
    return np.minimum(t + 1, window - t)


@dataclasses.dataclass
class PreparedVideo:
    """A video ready for a network: padded arrays, the labelled frames, the training plan."""

    video: np.ndarray  # (T', H', W', C) float32, padded
    targets: np.ndarray  # (T', H', W') int32 class ids
    weights: np.ndarray  # (T', H', W') float32: 1 on labelled pixels, 0 elsewhere and in padding
    size: tuple  # (T, H, W) before padding
    multiple: int
    labelled: list
    plan: dict

    def crop(self, array):
        """`array` (padded along its first three axes) cut back to the video's size."""
        frames, height, width = self.size
        return array[:frames, :height, :width]


def prepare(model, video, targets, weights, budget_mb, max_voxels=None, crop=None):
    """Pads the video for `model`, plans whole video, windows or crops, and builds `model`.

    Args:
        model: a 3D segmentation network with an `input_multiple`.
        video: `(T, H, W, C)` float32 frames.
        targets: `(T, H, W)` class ids (read where `weights` > 0).
        weights: `(T, H, W)` per-pixel loss weights: 1 on the labelled pixels.
        budget_mb: the memory to plan for: the video's arrays
            (`segmentation_plan.resident_mb`) and one training step.
        max_voxels: the most voxels of one training step (default: `FULL`'s).
        crop: a crop size `(t, h, w)` to train on instead of the planned one.

    Raises:
        BudgetTooSmall: not even the smallest crop fits.
        BadCrop: a given `crop` the network or the video cannot take.
    """
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    size = tuple(video.shape[:3])
    multiple = int(model.input_multiple)
    pads = [pad_amounts(s, multiple) for s in size]
    padded_weights = np.zeros([s + after for s, (_, after) in zip(size, pads)], np.float32)
    padded_weights[: size[0], : size[1], : size[2]] = weights  # padding is never a label
    labelled = [int(t) for t in np.flatnonzero(weights.reshape(size[0], -1).any(axis=1))]
    prepared = PreparedVideo(
        video=pad_reflect(video, pads + [(0, 0)]),
        targets=pad_reflect(np.asarray(targets, np.int32), pads), weights=padded_weights,
        size=size, multiple=multiple, labelled=labelled, plan={})
    max_voxels = FULL.max_step_voxels if max_voxels is None else max_voxels
    # The classes from the output shape: the iUNet calls them `output_channels`.
    resident = resident_mb(prepared.video.shape,
                           model.compute_output_shape((1,) + prepared.video.shape)[-1])
    prepared.plan = plan_training(model, prepared.video.shape, multiple, budget_mb, max_voxels,
                                  crop, size, resident)
    model.build((None,) + tuple(prepared.plan["crop"]) + prepared.video.shape[-1:])
    return prepared


# === 3. Train a fixed number of steps ===


def augment(x, y, w):
    """Random flips and a random circular shift along every axis (time and space).

    The weights move with the frames they label. The time shift matters most:
    with labels on a few frames at fixed places, a network can fit them by
    where they are in the video (their distance to its first and last frame,
    their phase in the poolings) instead of by what they show, and then
    segments the other frames badly; shifted, a labelled frame is seen at every
    place. The spatial shifts show each object at every phase of the 2 x 2 and
    4 x 4 grids that the poolings cut space into, as the moving objects of the
    unlabelled frames are (measured: docs/guides/networks.md).
    """
    rank = len(x.shape) - 2
    for axis in range(1, rank + 1):
        flip = tf.random.uniform(()) < 0.5
        x, y, w = (tf.cond(flip, lambda t=t: tf.reverse(t, [axis]), lambda t=t: t)
                   for t in (x, y, w))
        shift = tf.random.uniform((), 0, tf.shape(x)[axis], tf.int32)
        x, y, w = (tf.roll(t, shift, axis=axis) for t in (x, y, w))
    return x, y, w


def video_dataset(video, masks, weights, flips=True):
    """The one video as an endless dataset of batches of 1 (optionally randomly flipped)."""
    data = tf.data.Dataset.from_tensors((video[None], masks[None], weights[None])).repeat()
    if flips:
        data = data.map(augment)
    return data.prefetch(2)


def window_dataset(video, masks, weights, window, starts, seed):
    """Endless batches of one `window`-frame slice (a random start from `starts`), flipped."""
    video, masks, weights = (tf.constant(a) for a in (video, masks, weights))
    starts = tf.constant(starts, tf.int32)
    indices = tf.data.Dataset.random(seed=seed).map(
        lambda r: starts[tf.cast(r % tf.cast(tf.size(starts), tf.int64), tf.int32)])

    def cut(start):
        return tuple(t[None, start:start + window] for t in (video, masks, weights))

    return indices.map(cut).map(augment).prefetch(2)


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


def crop_dataset(video, masks, weights, crop, origins):
    """Batches of one `crop`-sized cut at each of `origins` in turn (endless), not yet flipped.

    The cuts are made in NumPy: the video is not copied into TensorFlow.
    """
    crop = tuple(int(c) for c in crop)

    def cuts():
        while True:
            for origin in origins:
                where = tuple(slice(o, o + c) for o, c in zip(origin, crop))
                yield video[where][None], masks[where][None], weights[where][None]

    signature = (tf.TensorSpec((1,) + crop + video.shape[len(crop):], tf.float32),
                 tf.TensorSpec((1,) + crop, tf.int32), tf.TensorSpec((1,) + crop, tf.float32))
    return tf.data.Dataset.from_generator(cuts, output_signature=signature)


def _dataset(prepared, steps, seed):
    """The training batches of the plan: the whole video, windows or crops, randomly flipped."""
    arrays = (prepared.video, prepared.targets, prepared.weights)
    mode = prepared.plan["mode"]
    if mode == "whole":
        return video_dataset(*arrays)
    if mode == "windows":
        window = prepared.plan["window"]
        starts = valid_window_starts(len(prepared.video), window, prepared.labelled)
        return window_dataset(*arrays, window, starts, seed)
    crop = prepared.plan["crop"]
    origins = crop_origins(prepared.targets, prepared.weights, crop, steps, seed)
    return crop_dataset(*arrays, crop, origins).map(augment).prefetch(2)


def steps_per_backup(steps):
    """The largest divisor of `steps` up to BACKUP_EVERY_STEPS: epochs adding up to `steps` exactly."""
    return max(d for d in range(1, min(steps, BACKUP_EVERY_STEPS) + 1) if steps % d == 0)


def compile_for_segmentation(model, learning_rate, steps):
    """The training recipe: Adam, cosine decay to 5 % over `steps`, masked cross-entropy.

    The masking is the sample weights (1 on labelled pixels) that the datasets carry.
    """
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def train(model, prepared, steps, learning_rate, run_dir, seed=0, verbose=1, time_budget=None):
    """Trains `model` exactly `steps` steps on a `PreparedVideo` (whole, windows or crops by its plan).

    Args:
        model: a segmentation model producing per-voxel logits, built by `prepare`.
        prepared: the `PreparedVideo`.
        steps: training steps (one step: the whole video, one window or one crop once).
        learning_rate: the initial learning rate (`compile_for_segmentation`).
        run_dir: where `standard_callbacks` keep the backup and the CSV log.
        seed: seed of the windows' order and of the crops.
        verbose: 0 silent; 1 a progress line with an ETA; 2 a line per backup interval
            (`segmentation_progress.StepProgress`, in place of Keras's progress bar).
        time_budget: seconds after which training stops early (None: never).

    Returns:
        A dict: `steps` (run), `steps_planned`, `train_seconds`, `seconds_per_step`,
        `stopped_by_time_budget`, `final_loss`.
    """
    runtime.warn_if_onednn_off()
    data = _dataset(prepared, steps, seed)
    compile_for_segmentation(model, learning_rate, steps)
    counter = StepCounter(time_budget)
    per_epoch = steps_per_backup(steps)
    progress = [StepProgress(steps, per_epoch, verbose)] if verbose else []
    # Crops whose plain step fits the budget skip the engine's rebuilding (the plan's
    # `memory_efficient`); the stacks are switched back afterwards, so the model saves as built.
    engine = (contextlib.nullcontext() if prepared.plan["memory_efficient"]
              else plain_autodiff(model))
    start = time.perf_counter()
    with engine:
        history = model.fit(data, steps_per_epoch=per_epoch, epochs=steps // per_epoch,
                            shuffle=False, verbose=0,
                            callbacks=[counter] + progress + standard_callbacks(run_dir))
    seconds = time.perf_counter() - start
    return {
        "steps": counter.steps_done,
        "steps_planned": steps,
        "train_seconds": seconds,
        "seconds_per_step": seconds / max(counter.steps_done, 1),
        "stopped_by_time_budget": counter.stopped_by_time,
        "final_loss": float(history.history["loss"][-1]),
    }


def describe_training(result):
    """'300 steps, 1.10 s/step' (+ the time-budget note when the budget cut training)."""
    text = f"{result['steps']} steps, {result['seconds_per_step']:.2f} s/step"
    if result["stopped_by_time_budget"]:
        text += (f" (STOPPED BY THE TIME BUDGET after {result['steps']} of "
                 f"{result['steps_planned']} steps)")
    return text


# === 4. Predict in blended tiles ===


def tile_corners(shape, tile):
    """Corners of tiles of `tile` covering `shape`, overlapping by `TILE_OVERLAP` on every axis."""
    return list(itertools.product(*(window_starts(n, t) for n, t in zip(shape, tile))))


def blend_tiles(model, video, tile, batch_size=1):
    """Softmax probabilities `(*spatial, K)` of a padded video, from overlapping tiles.

    The tiles (`tile_corners`: overlapping by `TILE_OVERLAP` along every
    axis, the last flush with the end) are predicted `batch_size` at a time,
    and each voxel's probabilities are averaged over the tiles holding it,
    weighted by the product of the tents of its position in each (`tent`:
    highest at a tile's centre, where the network saw the most context). Any
    rank: `video` is `(*spatial, C)` and `tile` has one size per spatial axis.
    """
    spatial, tile = video.shape[:-1], tuple(int(t) for t in tile)
    weight = functools.reduce(np.multiply.outer, [tent(t) for t in tile])[..., None]
    corners = tile_corners(spatial, tile)
    total = None
    for first in range(0, len(corners), batch_size):
        batch = corners[first:first + batch_size]
        where = [tuple(slice(c, c + t) for c, t in zip(corner, tile)) for corner in batch]
        logits = model.predict_on_batch(np.stack([video[w] for w in where]))
        probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
        if total is None:
            total = np.zeros(spatial + probs.shape[-1:], np.float32)
        for w, p in zip(where, probs):
            total[w] += p * weight
    # The summed weights are the product of per-axis sums (the corners form a grid): divide
    # axis by axis instead of keeping a video-sized array of them.
    for axis, (n, t) in enumerate(zip(spatial, tile)):
        sums = np.zeros(n, np.float32)
        for start in window_starts(n, t):
            sums[start:start + t] += tent(t)
        total /= sums.reshape((n,) + (1,) * (len(spatial) - axis))
    return total


def predict(model, prepared):
    """int32 `(T, H, W)` class labels of every frame of a `PreparedVideo`, cropped back.

    The whole video at once when it was trained on whole, else in the plan's
    tiles (`blend_tiles`).
    """
    plan = prepared.plan
    with plain_autodiff(model):  # the same map; no custom-gradient wrapper to trace
        if plan["mode"] == "whole":
            scores = model.predict(prepared.video[None], verbose=0)[0]  # logits: the same argmax
        else:
            scores = blend_tiles(model, prepared.video, plan["tile"], plan["predict_batch"])
    return prepared.crop(np.argmax(scores, axis=-1).astype(np.int32))


# === 5. Measure and write ===


def class_iou(truth, predicted, num_classes, ignore_index=None):
    """`{class: IoU in %}` over the given arrays (a class absent from both is left out).

    Pixels whose truth is `ignore_index` (void) count for no class.
    """
    counted = truth != ignore_index if ignore_index is not None else True
    out = {}
    for c in range(num_classes):
        a, b = truth == c, (predicted == c) & counted
        union = np.logical_or(a, b).sum()
        if union:
            out[c] = float(100.0 * np.logical_and(a, b).sum() / union)
    return out


def truth_metrics(truth, labels, labelled, num_classes, ignore_index=None):
    """IoU per class over all frames with truth, its mean, and per frame (mean over classes).

    Truth pixels holding `ignore_index` (void) are left out; `ignored_pixels` counts them.
    """
    frames = sorted(truth)
    stacked_truth = np.stack([truth[f] for f in frames])
    stacked_pred = labels[frames]
    per_class = class_iou(stacked_truth, stacked_pred, num_classes, ignore_index)
    per_frame = {}
    for f in frames:
        ious = class_iou(truth[f], labels[f], num_classes, ignore_index)
        per_frame[int(f)] = {"mean_iou": float(np.mean(list(ious.values()))) if ious else None,
                             "per_class": {str(c): v for c, v in ious.items()},
                             "labelled": f in labelled}
    unlabelled = [f for f in frames if f not in labelled]
    result = {
        "mean_iou": float(np.mean(list(per_class.values()))),
        "per_class_iou": {str(c): v for c, v in per_class.items()},
        "frames_with_truth": len(frames),
        "ignored_pixels": (int(np.count_nonzero(stacked_truth == ignore_index))
                           if ignore_index is not None else 0),
        "per_frame": per_frame,
    }
    if unlabelled:
        ious = class_iou(np.stack([truth[f] for f in unlabelled]), labels[unlabelled],
                         num_classes, ignore_index)
        result["unlabelled_frames_mean_iou"] = float(np.mean(list(ious.values())))
    return result


def write_label_outputs(directory, video, labels, num_classes, fps):
    """`masks/frame_XXXXX.png`, `masks.npy` and the overlay animations; returns their names."""
    mask_dir = os.path.join(directory, "masks")
    os.makedirs(mask_dir, exist_ok=True)
    digits = max(5, len(str(len(labels) - 1)))
    for t, mask in enumerate(labels):
        media.write_mask_png(os.path.join(mask_dir, f"frame_{t:0{digits}d}.png"), mask,
                             num_classes)
    np.save(os.path.join(directory, "masks.npy"), labels)
    overlay = media.overlay_frames(video, labels, num_classes)
    animations = [media.write_animation(os.path.join(directory, "overlay.gif"), overlay, fps)]
    if media.video_writer_available():
        animations.append(media.write_animation(os.path.join(directory, "overlay.mp4"),
                                                overlay, fps))
    return {"masks": "masks/", "masks_npy": "masks.npy",
            "animations": [os.path.basename(a) for a in animations]}


def copy_step_memory(model, video, targets, weights, **config):
    """`profiling.training_step_memory` of one step on `(video, targets, weights)`, on a copy of `model`.

    A copy (the same weights; `config` overrides the model's config, e.g.
    `memory_efficient=False`): where the allocator keeps statistics the
    measurement runs two training steps, which must not change the model that
    is scored and saved. The arrays are one example each, `(T, H, W[, C])`.
    """
    from keras_hyperbolic.profiling import training_step_memory

    copy = type(model).from_config({**model.get_config(), **config})
    copy.build((None,) + tuple(video.shape))
    copy.set_weights(model.get_weights())
    copy.compile(optimizer=keras.optimizers.Adam(1e-4),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return training_step_memory(copy, video[None], targets[None], weights[None])


def write_metrics(directory, metrics):
    """`directory/metrics.json` (indented); returns its path."""
    path = os.path.join(directory, "metrics.json")
    with open(path, "w") as handle:
        json.dump(metrics, handle, indent=2)
    return path
