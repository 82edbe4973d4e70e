"""Equal memory, the comparison the papers make: which network segments better within one budget?

One video (the main job's generator, `--frames` x 48 x 48, by default 32
frames, labels on 3 frames) and one training-step memory budget, in measured
megabytes: the allocator's peak of one training step beyond the weights and
the optimizer state (`profiling.training_step_memory`), by default the
segmenter's own step on the whole video. Each network runs at the largest
configuration whose MEASURED step fits the budget (each candidate is built and
one step measured; memory grows with the crop and the width, so a bisection
finds the largest), all trained the same steps with the same recipe
(`keras_hyperbolic.tasks.segmentation_pipeline`):

- `HyperbolicSegmenter` (`video_cpu`) on the whole video;
- the U-Net at the main job's width (24 filters) on the largest space-time
  crop `(t, s, s)` that fits (crops holding labelled pixels; predicted over the
  whole video in blended tiles);
- the U-Net narrowed until its whole-video step fits (the widest that does);
- with `--reference`, the U-Net at that width on the whole video, over the budget.

Matching on measured memory, not on `segment`'s plan: the plan's estimate is
conservative by different factors for the two networks (for the main job's
video 2.5x the segmenter's measured step and 1.4x the U-Net's), so equal
estimates would hand the U-Net more real memory than the segmenter uses.

Prints the mean IoU over all frames and the measured training-step memory of
each, beside the budget.

Run:  python benchmarks/equal_memory.py                     (32 frames, seed 0)
      python benchmarks/equal_memory.py --frames 16 --seeds 0 1 2 --reference
Cost: 3 runs of 300 steps on a 32-frame video: about 10-20 minutes on 2 CPU cores.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from keras_hyperbolic import runtime  # imports no TensorFlow

runtime.prefer_onednn()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from segmentation_suite import cpu_model  # noqa: E402

from keras_hyperbolic.tasks.segmentation_plan import last_fitting  # noqa: E402

HEIGHT = WIDTH = 48


def make_data(frames, seed):
    from keras_hyperbolic.data import make_digit_video

    return make_digit_video(frames=frames, height=HEIGHT, width=WIDTH, digit_size=24, seed=seed)


def measured_mb(network, filters, shape, repeats=3):
    """Measured training-step memory (MB beyond weights and optimizer state) of a fresh network.

    The median of `repeats` measurements: one step's allocator peak varies from
    run to run (measured: 16-20 MB for the segmenter on 16 x 48 x 48, the order
    of ops and oneDNN's scratch buffers), so a single one could flip a choice.
    """
    import statistics

    import numpy as np

    from keras_hyperbolic.tasks import segmentation_pipeline as pipeline
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    model = pipeline.build_network(network, 2, FULL.override(unet_filters=filters))
    model.build((None,) + tuple(shape) + (3,))
    video = np.random.default_rng(0).random(tuple(shape) + (3,), dtype=np.float32)
    ones = np.ones(shape, np.float32)
    return statistics.median(
        pipeline.copy_step_memory(model, video, ones.astype(np.int32), ones)["step_extra_mb"]
        for _ in range(repeats))


def unet_crop_within(budget_mb, frames, filters):
    """The largest crop `(t, s, s)` (multiples of the U-Net's input multiple) whose step fits."""
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    multiple = 2**FULL.unet_levels  # BaselineUNet.input_multiple
    crops = sorted(((t, s, s) for t in range(multiple, frames + 1, multiple)
                    for s in range(multiple, HEIGHT + 1, multiple)),
                   key=lambda c: (c[0] * c[1] * c[2], c[0]))
    return last_fitting(crops, lambda c: measured_mb("unet", filters, c) <= budget_mb)


def widest_unet_within(budget_mb, frames, widest):
    """The most filters (<= `widest`) whose whole-video U-Net step fits."""
    return last_fitting(list(range(1, widest + 1)), lambda f: measured_mb(
        "unet", f, (frames, HEIGHT, WIDTH)) <= budget_mb)


def run_config(config, frames, seed, steps):
    """Trains one configuration; returns its IoU, what it trained on and its measured step memory."""
    import keras

    from keras_hyperbolic.data import segmentation_iou
    from keras_hyperbolic.tasks import segmentation_pipeline as pipeline
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    data = make_data(frames, seed)
    keras.utils.set_random_seed(seed)
    settings = FULL.override(unet_filters=config.get("filters"))
    model = pipeline.build_network(config["network"], 2, settings)
    crop = config.get("crop")
    # No budget of the plan's own: the configuration was chosen by measurement.
    prepared = pipeline.prepare(model, data["video"], data["masks"], data["weights"], 1e9,
                                max_voxels=frames * HEIGHT * WIDTH,
                                crop=tuple(crop) if crop else None)
    with tempfile.TemporaryDirectory() as run_dir:
        result = pipeline.train(model, prepared, steps, settings.learning_rate_of(
            config["network"]), run_dir, seed=seed, verbose=0)
    iou = segmentation_iou(data["masks"], pipeline.predict(model, prepared))
    crop = tuple(prepared.plan["crop"])  # what one training step sees: (T, H, W)
    cut = tuple(slice(0, n) for n in crop)
    memory = pipeline.copy_step_memory(model, prepared.video[cut], prepared.targets[cut],
                                       prepared.weights[cut])
    return {**config, "seed": seed, "frames": frames, "mean_iou": iou["mean_iou"],
            "crop": list(crop), "mode": prepared.plan["mode"],
            "step_extra_mb": memory["step_extra_mb"], "memory_source": memory["source"],
            "parameters": int(model.count_params()),
            "seconds_per_step": result["seconds_per_step"]}


def configurations(frames, budget_mb, reference=False):
    """The configurations (network, filters, crop), each the largest that fits `budget_mb`."""
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    filters = FULL.unet_filters
    configs = [{"label": "segmenter, whole video", "network": "hyperbolic"}]
    crop = unet_crop_within(budget_mb, frames, filters)
    if crop:
        configs.append({"label": f"U-Net {filters} filters, crops", "network": "unet",
                        "filters": filters, "crop": list(crop)})
    narrow = widest_unet_within(budget_mb, frames, filters)
    if narrow:
        configs.append({"label": f"U-Net {narrow} filters, whole video", "network": "unet",
                        "filters": narrow})
    if reference:
        configs.append({"label": f"U-Net {filters} filters, whole (over budget)",
                        "network": "unet", "filters": filters})
    return configs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--budget", type=float, default=None,
                        help="measured MB; default: the segmenter's whole-video step")
    parser.add_argument("--reference", action="store_true",
                        help="also the U-Net at full width on the whole video, over the budget")
    parser.add_argument("--json", default="benchmark_equal_memory.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(run_config(job["config"], args.frames, job["seed"], args.steps)))
        return
    budget = args.budget or measured_mb("hyperbolic", None, (args.frames, HEIGHT, WIDTH))
    configs = configurations(args.frames, budget, args.reference)
    print(f"video {args.frames} x {HEIGHT} x {WIDTH}, labels on 3 frames, {args.steps} steps; "
          f"budget {budget:.1f} MB (measured training step); CPU: {cpu_model()}", flush=True)
    results = []
    for seed in args.seeds:
        for config in configs:
            job = {"config": config, "seed": seed}
            command = [sys.executable, __file__, "--worker", json.dumps(job),
                       "--frames", str(args.frames), "--steps", str(args.steps)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            r = results[-1]
            print(f"seed {seed}  {r['label']:<38} mean IoU {r['mean_iou']:5.1f}  trained on "
                  f"{r['mode']} {'x'.join(map(str, r['crop']))}, measured step "
                  f"{r['step_extra_mb']:6.1f} MB ({r['memory_source']}), "
                  f"{r['parameters']:,} parameters", flush=True)
    with open(args.json, "w") as handle:
        json.dump({"budget_mb": budget, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
