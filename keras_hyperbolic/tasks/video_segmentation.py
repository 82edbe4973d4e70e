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
Settings: `segmentation_settings.FULL` (`QUICK` for `--quick`); stages:
`segmentation_pipeline`.
"""

import dataclasses
import os

import keras

from keras_hyperbolic import runtime
from keras_hyperbolic.data import make_digit_video, segmentation_iou
from keras_hyperbolic.tasks import segmentation_pipeline as pipeline
from keras_hyperbolic.tasks.pictures import write_slices_png
from keras_hyperbolic.tasks.segmentation_settings import FULL, NETWORKS, QUICK

MODEL_FILES = {"hyperbolic": "hyperbolic_segmenter.keras", "unet": "unet_baseline.keras"}
MODEL_FILE = MODEL_FILES["hyperbolic"]


def make_video(settings=FULL, seed=0):
    """The main job's video (`make_digit_video`) at the size of `settings`."""
    return make_digit_video(frames=settings.frames, height=settings.height, width=settings.width,
                            digit_size=min(24, settings.height // 2), seed=seed)


def step_memory(model, data, **config):
    """`pipeline.copy_step_memory` on the video (`data`: `make_video`'s dict)."""
    return pipeline.copy_step_memory(model, data["video"], data["masks"], data["weights"],
                                     **config)


def train_network(name, model, data, settings, run_dir, verbose=1, time_budget=None,
                  measure_memory=True):
    """Trains one network on the main job's video (`make_video`) and measures it on every frame.

    Runs the pipeline's stages (prepare, train, predict) with the rate of
    `name` in `settings`. Returns `(result, labels)`: `train`'s result with the
    learning rate, the IoUs over all frames (`segmentation_iou`), the parameter
    count and (`measure_memory`) the training-step memory; the predicted
    `(T, H, W)` labels.
    """
    video, masks = data["video"], data["masks"]
    prepared = pipeline.prepare(model, video, masks, data["weights"], settings.memory_budget_mb,
                                settings.max_step_voxels)
    if verbose:
        print(f"\n== {name}: {type(model).__name__}, {model.count_params():,} parameters")
    rate = settings.learning_rate_of(name)
    result = pipeline.train(model, prepared, settings.steps, rate, run_dir=run_dir,
                            verbose=verbose, time_budget=time_budget)
    result["learning_rate"] = rate
    labels = pipeline.predict(model, prepared)
    result.update(segmentation_iou(masks, labels), parameters=int(model.count_params()))
    if measure_memory:
        result["memory"] = step_memory(model, data)
    return result, labels




def train_video_segmentation(
    output="outputs/video_segmentation",
    steps=None,
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
        steps: training steps of each network (one step = the whole video once;
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
    settings = (QUICK if quick else FULL).override(
        steps=steps, learning_rate=learning_rate, unet_learning_rate=unet_learning_rate,
        preset=preset, unet_filters=unet_filters).check()
    keras.utils.set_random_seed(seed)
    os.makedirs(output, exist_ok=True)
    data = make_video(settings, seed)
    video, masks, labelled = data["video"], data["masks"], data["labelled_frames"]
    if verbose:
        print(f"video {video.shape}, digits {data['digits']}, labelled frames {labelled} of "
              f"{len(video)}, foreground {100 * masks.mean():.1f}% of pixels")
    names = NETWORKS if train_unet else NETWORKS[:1]
    networks = {name: pipeline.build_network(name, 2, settings) for name in names}
    metrics = {"settings": {**dataclasses.asdict(settings), "time_budget": time_budget},
               "labelled_frames": list(labelled), "onednn": runtime.onednn_enabled()}
    predictions = {}
    for name, model in networks.items():
        result, labels = train_network(name, model, data, settings,
                                       os.path.join(output, f"run_{name}"), verbose, time_budget)
        if name == "hyperbolic":
            # The paper's comparison: the same network and weights on plain autodiff.
            result["memory_plain_autodiff"] = step_memory(model, data, memory_efficient=False)
        predictions[f"{type(model).__name__}\nmean IoU {result['mean_iou']:.1f}"] = labels
        metrics[name] = result
        path = os.path.join(output, MODEL_FILES[name])
        model.save(path)
        if verbose:
            print(f"{name}: {pipeline.describe_training(result)}, mean IoU "
                  f"{result['mean_iou']:.1f}; saved {path}")
    metrics["png"] = os.path.join(output, "slices.png")
    write_slices_png(metrics["png"], video, masks, predictions, labelled)
    json_path = pipeline.write_metrics(output, metrics)
    if verbose:
        print("\n" + report(metrics) + f"\n\nwrote {metrics['png']} and {json_path}")
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
