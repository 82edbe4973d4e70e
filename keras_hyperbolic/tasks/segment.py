"""Segment your own video or volume from a few labelled frames: what `keras-hyperbolic segment` runs.

The main job's protocol (`video_segmentation`) on the user's data: ONE video
(or a z-stack, its slices taken as time), masks given on a few frames, a 3D
network trained on the whole video with the loss weighted to the labelled
frames only, random flips of time and space, then every frame predicted.

- Any size: frames are padded (reflect) to a multiple of the network's
  `2**downs` along time, height and width, and the predictions cropped back.
- Memory: the whole video is trained on when the network's estimated
  training step (`profiling.training_step_estimate`) fits `memory_budget_mb`;
  otherwise the longest temporal windows that fit are used, each window
  holding at least one labelled frame, and the video is predicted in
  half-overlapping windows whose class probabilities are blended (a tent
  weight, highest at a window's centre).
- Output is built in `<output>.partial` and renamed to `<output>` when done.
  A killed run leaves `<output>.partial` behind; the same call again resumes
  from its last backup (`BackupAndRestore`, every up to 30 steps).

`segment_video(...)` checks every input (files, frame indices, mask sizes,
class ids) before it creates anything or imports TensorFlow, raising
`SegmentError` naming the file and the frame.
"""

import hashlib
import json
import os
import shutil
import time

import numpy as np

from keras_hyperbolic.data import media
from keras_hyperbolic.validation import check_choice, check_positive_int, invalid

NETWORKS = ("hyperbolic", "unet")
DEFAULTS = {
    "steps": 300,
    "preset": "video_cpu",
    "memory_budget_mb": 4096,
    # The main job's rates (`video_segmentation.FULL`, from `benchmarks/lr_sweep.py`), written
    # out: this module stays importable without TensorFlow (bad input fails fast).
    "learning_rate": {"hyperbolic": 3e-3, "unet": 3e-3},
    "unet_filters": 20,
    "unet_levels": 2,
    "fps": 8,
}
MODEL_FILE = "segmenter.keras"
SERVING_NAME = "segmenter"


class SegmentError(ValueError):
    """Bad input to `segment_video`, found before any training; names the file and frame."""


# === Reading and checking the inputs ===


def parse_label_arguments(labels):
    """`["3=m3.png", "labels/"]` -> list of `(frame or None, path)` (None: a folder or mask stack)."""
    if isinstance(labels, (str, os.PathLike)):
        labels = [labels]
    parsed = []
    for item in labels or ():
        if isinstance(item, tuple):
            frame, path = item
        else:
            text = os.fspath(item)
            head, sep, tail = text.partition("=")
            if sep and head.strip().lstrip("-").isdigit():
                frame, path = int(head), tail
            elif sep:
                raise SegmentError(f"--labels {text}: expected FRAME=MASK with FRAME an integer "
                                   f"frame index, got FRAME={head!r}")
            else:
                frame, path = None, text
        parsed.append((frame, os.fspath(path)))
    return parsed


def _read_label_sources(parsed):
    """`[(frame, path, raw mask, kind)]` from FRAME=MASK items, label folders and mask stacks."""
    found = []
    for frame, path in parsed:
        if frame is not None:
            found.append((frame, path) + media.read_mask_raw(path))
        elif os.path.isdir(path):
            for index, file in media.mask_files(path).items():
                found.append((index, file) + media.read_mask_raw(file))
        elif os.path.isfile(path) and os.path.splitext(path)[1].lower() in (
                ".npy", ".npz", ".tif", ".tiff"):
            stack = media.read_mask_stack(path)  # a (T, H, W) stack: masks of every frame
            for index in range(len(stack)):
                found.append((index, f"{path}[{index}]", stack[index], "index"))
        elif not os.path.exists(path):
            raise SegmentError(f"{path}: no such mask file or folder")
        else:
            raise SegmentError(f"{path}: give a mask as FRAME={path} (or a folder of masks whose "
                               "file names carry the frame index, or a (T, H, W) .npy stack)")
    return found


def _to_classes(entries):
    """Raw masks (index or colour) -> class ids, colours mapped by one shared table."""
    colour = [i for i, e in enumerate(entries) if e[3] == "colour"]
    index = [i for i, e in enumerate(entries) if e[3] == "index"]
    if colour and index:
        a, b = entries[index[0]], entries[colour[0]]
        raise SegmentError(f"{b[1]} (frame {b[0]}) is a colour mask but {a[1]} (frame {a[0]}) "
                           "holds class ids: use one kind for all masks (palette/grey PNGs or "
                           "colour PNGs)")
    ids, colours = media.colours_to_classes([entries[i][2] for i in colour])
    out = [(f, p, m) for f, p, m, _ in entries]
    for i, mask in zip(colour, ids):
        out[i] = (entries[i][0], entries[i][1], mask)
    return out, (colours if colour else None)


def check_labels(entries, num_frames, frame_size, what="label"):
    """Checks frame indices and mask sizes; returns `{frame: int64 mask}` in frame order."""
    if not entries:
        raise SegmentError(f"no labelled frame: give at least one --labels FRAME=MASK")
    masks = {}
    sources = {}
    for frame, path, mask in entries:
        if not 0 <= frame < num_frames:
            raise SegmentError(f"{path}: frame {frame} is out of range: the video has "
                               f"{num_frames} frames (indices 0 to {num_frames - 1})")
        if frame in masks:
            raise SegmentError(f"{path}: frame {frame} is {what}led twice (also by "
                               f"{sources[frame]})")
        if tuple(mask.shape) != tuple(frame_size):
            raise SegmentError(f"{path} (frame {frame}): the mask is {mask.shape[0]} x "
                               f"{mask.shape[1]} (height x width) but the video's frames are "
                               f"{frame_size[0]} x {frame_size[1]}")
        masks[frame] = mask.astype(np.int64)
        sources[frame] = path
    return dict(sorted(masks.items())), sources


def check_classes(masks, sources):
    """The classes `0 .. K-1` the labels use: every id in between appears, K >= 2."""
    present = sorted(set().union(*(np.unique(m).tolist() for m in masks.values())))
    if len(present) < 2:
        raise SegmentError(f"the labels hold fewer than two classes (only class "
                           f"{present[0]} in {', '.join(sources.values())}): mark at least "
                           "one other class")
    missing = sorted(set(range(present[-1] + 1)) - set(present))
    if missing:
        frame = next(f for f, m in masks.items() if (m == present[-1]).any())
        raise SegmentError(
            f"{sources[frame]} (frame {frame}): class id {present[-1]} is beyond the classes "
            f"seen: class ids {missing} appear in no labelled mask (classes must be numbered "
            f"0 to K-1; seen: {present})")
    return present[-1] + 1


def check_truth(entries, num_frames, frame_size, num_classes):
    masks, sources = check_labels(entries, num_frames, frame_size, what="truth-label")
    for frame, mask in masks.items():
        if mask.max() >= num_classes:
            raise SegmentError(f"{sources[frame]} (frame {frame}): class id {int(mask.max())} is "
                               f"beyond the classes seen in the labels (0 to {num_classes - 1})")
    return masks


def load_inputs(input, labels, truth=None):
    """Reads and checks the video, the labels and the truth; returns a dict (no TensorFlow)."""
    try:
        video = media.read_video(input)
    except media.MediaError as error:
        raise SegmentError(str(error)) from None
    frames, height, width = video.shape[:3]
    try:
        label_entries = _read_label_sources(parse_label_arguments(labels))
        truth_entries = _read_label_sources(parse_label_arguments(truth)) if truth else []
    except media.MediaError as error:
        raise SegmentError(str(error)) from None
    converted, colours = _to_classes(label_entries + truth_entries)
    label_part, truth_part = converted[:len(label_entries)], converted[len(label_entries):]
    masks, sources = check_labels(label_part, frames, (height, width))
    num_classes = check_classes(masks, sources)
    truth_masks = (check_truth(truth_part, frames, (height, width), num_classes)
                   if truth else None)
    return {"video": video, "labels": masks, "label_sources": sources,
            "num_classes": num_classes, "truth": truth_masks, "colours": colours}


# === Sizes, windows and memory ===


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


def window_starts(length, window):
    """Half-overlapping windows covering `[0, length)`, the last one flush with the end."""
    if window >= length:
        return [0]
    stride = max(1, window // 2)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def tent(window):
    """Blending weight of a window's frames: highest at the centre, > 0 at the ends."""
    t = np.arange(window, dtype=np.float32)
    return np.minimum(t + 1, window - t)


def largest_frames(model, height, width, channels, budget_mb, multiple, limit=4096):
    """The most frames (a multiple of `multiple`, at most `limit`) whose estimated step fits.

    The estimate is affine in the number of frames (weights plus per-frame
    activations), so two estimates place the answer; it is then checked, and
    moved by `multiple` frames until it fits and the next size does not.
    Returns 0 when not even `multiple` frames fit.
    """
    from keras_hyperbolic.profiling import training_step_estimate

    cache = {}

    def estimate_mb(frames):
        if frames not in cache:
            shape = (frames, height, width, channels)
            cache[frames] = training_step_estimate(model, shape)["total_bytes"] / 2**20
        return cache[frames]

    limit = limit // multiple * multiple
    small, large = multiple, 2 * multiple
    slope = (estimate_mb(large) - estimate_mb(small)) / multiple
    guess = small + (budget_mb - estimate_mb(small)) / max(slope, 1e-12)
    frames = int(min(max(guess // multiple * multiple, multiple), limit))
    while frames > multiple and estimate_mb(frames) > budget_mb:
        frames -= multiple
    while frames + multiple <= limit and estimate_mb(frames + multiple) <= budget_mb:
        frames += multiple
    return frames if estimate_mb(frames) <= budget_mb else 0


def plan_training(model, padded_shape, multiple, budget_mb, labelled):
    """`{"mode": "whole" | "windows", "window", "estimate_mb", ...}` from the network's estimate."""
    from keras_hyperbolic.profiling import training_step_estimate

    frames = padded_shape[0]
    mib = 2**20
    whole = training_step_estimate(model, padded_shape)["total_bytes"] / mib
    plan = {"whole_video_estimate_mb": whole, "memory_budget_mb": budget_mb}
    if whole <= budget_mb:
        return {"mode": "whole", "window": frames, "estimate_mb": whole, **plan}
    window = largest_frames(model, *padded_shape[1:], budget_mb, multiple,
                            limit=frames - multiple)
    if window == 0:
        smallest = training_step_estimate(model, (multiple,) + tuple(padded_shape[1:]))
        raise SegmentError(
            f"the memory budget of {budget_mb:g} MB is too small: one training step on a window "
            f"of {multiple} frames of {padded_shape[1]} x {padded_shape[2]} needs about "
            f"{smallest['total_bytes'] / mib:.0f} MB (whole video: {whole:.0f} MB); raise "
            "--memory-budget or give a smaller video")
    estimate = training_step_estimate(model, (window,) + tuple(padded_shape[1:]))
    return {"mode": "windows", "window": window, "estimate_mb": estimate["total_bytes"] / mib,
            "windows_with_labels": len(valid_window_starts(frames, window, labelled)), **plan}


# === Model, data and training ===


def build_network(network, num_classes, channels, preset, unet_filters, unet_levels):
    from keras_hyperbolic.models import BaselineUNet, HyperbolicSegmenter

    if network == "hyperbolic":
        model = HyperbolicSegmenter.from_preset(preset, num_classes=num_classes)
        if model.rank != 3:
            raise SegmentError(f"--preset {preset} is a {model.rank}D network; segment needs a "
                               "3D one (time, height, width)")
        return model, model.input_multiple
    model = BaselineUNet(num_classes=num_classes, rank=3, filters=unet_filters,
                         levels=unet_levels)
    return model, 2**unet_levels


def window_dataset(video, masks, weights, window, starts, seed):
    """Endless batches of one `window`-frame slice (a random start from `starts`), flipped."""
    import tensorflow as tf

    from keras_hyperbolic.tasks.video_training import augment

    video, masks, weights = (tf.constant(a) for a in (video, masks, weights))
    starts = tf.constant(starts, tf.int32)
    indices = tf.data.Dataset.random(seed=seed).map(
        lambda r: starts[tf.cast(r % tf.cast(tf.size(starts), tf.int64), tf.int32)])

    def cut(start):
        return tuple(t[None, start:start + window] for t in (video, masks, weights))

    return indices.map(cut).map(augment).prefetch(2)


def predict_probabilities(model, video, window):
    """Softmax probabilities `(T, H, W, K)` of a padded video, in blended windows when needed."""
    import keras

    frames = len(video)
    if window >= frames:
        logits = model.predict(video[None], verbose=0)[0]
        return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
    total = None
    weight = np.zeros(frames, np.float32)
    blend = tent(window)
    for start in window_starts(frames, window):
        logits = model.predict(video[None, start:start + window], verbose=0)[0]
        probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
        if total is None:
            total = np.zeros((frames,) + probs.shape[1:], np.float32)
        total[start:start + window] += probs * blend[:, None, None, None]
        weight[start:start + window] += blend
    return total / weight[:, None, None, None]


def class_iou(truth, predicted, num_classes):
    """`{class: IoU in %}` over the given arrays (a class absent from both is left out)."""
    out = {}
    for c in range(num_classes):
        a, b = truth == c, predicted == c
        union = np.logical_or(a, b).sum()
        if union:
            out[c] = float(100.0 * np.logical_and(a, b).sum() / union)
    return out


def truth_metrics(truth, labels, labelled, num_classes):
    """IoU per class over all frames with truth, its mean, and per frame (mean over classes)."""
    frames = sorted(truth)
    stacked_truth = np.stack([truth[f] for f in frames])
    stacked_pred = labels[frames]
    per_class = class_iou(stacked_truth, stacked_pred, num_classes)
    per_frame = {}
    for f in frames:
        ious = class_iou(truth[f], labels[f], num_classes)
        per_frame[int(f)] = {"mean_iou": float(np.mean(list(ious.values()))),
                             "per_class": {str(c): v for c, v in ious.items()},
                             "labelled": f in labelled}
    unlabelled = [f for f in frames if f not in labelled]
    result = {
        "mean_iou": float(np.mean(list(per_class.values()))),
        "per_class_iou": {str(c): v for c, v in per_class.items()},
        "frames_with_truth": len(frames),
        "per_frame": per_frame,
    }
    if unlabelled:
        ious = class_iou(np.stack([truth[f] for f in unlabelled]), labels[unlabelled],
                         num_classes)
        result["unlabelled_frames_mean_iou"] = float(np.mean(list(ious.values())))
    return result


# === The job ===


def _fingerprint(inputs, settings):
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(inputs["video"]).tobytes())
    for frame, mask in inputs["labels"].items():
        digest.update(str(frame).encode())
        digest.update(np.ascontiguousarray(mask).tobytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _prepare_work_dir(work, fingerprint, verbose):
    """Creates `work` or keeps it for resuming when it holds the same run; returns True to resume."""
    stamp = os.path.join(work, "run.json")
    if os.path.isdir(work):
        try:
            same = json.load(open(stamp))["fingerprint"] == fingerprint
        except (OSError, ValueError, KeyError):
            raise SegmentError(f"{work} exists but is not an unfinished segment run; remove it "
                               "or choose another output directory") from None
        if same:
            if verbose:
                print(f"resuming the unfinished run in {work}")
            return True
        if verbose:
            print(f"{work} holds an unfinished run with other inputs or settings: starting anew")
        shutil.rmtree(work)
    os.makedirs(work)
    with open(stamp, "w") as handle:
        json.dump({"fingerprint": fingerprint}, handle)
    return False


def segment_video(
    input,
    labels,
    output,
    *,
    steps=None,
    network="hyperbolic",
    preset=None,
    memory_budget_mb=None,
    truth=None,
    export=None,
    overwrite=False,
    learning_rate=None,
    unet_filters=None,
    unet_levels=None,
    seed=0,
    verbose=1,
    fps=None,
):
    """Trains a 3D network on one video from a few labelled frames and segments every frame.

    Args:
        input: a video file (GIF; MP4/AVI/MOV with `keras-hyperbolic[video]`),
            a folder of frames, a `.npy`/`.npz` `(T, H, W[, C])` array or a
            multi-page TIFF (a z-stack: slices are frames).
        labels: `"FRAME=MASK"` strings (or `(frame, path)` pairs), folders of
            masks whose names carry the frame index, or a `(T, H, W)` mask
            stack. Masks: palette/grey/colour PNG or `.npy` class ids (see
            `keras_hyperbolic.data.media`); classes are 0 (background) to K-1.
        output: the output directory (must not exist unless `overwrite`).
        steps: training steps (one step: the whole video or one window); default 300.
        network: "hyperbolic" (`HyperbolicSegmenter`) or "unet" (`BaselineUNet`).
        preset: the HyperbolicSegmenter preset (default "video_cpu").
        memory_budget_mb: training-step memory to plan for (default 4096 MB).
        truth: masks of any frames (same forms as `labels`) to measure IoU on.
        export: a TF Serving base directory to export the trained model to.
        overwrite: replace an existing `output`.
        learning_rate: Adam's initial rate (default 3e-3 for both, the main job's).
        unet_filters, unet_levels: the U-Net's size (default 20 filters, 2 levels).
        seed: seed of the weights and of the windows.
        verbose: 0 silent, 1 Keras progress bar, 2 one line per epoch.
        fps: frames per second of the overlay animation (default 8).

    Returns:
        A dict: `model`, `labels` (int32 `(T, H, W)` predicted classes),
        `metrics` (also in `metrics.json`) and `output`.

    Raises:
        SegmentError: bad input (unreadable or empty files, mask sizes,
            frame indices, class ids, too few classes, an existing output),
            before anything is created or trained.
    """
    settings = {
        "steps": check_positive_int(DEFAULTS["steps"] if steps is None else steps, "steps"),
        "network": check_choice(network, NETWORKS, "network"),
        "preset": DEFAULTS["preset"] if preset is None else preset,
        "memory_budget_mb": float(DEFAULTS["memory_budget_mb"] if memory_budget_mb is None
                                  else memory_budget_mb),
        "learning_rate": float(DEFAULTS["learning_rate"][network] if learning_rate is None
                               else learning_rate),
        "unet_filters": check_positive_int(unet_filters or DEFAULTS["unet_filters"],
                                           "unet_filters"),
        "unet_levels": check_positive_int(DEFAULTS["unet_levels"] if unet_levels is None
                                          else unet_levels, "unet_levels"),
        "seed": int(seed),
    }
    if not settings["memory_budget_mb"] > 0:
        raise invalid("memory_budget_mb", memory_budget_mb, "a positive number of megabytes")
    if not settings["learning_rate"] > 0:
        raise invalid("learning_rate", learning_rate, "a positive number")
    fps = check_positive_int(DEFAULTS["fps"] if fps is None else fps, "fps")
    from keras_hyperbolic.models.presets import PRESETS

    if network == "hyperbolic" and settings["preset"] not in PRESETS:
        raise invalid("preset", settings["preset"], f"one of {sorted(PRESETS)}")
    output = os.path.normpath(os.fspath(output))
    if os.path.exists(output) and not overwrite:
        raise SegmentError(f"{output} already exists; pass --overwrite to replace it")
    if os.path.exists(output) and not os.path.isdir(output):
        raise SegmentError(f"{output} exists and is not a directory")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise SegmentError(f"the parent directory of {output} does not exist: {parent}")
    inputs = load_inputs(input, labels, truth)
    if export is not None and os.path.exists(export) and not os.path.isdir(export):
        raise SegmentError(f"--export {export} exists and is not a directory")

    # === Everything checked: TensorFlow from here on ===
    import keras

    from keras_hyperbolic import runtime
    from keras_hyperbolic.tasks import video_training

    video, masks = inputs["video"], inputs["labels"]
    frames, height, width, channels = video.shape
    num_classes = inputs["num_classes"]
    labelled = sorted(masks)
    keras.utils.set_random_seed(settings["seed"])
    model, multiple = build_network(network, num_classes, channels, settings["preset"],
                                    settings["unet_filters"], settings["unet_levels"])
    pads = [pad_amounts(s, multiple) for s in (frames, height, width)]
    padded_video = pad_reflect(video, pads + [(0, 0)])
    padded_shape = padded_video.shape
    targets = np.zeros((frames, height, width), np.int32)
    weights = np.zeros((frames, height, width), np.float32)
    for f, mask in masks.items():
        targets[f], weights[f] = mask, 1.0
    padded_targets = pad_reflect(targets, pads)
    padded_weights = np.zeros(padded_shape[:3], np.float32)  # padding is never a label
    padded_weights[:frames, :height, :width] = weights
    plan = plan_training(model, padded_shape, multiple, settings["memory_budget_mb"], labelled)
    if verbose:
        print(f"video {video.shape} ({'grey' if channels == 1 else 'RGB'}), {num_classes} "
              f"classes, labelled frames {labelled}; padded to {padded_shape[:3]} "
              f"(multiples of {multiple})")
        print(f"network: {type(model).__name__} ({network}); training on "
              + ("the whole video" if plan["mode"] == "whole" else
                 f"windows of {plan['window']} frames holding a labelled frame")
              + f": estimated step memory {plan['estimate_mb']:.0f} MB of the "
              f"{settings['memory_budget_mb']:g} MB budget"
              + (f" (whole video: {plan['whole_video_estimate_mb']:.0f} MB)"
                 if plan["mode"] == "windows" else ""))

    work = output + ".partial"
    resumed = _prepare_work_dir(work, _fingerprint(inputs, {**settings, "input": str(input)}),
                                verbose)
    model.build((None, plan["window"]) + tuple(padded_shape[1:]))
    if plan["mode"] == "whole":
        data = video_training.video_dataset(padded_video, padded_targets, padded_weights)
    else:
        starts = valid_window_starts(padded_shape[0], plan["window"], labelled)
        data = window_dataset(padded_video, padded_targets, padded_weights, plan["window"],
                              starts, settings["seed"])
    if verbose:
        print(f"\n== training {settings['steps']} steps, {model.count_params():,} parameters")
    result = video_training.train_for_steps(
        model, data, settings["steps"], settings["learning_rate"],
        run_dir=os.path.join(work, "run"), verbose=verbose)

    start = time.perf_counter()
    probabilities = predict_probabilities(model, padded_video, plan["window"])
    predict_seconds = time.perf_counter() - start
    labels_out = np.argmax(probabilities[:frames, :height, :width], axis=-1).astype(np.int32)

    mask_dir = os.path.join(work, "masks")
    os.makedirs(mask_dir, exist_ok=True)
    digits = max(5, len(str(frames - 1)))
    for t in range(frames):
        media.write_mask_png(os.path.join(mask_dir, f"frame_{t:0{digits}d}.png"), labels_out[t],
                             num_classes)
    np.save(os.path.join(work, "masks.npy"), labels_out)
    overlay = media.overlay_frames(video, labels_out, num_classes)
    animations = [media.write_animation(os.path.join(work, "overlay.gif"), overlay, fps)]
    if media.video_writer_available():
        animations.append(media.write_animation(os.path.join(work, "overlay.mp4"), overlay, fps))
    model.save(os.path.join(work, MODEL_FILE))

    metrics = {
        "input": os.fspath(input),
        "video_shape": list(video.shape),
        "padded_shape": list(padded_shape),
        "num_classes": num_classes,
        "labelled_frames": labelled,
        "label_files": {str(f): p for f, p in inputs["label_sources"].items()},
        "class_colours": inputs["colours"],
        "settings": settings,
        "network": type(model).__name__,
        "parameters": int(model.count_params()),
        "training": {**plan, **result, "steps_this_run": result["steps"],
                     "resumed": resumed or result["steps"] < settings["steps"]},
        "predict_seconds": predict_seconds,
        "onednn": runtime.onednn_enabled(),
        "outputs": {"masks": "masks/", "masks_npy": "masks.npy", "model": MODEL_FILE,
                    "animations": [os.path.basename(a) for a in animations]},
    }
    del metrics["training"]["steps"]
    if inputs["truth"] is not None:
        metrics["truth"] = truth_metrics(inputs["truth"], labels_out, set(labelled), num_classes)
    with open(os.path.join(work, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    os.remove(os.path.join(work, "run.json"))

    if os.path.exists(output):  # --overwrite: the old output goes only once the new one is whole
        old = output + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(output, old)
        os.rename(work, output)
        shutil.rmtree(old)
    else:
        os.rename(work, output)
    exported = None
    if export is not None:
        from keras_hyperbolic.export import export_saved_model

        exported = export_saved_model(model, export, SERVING_NAME, overwrite=overwrite)
        metrics["exported"] = exported
        with open(os.path.join(output, "metrics.json"), "w") as handle:
            json.dump(metrics, handle, indent=2)
    if verbose:
        print("\n" + report(metrics, output))
    return {"model": model, "labels": labels_out, "metrics": metrics, "output": output}


def report(metrics, output):
    """A few lines: training mode, steps and time, IoU with truth, the files written."""
    training = metrics["training"]
    lines = [
        f"{metrics['network']}: {training['steps_this_run']} steps this run"
        + (" (resumed)" if training["resumed"] else "")
        + f", {training['seconds_per_step']:.2f} s/step; trained on "
        + ("the whole video" if training["mode"] == "whole"
           else f"windows of {training['window']} frames")
        + f" (estimated step memory {training['estimate_mb']:.0f} MB)",
    ]
    truth = metrics.get("truth")
    if truth:
        per_class = ", ".join(f"{c}: {v:.1f}" for c, v in truth["per_class_iou"].items())
        lines.append(f"IoU over {truth['frames_with_truth']} frames: mean {truth['mean_iou']:.1f} "
                     f"(per class {per_class})"
                     + (f"; unlabelled frames only {truth['unlabelled_frames_mean_iou']:.1f}"
                        if "unlabelled_frames_mean_iou" in truth else ""))
    lines.append(f"wrote {output}/: masks/ ({metrics['video_shape'][0]} PNGs), masks.npy, "
                 + ", ".join(metrics["outputs"]["animations"]) + f", {MODEL_FILE}, metrics.json")
    if "exported" in metrics:
        lines.append(f"exported the model to {metrics['exported']}")
    return "\n".join(lines)


# === Demo data ===


def write_demo_data(output, frames=24, height=48, width=48, num_digits=3, seed=0,
                    overwrite=False):
    """Writes the composed digit video with one class per digit, ready for `segment`.

    Files: `video.gif`, `labels/frame_XXX.png` (palette PNGs of the three
    labelled frames), `truth/frame_XXX.png` (every frame) and `truth.npy`.

    Returns:
        A dict: `video`, `labels` (list of paths), `truth`, `labelled_frames`, `command`.
    """
    from keras_hyperbolic.data import make_digit_video

    output = os.path.normpath(os.fspath(output))
    if os.path.exists(output) and not overwrite:
        raise SegmentError(f"{output} already exists; pass --overwrite to replace it")
    data = make_digit_video(frames=frames, height=height, width=width, num_digits=num_digits,
                            digit_size=min(24, max(2, min(height, width) * 5 // 12)), seed=seed)
    video = (data["video"] * 255).round().astype(np.uint8)
    instances = data["instances"]
    work = output + ".partial"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "labels"))
    os.makedirs(os.path.join(work, "truth"))
    media.write_animation(os.path.join(work, "video.gif"), video, fps=DEFAULTS["fps"])
    digits = len(str(frames - 1))
    for t in range(frames):
        media.write_mask_png(os.path.join(work, "truth", f"frame_{t:0{digits}d}.png"),
                             instances[t], num_digits + 1)
    for t in data["labelled_frames"]:
        shutil.copy(os.path.join(work, "truth", f"frame_{t:0{digits}d}.png"),
                    os.path.join(work, "labels", f"frame_{t:0{digits}d}.png"))
    np.save(os.path.join(work, "truth.npy"), instances)
    if os.path.exists(output):
        shutil.rmtree(output)
    os.rename(work, output)
    return {
        "video": os.path.join(output, "video.gif"),
        "labels": [os.path.join(output, "labels", f"frame_{t:0{digits}d}.png")
                   for t in data["labelled_frames"]],
        "truth": os.path.join(output, "truth"),
        "labelled_frames": list(data["labelled_frames"]),
        "digits": list(data["digits"]),
        "command": (f"keras-hyperbolic segment {output}/video.gif --labels {output}/labels "
                    f"--truth {output}/truth --out segmented"),
    }
