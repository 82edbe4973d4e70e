"""Equal memory, the comparison the papers make: which network segments better within one budget?

One video (the main job's generator, `--frames` x 48 x 48 by default 32 frames,
labels on 3 frames), one training-step memory budget: by default the
segmenter's own estimated step on the whole video
(`profiling.training_step_estimate`, the estimate `segment` plans with). Each
network at the largest configuration that fits the budget, all trained the same
steps with the same recipe (`keras_hyperbolic.tasks.segmentation_pipeline`):

- `HyperbolicSegmenter` (`video_cpu`) on the whole video;
- the U-Net at the main job's width (20 filters) on what `segment`'s plan fits
  in the budget (temporal windows or space-time crops holding labelled pixels;
  predicted in blended tiles);
- the U-Net narrowed until its whole-video step fits (the widest that does);
- with `--reference`, the U-Net at 20 filters on the whole video, over the budget.

Prints the mean IoU over all frames and the measured training-step memory
(allocator, on a copy of the trained model) of each, beside the budget.

Run:  python benchmarks/equal_memory.py                     (32 frames, seed 0)
      python benchmarks/equal_memory.py --frames 48 --seeds 0 1 --budget 60
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

MIB = 2**20


def make_data(frames, seed):
    from keras_hyperbolic.data import make_digit_video

    return make_digit_video(frames=frames, height=48, width=48, digit_size=24, seed=seed)


def estimate_mb(model, shape):
    from keras_hyperbolic.profiling import training_step_estimate

    return training_step_estimate(model, tuple(shape))["total_bytes"] / MIB


def widest_unet_within(budget_mb, shape, widest):
    """The most filters (<= `widest`) whose whole-video U-Net step estimate fits `budget_mb`."""
    from keras_hyperbolic.models import BaselineUNet

    for filters in range(widest, 0, -1):
        if estimate_mb(BaselineUNet(num_classes=2, rank=3, filters=filters, levels=2),
                       shape) <= budget_mb:
            return filters
    return 0


def run_config(config, frames, seed, steps, budget_mb):
    """Trains one configuration; returns its IoU, plan and measured step memory."""
    import keras

    from keras_hyperbolic.data import segmentation_iou
    from keras_hyperbolic.tasks import segmentation_pipeline as pipeline
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    data = make_data(frames, seed)
    keras.utils.set_random_seed(seed)
    settings = FULL.override(unet_filters=config.get("filters"))
    model = pipeline.build_network(config["network"], 2, settings)
    prepared = pipeline.prepare(model, data["video"], data["masks"], data["weights"],
                                config.get("budget_mb", budget_mb))
    with tempfile.TemporaryDirectory() as run_dir:
        result = pipeline.train(model, prepared, steps, settings.learning_rate_of(
            config["network"]), run_dir, seed=seed, verbose=0)
    iou = segmentation_iou(data["masks"], pipeline.predict(model, prepared))
    crop = tuple(prepared.plan["crop"])  # what one training step sees: (T, H, W)
    cut = tuple(slice(0, n) for n in crop)
    memory = pipeline.copy_step_memory(model, prepared.video[cut], prepared.targets[cut],
                                       prepared.weights[cut])
    return {**config, "seed": seed, "frames": frames, "mean_iou": iou["mean_iou"],
            "crop": list(crop), "window": crop[0], "mode": prepared.plan["mode"],
            "estimate_mb": prepared.plan["estimate_mb"], "step_extra_mb": memory["step_extra_mb"],
            "memory_source": memory["source"], "parameters": int(model.count_params()),
            "seconds_per_step": result["seconds_per_step"]}


def configurations(frames, budget_mb, reference=False):
    """The configurations (network, filters, the budget each plans with)."""
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    shape = (frames, 48, 48, 3)
    narrow = widest_unet_within(budget_mb, shape, FULL.unet_filters)
    configs = [{"label": "segmenter, whole video", "network": "hyperbolic"},
               {"label": f"U-Net {FULL.unet_filters} filters, planned", "network": "unet",
                "filters": FULL.unet_filters}]
    if narrow:
        configs.append({"label": f"U-Net {narrow} filters, whole video", "network": "unet",
                        "filters": narrow})
    if reference:
        configs.append({"label": f"U-Net {FULL.unet_filters} filters, whole (over budget)",
                        "network": "unet", "filters": FULL.unet_filters, "budget_mb": 1e9})
    return configs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--budget", type=float, default=None,
                        help="MB; default: the segmenter's estimated whole-video step")
    parser.add_argument("--reference", action="store_true",
                        help="also the U-Net at full width on the whole video, over the budget")
    parser.add_argument("--json", default="benchmark_equal_memory.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(run_config(job["config"], args.frames, job["seed"], args.steps,
                                    job["budget_mb"])))
        return
    from keras_hyperbolic.tasks import segmentation_pipeline as pipeline
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    budget = args.budget or estimate_mb(pipeline.build_network("hyperbolic", 2, FULL),
                                        (args.frames, 48, 48, 3))
    print(f"video {args.frames} x 48 x 48, labels on 3 frames, {args.steps} steps; budget "
          f"{budget:.1f} MB (estimated training step); CPU: {cpu_model()}", flush=True)
    results = []
    for seed in args.seeds:
        for config in configurations(args.frames, budget, args.reference):
            job = {"config": config, "seed": seed, "budget_mb": budget}
            command = [sys.executable, __file__, "--worker", json.dumps(job),
                       "--frames", str(args.frames), "--steps", str(args.steps)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            r = results[-1]
            print(f"seed {seed}  {r['label']:<38} mean IoU {r['mean_iou']:5.1f}  trained on "
                  f"{r['mode']} {'x'.join(map(str, r['crop']))}, estimate {r['estimate_mb']:6.1f} MB, measured step "
                  f"{r['step_extra_mb']:6.1f} MB ({r['memory_source']}), "
                  f"{r['parameters']:,} parameters", flush=True)
    with open(args.json, "w") as handle:
        json.dump({"budget_mb": budget, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
