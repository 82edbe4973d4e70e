"""The main job: segment a whole video from three labelled frames with a 3D HyperbolicSegmenter.

The hyperbolic paper's headline experiment (Lensink, Peters & Haber, section
6.1.2) trains a video-to-video network on ONE video whose labels exist at three
frames only and measures the IoU over all frames (92.7 on DAVIS). Here the
video is composed from real data shipped with installed packages
(scikit-learn's handwritten digits moving over a panning scikit-image texture,
`keras_hyperbolic.data.make_digit_video`), so every frame's mask is exact, and
the network is the smaller `video_cpu` preset for a 2-core CPU.

In the same run a plain Keras 3D U-Net of similar parameter count
(`BaselineUNet`, group norm) is trained the same way (same video, loss,
optimiser and number of steps) as the baseline, and the segmenter's
training-step memory is measured with and without the memory-efficient engine.
"""

import json
import os

import keras

from keras_hyperbolic import runtime
from keras_hyperbolic.data import make_digit_video
from keras_hyperbolic.models import BaselineUNet, HyperbolicSegmenter
from keras_hyperbolic.profiling import training_step_memory
from keras_hyperbolic.tasks import video_training
from keras_hyperbolic.validation import check_positive_int

FULL = {
    # 16 frames of 48 x 48 (labels on frames 1, 7, 15), 300 steps per network: the README's
    # first command took about 7 minutes on 2 CPU cores, 14-16 at 64 x 64 (docs/guides/networks.md, "The main job").
    "frames": 16, "height": 48, "width": 48, "steps": 300,
    # A sweep on this video (300 steps, seed 0; `benchmarks/lr_sweep.py` repeats it), segmenter
    # with HyperbolicBlock's default (weight) normalisation: 1e-3, 3e-3, 5e-3, 1e-2 reached
    # mean IoU 61.2, 91.8, 88.4, 65.2.
    "learning_rate": 3e-3,
    # 20 filters: about the segmenter's parameter count ("similar size").
    "preset": "video_cpu", "unet_filters": 20,
    # The U-Net's, from the same sweep (1e-3, 3e-3, 1e-2): mean IoU 90.8, 93.8, 92.7.
    "unet_learning_rate": 3e-3,
}
QUICK = {
    "frames": 8, "height": 16, "width": 16, "steps": 3, "learning_rate": 1e-2,
    "preset": "tiny_3d", "unet_filters": 2, "unet_learning_rate": 3e-3,
}
MODEL_FILE = "hyperbolic_segmenter.keras"


def make_video(settings=None, seed=0):
    """The main job's video (`make_digit_video`) at the size of `settings` (default `FULL`)."""
    settings = FULL if settings is None else settings
    return make_digit_video(frames=settings["frames"], height=settings["height"],
                            width=settings["width"], digit_size=min(24, settings["height"] // 2),
                            seed=seed)


def build_network(name, settings=None):
    """The main job's "hyperbolic" segmenter or "unet" baseline, sized by `settings` (`FULL`)."""
    settings = FULL if settings is None else settings
    if name == "hyperbolic":
        return HyperbolicSegmenter.from_preset(settings["preset"], num_classes=2)
    return BaselineUNet(num_classes=2, rank=3, filters=settings["unet_filters"], levels=2)


def train_video_segmentation(
    output="outputs/video_segmentation",
    epochs=None,
    quick=False,
    seed=0,
    verbose=1,
    *,
    learning_rate=None,
    unet_learning_rate=None,
    preset=None,
    unet_filters=None,
    time_budget=None,
    train_unet=True,
):
    """Trains the main job; returns `{"model", "unet", "metrics", "model_path"}`.

    Args:
        output: directory for the models, `slices.png`, `metrics.json` and the run logs.
        epochs: training steps of each network (one step = the whole video once;
            default 300, quick 3).
        quick: a CI-sized run (8 x 16 x 16 video, tiny networks, seconds).
        seed: seed of the video and of the weights.
        verbose: Keras progress (0 silent, 1 progress bar, 2 one line per epoch).
        learning_rate: the segmenter's Adam learning rate.
        unet_learning_rate: the U-Net's (picked by a documented sweep).
        preset: the `HyperbolicSegmenter` preset.
        unet_filters: the U-Net's channels at full resolution.
        time_budget: seconds of training per network after which training stops
            early (default None: never; the summary says when it cut training).
        train_unet: also train the U-Net baseline.

    `metrics` holds, per network, the IoUs over all frames, the steps run and
    seconds per step, the training-step memory and the parameter count, plus
    the run's settings and whether oneDNN was on.
    """
    settings = dict(QUICK if quick else FULL)
    for key, value in (("steps", epochs), ("learning_rate", learning_rate),
                       ("unet_learning_rate", unet_learning_rate), ("preset", preset),
                       ("unet_filters", unet_filters)):
        if value is not None:
            settings[key] = value
    check_positive_int(settings["steps"], "epochs")
    settings["time_budget"] = time_budget
    keras.utils.set_random_seed(seed)
    os.makedirs(output, exist_ok=True)

    data = make_video(settings, seed)
    video, masks, weights = data["video"], data["masks"], data["weights"]
    labelled = data["labelled_frames"]
    if verbose:
        print(f"video {video.shape}, digits {data['digits']}, labelled frames {labelled} of "
              f"{len(video)}, foreground {100 * masks.mean():.1f}% of pixels")

    networks = {name: build_network(name, settings)
                for name in (("hyperbolic", "unet") if train_unet else ("hyperbolic",))}
    rates = {"hyperbolic": settings["learning_rate"], "unet": settings["unet_learning_rate"]}
    metrics = {"settings": settings, "labelled_frames": list(labelled),
               "onednn": runtime.onednn_enabled()}
    predictions = {}
    for name, model in networks.items():
        model.build((None,) + video.shape)
        if verbose:
            print(f"\n== {name}: {type(model).__name__}, {model.count_params():,} parameters")
        result = video_training.train_for_steps(
            model, (video, masks, weights), settings["steps"], rates[name],
            run_dir=os.path.join(output, f"run_{name}"), verbose=verbose,
            time_budget=time_budget)
        result["learning_rate"] = rates[name]
        result["memory"] = training_step_memory(model, video[None], masks[None], weights[None])
        if name == "hyperbolic":
            # The paper's comparison: the same network and weights without the
            # memory-efficient engine (plain autodiff stores every activation).
            plain = type(model).from_config({**model.get_config(), "memory_efficient": False})
            plain.build((None,) + video.shape)
            plain.set_weights(model.get_weights())
            plain.compile(optimizer=keras.optimizers.Adam(1e-4),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            result["memory_plain_autodiff"] = training_step_memory(
                plain, video[None], masks[None], weights[None])
        labels, iou = video_training.evaluate(model, video, masks)
        result.update(iou, parameters=int(model.count_params()))
        predictions[name] = labels
        metrics[name] = result
        path = os.path.join(output, MODEL_FILE if name == "hyperbolic" else "unet_baseline.keras")
        model.save(path)
        if verbose:
            print(f"{name}: {video_training.describe_training(result)}, mean IoU "
                  f"{iou['mean_iou']:.1f}; saved {path}")

    png = os.path.join(output, "slices.png")
    video_training.write_slices_png(png, video, masks, predictions, labelled)
    metrics["png"] = png
    with open(os.path.join(output, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    if verbose:
        print("\n" + report(metrics))
        print(f"\nwrote {png} and {os.path.join(output, 'metrics.json')}")
    return {"model": networks["hyperbolic"], "unet": networks.get("unet"), "metrics": metrics,
            "model_path": os.path.join(output, MODEL_FILE)}


def report(metrics):
    """The summary table: IoUs over all frames, steps and s/step, training-step memory."""
    names = [n for n in ("hyperbolic", "unet") if n in metrics]
    onednn = {True: "on", False: "OFF", None: "unknown"}[metrics.get("onednn")]
    lines = [
        "IoU over ALL frames (labels given on frames "
        f"{metrics['labelled_frames']} only); paper on DAVIS: 92.7 / 87.3 / 98.0",
        f"{'network':<12} {'params':>9} {'mean IoU':>9} {'pos IoU':>8} {'neg IoU':>8} "
        f"{'step peak MB':>13} {'step extra MB':>14} {'steps':>6} {'s/step':>7} {'train s':>8}",
    ]
    for name in names:
        m = metrics[name]
        lines.append(
            f"{name:<12} {m['parameters']:>9,} {m['mean_iou']:>9.1f} {m['positive_iou']:>8.1f} "
            f"{m['negative_iou']:>8.1f} {m['memory']['peak_mb']:>13.1f} "
            f"{m['memory']['step_extra_mb']:>14.1f} {m['steps']:>6} "
            f"{m['seconds_per_step']:>7.2f} {m['train_seconds']:>8.0f}"
        )
    reversible = metrics["hyperbolic"]["memory"]["step_extra_mb"]

    def times_reversible(mb):
        # Tiny (quick) runs can stay below the allocator's granularity.
        return f"{mb / reversible:.2f}x" if reversible > 0 else "n/a (reversible step ~0 MB)"

    plain = metrics["hyperbolic"].get("memory_plain_autodiff")
    if plain:
        lines.append(
            f"{'(same net, plain autodiff)':<40} {plain['peak_mb']:>13.1f} "
            f"{plain['step_extra_mb']:>14.1f}   -> {times_reversible(plain['step_extra_mb'])} "
            "the reversible step memory")
    if "unet" in metrics:
        lines.append("U-Net / hyperbolic training-step memory: "
                     + times_reversible(metrics["unet"]["memory"]["step_extra_mb"]))
    lines.append(f"memory source: {metrics['hyperbolic']['memory']['source']}; oneDNN {onednn}; "
                 f"learning rates: hyperbolic {metrics['hyperbolic']['learning_rate']:g}"
                 + (f", U-Net {metrics['unet']['learning_rate']:g}" if "unet" in metrics else ""))
    for name in names:
        if metrics[name]["stopped_by_time_budget"]:
            lines.append(f"NOTE: {name} was cut by the time budget "
                         f"({metrics['settings']['time_budget']:g} s) after "
                         f"{metrics[name]['steps']} of {metrics[name]['steps_planned']} steps.")
    return "\n".join(lines)
