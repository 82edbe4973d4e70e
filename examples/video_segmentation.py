"""The main job: segment a whole video from three labelled frames with a 3D HyperbolicSegmenter.

The hyperbolic paper's headline experiment (Lensink, Peters & Haber, section
6.1.2) trains a video-to-video network on ONE video whose labels exist at three
time slices only, and reaches a mean IoU of 92.7 on DAVIS, with 7x less memory
than the same network without reversibility. Here the video is composed from
real data shipped with installed packages (scikit-learn handwritten digits
moving over a panning scikit-image texture, `keras_hyperbolic.data.make_digit_video`),
so every frame's mask is exact; only three frames' masks are given to the
loss (per-pixel sample weights are 1 on those frames and 0 elsewhere).

In the same run a plain Keras 3D U-Net of similar parameter count is trained
the same way (same data, loss, optimiser, steps) as the baseline. The script
prints the mean / positive / negative IoU over ALL frames for both, their
training-step peak memories, writes a PNG of slices with the predicted masks
over the video, and saves both trained models (.keras).

Run:
    python examples/video_segmentation.py                 # the full job (~10 min on 2 cores)
    python examples/video_segmentation.py --quick         # CI-sized (seconds)
    python examples/video_segmentation.py --output DIR --steps 300
"""

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_hyperbolic.data import make_digit_video, segmentation_iou  # noqa: E402
from keras_hyperbolic.models import BaselineUNet, HyperbolicSegmenter  # noqa: E402
from keras_hyperbolic.training import standard_callbacks  # noqa: E402

FULL = {
    "frames": 32, "height": 64, "width": 64, "steps": 300, "learning_rate": 1e-2,
    # 20 filters: 608k parameters, against the segmenter's 568k ("similar parameter count").
    "preset": "video_cpu", "unet_filters": 20, "time_budget": 420.0,
}
QUICK = {
    "frames": 8, "height": 16, "width": 16, "steps": 3, "learning_rate": 1e-2,
    "preset": "tiny_3d", "unet_filters": 2, "time_budget": 60.0,
}


class TimeBudget(keras.callbacks.Callback):
    """Stops training once `seconds` of wall-clock time have passed."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.steps_done = 0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done += 1
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def _augment(x, y, w):
    # Flips of time and space keep the three labelled frames labelled (the
    # weights flip with them) and show the network moving content both ways.
    for axis in (1, 2, 3):
        flip = tf.random.uniform(()) < 0.5
        x, y, w = (tf.cond(flip, lambda t=t: tf.reverse(t, [axis]), lambda t=t: t) for t in (x, y, w))
    return x, y, w


def _dataset(video, masks, weights, augment):
    data = tf.data.Dataset.from_tensors((video[None], masks[None], weights[None])).repeat()
    if augment:
        data = data.map(_augment)
    return data.prefetch(2)


def step_memory(model, video, masks, weights):
    """Peak bytes of one training step (allocator, CPU:0) and the bytes in use before it."""
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        model.train_on_batch(video[None], masks[None], sample_weight=weights[None])
        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
        return {"peak_mb": peak / 2**20, "step_extra_mb": (peak - before) / 2**20,
                "source": "allocator"}
    except (ValueError, RuntimeError, tf.errors.OpError):
        import resource

        model.train_on_batch(video[None], masks[None], sample_weight=weights[None])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"peak_mb": peak / 2**20, "step_extra_mb": float("nan"), "source": "rss"}


def train_one(model, data, steps, learning_rate, time_budget, verbose, run_dir):
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(steps, 1), alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    budget = TimeBudget(time_budget)
    # The steps are split into epochs of about 30 so that BackupAndRestore
    # (standard_callbacks) backs up every 30 steps: a killed run started again
    # with the same command resumes from its last backup.
    epochs = max(1, math.ceil(steps / 30))
    start = time.perf_counter()
    history = model.fit(
        _dataset(*data, augment=True), steps_per_epoch=math.ceil(steps / epochs), epochs=epochs,
        callbacks=[budget] + standard_callbacks(run_dir), verbose=verbose,
    )
    return {
        "train_seconds": time.perf_counter() - start,
        "steps": budget.steps_done,
        "final_loss": float(history.history["loss"][-1]),
    }


def evaluate(model, video, masks):
    logits = model.predict(video[None], verbose=0)[0]
    predictions = np.argmax(logits, axis=-1).astype(np.int32)
    return predictions, segmentation_iou(masks, predictions)


def _overlay(frame, mask, colour):
    out = frame.copy()
    out[mask.astype(bool)] = 0.45 * out[mask.astype(bool)] + 0.55 * np.asarray(colour)
    return out


def write_png(path, video, masks, predictions, labelled_frames, scale=3):
    """Rows: video, true mask (green), each model's prediction (red); columns: frames."""
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
    # Mark labelled frames with a white bar on top.
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


def train_video_segmentation(
    output="outputs/video_segmentation",
    quick=False,
    steps=None,
    learning_rate=None,
    preset=None,
    unet_filters=None,
    time_budget=None,
    train_unet=True,
    seed=0,
    verbose=2,
):
    """Trains the main job and returns `{"model", "unet", "metrics"}`.

    `metrics` holds, per network, the IoUs over all frames, the training-step
    memory, the training time and parameter count, plus the run's settings.
    Files written under `output`: `hyperbolic_segmenter.keras`,
    `unet_baseline.keras`, `slices.png`, `metrics.json`.
    """
    settings = dict(QUICK if quick else FULL)
    for key, value in (("steps", steps), ("learning_rate", learning_rate), ("preset", preset),
                       ("unet_filters", unet_filters), ("time_budget", time_budget)):
        if value is not None:
            settings[key] = value
    keras.utils.set_random_seed(seed)
    os.makedirs(output, exist_ok=True)

    data = make_digit_video(
        frames=settings["frames"], height=settings["height"], width=settings["width"],
        digit_size=min(24, settings["height"] // 2), seed=seed,
    )
    video, masks, weights = data["video"], data["masks"], data["weights"]
    labelled = data["labelled_frames"]
    print(f"video {video.shape}, digits {data['digits']}, labelled frames {labelled} of "
          f"{len(video)}, foreground {100 * masks.mean():.1f}% of pixels")

    networks = {
        "hyperbolic": HyperbolicSegmenter.from_preset(settings["preset"], num_classes=2),
    }
    if train_unet:
        networks["unet"] = BaselineUNet(num_classes=2, rank=3, filters=settings["unet_filters"],
                                        levels=2)
    metrics = {"settings": settings, "labelled_frames": list(labelled)}
    predictions = {}
    for name, model in networks.items():
        model.build((None,) + video.shape)
        print(f"\n== {name}: {type(model).__name__}, {model.count_params():,} parameters"
              + (f", memory_efficient={model.memory_efficient}" if name == "hyperbolic" else ""))
        result = train_one(model, (video, masks, weights), settings["steps"],
                           settings["learning_rate"], settings["time_budget"], verbose,
                           run_dir=os.path.join(output, f"run_{name}"))
        result["memory"] = step_memory(model, video, masks, weights)
        if name == "hyperbolic":
            # The paper's comparison: the same network, same weights, without
            # reversibility (activations stored by plain autodiff).
            plain = type(model).from_config({**model.get_config(), "memory_efficient": False})
            plain.build((None,) + video.shape)
            plain.set_weights(model.get_weights())
            plain.compile(optimizer=keras.optimizers.Adam(1e-4),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            result["memory_plain_autodiff"] = step_memory(plain, video, masks, weights)
        pred, iou = evaluate(model, video, masks)
        result.update(iou, parameters=int(model.count_params()))
        predictions[name] = pred
        metrics[name] = result
        path = os.path.join(output, "hyperbolic_segmenter.keras" if name == "hyperbolic"
                            else "unet_baseline.keras")
        model.save(path)
        print(f"{name}: {result['steps']} steps in {result['train_seconds']:.0f} s, "
              f"mean IoU {iou['mean_iou']:.1f} (positive {iou['positive_iou']:.1f}, "
              f"negative {iou['negative_iou']:.1f}); saved {path}")

    png = os.path.join(output, "slices.png")
    write_png(png, video, masks, predictions, labelled)
    metrics["png"] = png
    with open(os.path.join(output, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    print("\n" + report(metrics))
    print(f"\nwrote {png} and {os.path.join(output, 'metrics.json')}")
    return {"model": networks["hyperbolic"], "unet": networks.get("unet"), "metrics": metrics}


def report(metrics):
    names = [n for n in ("hyperbolic", "unet") if n in metrics]
    lines = ["IoU over ALL frames (labels given on frames "
             f"{metrics['labelled_frames']} only); paper on DAVIS: 92.7 / 87.3 / 98.0",
             f"{'network':<12} {'params':>9} {'mean IoU':>9} {'pos IoU':>8} {'neg IoU':>8} "
             f"{'step peak MB':>13} {'step extra MB':>14} {'steps':>6} {'train s':>8}"]
    for name in names:
        m = metrics[name]
        lines.append(
            f"{name:<12} {m['parameters']:>9,} {m['mean_iou']:>9.1f} {m['positive_iou']:>8.1f} "
            f"{m['negative_iou']:>8.1f} {m['memory']['peak_mb']:>13.1f} "
            f"{m['memory']['step_extra_mb']:>14.1f} {m['steps']:>6} {m['train_seconds']:>8.0f}"
        )
    hyperbolic = metrics["hyperbolic"]["memory"]["step_extra_mb"]
    plain = metrics["hyperbolic"].get("memory_plain_autodiff")
    if plain:
        lines.append(
            f"{'(same net, plain autodiff)':<22} {'':>8} {'':>8} {'':>8} {plain['peak_mb']:>13.1f} "
            f"{plain['step_extra_mb']:>14.1f}   -> "
            f"{plain['step_extra_mb'] / hyperbolic if hyperbolic > 0 else float('nan'):.2f}x the "
            "reversible step memory")
    if len(names) == 2:
        unet = metrics["unet"]["memory"]["step_extra_mb"]
        ratio = unet / hyperbolic if hyperbolic > 0 else float("nan")
        lines.append(f"U-Net / hyperbolic training-step memory: {ratio:.2f}x "
                     f"(peak source: {metrics['hyperbolic']['memory']['source']})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="outputs/video_segmentation")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--unet-filters", type=int, default=None)
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds of training per network at most")
    parser.add_argument("--no-unet", action="store_true", help="skip the U-Net baseline")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train_video_segmentation(
        output=args.output, quick=args.quick, steps=args.steps,
        learning_rate=args.learning_rate, preset=args.preset, unet_filters=args.unet_filters,
        time_budget=args.time_budget, train_unet=not args.no_unet, seed=args.seed,
        verbose=0 if args.quick else 2,
    )


if __name__ == "__main__":
    sys.exit(main())
