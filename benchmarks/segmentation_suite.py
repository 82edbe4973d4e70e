"""The main job's protocol on several videos and volumes: the segmenter against the U-Net.

The protocol of `keras-hyperbolic train video-segmentation` and `segment`
(labels on a few frames, fixed steps, IoU over ALL frames, the same recipe for
both networks: `keras_hyperbolic.tasks.segmentation_pipeline`), on cases made
from data shipped inside installed packages:

- `main`: the main job's video (16 x 48 x 48, digits over a panning texture), one case per seed;
- `demo`: `keras-hyperbolic demo-data`'s video, 4 classes (one per digit), 24 x 48 x 48;
- `zstack`: a noisy 16-bit grey 3D volume (a z-stack, not a video): 3D blobs
  textured with one real texture over another, Poisson noise, labels on 3 slices;
- `enter_leave`: digits that enter and leave the frame (a 48-wide crop of a
  112-wide video), so some frames hold no digit or part of one;
- `odd`: 13 x 37 x 45 frames (padded to the networks' multiples and cropped back).

Each network is trained at its default learning rate (`segmentation_settings.FULL`)
and, with `--rate-factors`, at multiples of it. Prints the mean IoU (mean over
classes, all frames) per case, the spread over seeds and over rates, and the
training-step memory (allocator, on a copy of the trained model) and time.

Every run is a process of its own (`--jobs` at a time, each with
`--threads` TensorFlow threads); results are appended to `--json` (JSON
lines), and a run already there is not repeated, so a long suite can be
split over several calls.

Run:  python benchmarks/segmentation_suite.py                      (every case, seeds 0-4 on main)
      python benchmarks/segmentation_suite.py --cases main --seeds 0 --rate-factors 0.333 1 3
      python benchmarks/segmentation_suite.py --cases demo --other-seeds 0 1 2
Cost: one run is one network trained 300 steps: about 2-4 minutes on 2 CPU cores;
the default suite is 9 cases x 2 networks = 18 runs (x3 with three rate factors).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from keras_hyperbolic import runtime  # imports no TensorFlow

runtime.prefer_onednn()

CASES = ("main", "demo", "zstack", "enter_leave", "odd")
NETWORKS = ("hyperbolic", "unet")


# === The cases (numpy only) ===


def _digits_case(seed, frames, height, width, classes="binary", num_digits=3, crop=None):
    from keras_hyperbolic.data import make_digit_video

    data = make_digit_video(frames=frames, height=height, width=width, num_digits=num_digits,
                            digit_size=min(24, max(2, min(height, width) * 5 // 12)), seed=seed)
    truth = data["masks"] if classes == "binary" else data["instances"]
    video, weights = data["video"], data["weights"]
    if crop is not None:
        video, truth, weights = (a[:, :, crop] for a in (video, truth, weights))
    return {"video": video, "truth": truth.astype(np.int32), "weights": weights,
            "num_classes": 2 if classes == "binary" else num_digits + 1,
            "labelled": list(data["labelled_frames"])}


def make_zstack(seed, slices=24, size=48):
    """A noisy 16-bit grey volume: 3D blobs textured with `grass` over `gravel`, labels on 3 slices."""
    import skimage.data
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    blobs = skimage.data.binary_blobs(length=size, n_dim=3, volume_fraction=0.3,
                                      blob_size_fraction=0.2, rng=seed)[:slices]
    textures = []
    tile = max(128, 2 * size)  # 128 up to 64-pixel slices (the suite's), larger for CT sizes
    for name in ("gravel", "grass"):
        image = resize(getattr(skimage.data, name)().astype(np.float32) / 255.0, (tile, tile))
        offsets = rng.integers(0, tile - size, size=2)
        # The texture drifts slowly through the stack, like tissue from slice to slice.
        textures.append(np.stack([np.roll(image, z, axis=0)[offsets[0]:offsets[0] + size,
                                                            offsets[1]:offsets[1] + size]
                                  for z in range(slices)]))
    clean = np.where(blobs, 0.45 + 0.35 * textures[1], 0.25 + 0.35 * textures[0])
    counts = rng.poisson(clean * 400.0).astype(np.float64)  # photon noise
    volume = np.clip(counts * 40.0, 0, 65535).astype(np.uint16)
    low, high = np.percentile(volume, (0.5, 99.5))
    video = np.clip((volume - low) / max(high - low, 1.0), 0.0, 1.0).astype(np.float32)[..., None]
    labelled = [round(s * slices / 72) for s in (5, 30, 69)]
    weights = np.zeros(blobs.shape, np.float32)
    weights[labelled] = 1.0
    return {"video": video, "truth": blobs.astype(np.int32), "weights": weights,
            "num_classes": 2, "labelled": labelled, "uint16": volume}


def make_case(case, seed):
    """`{"video", "truth", "weights", "num_classes", "labelled"}` of one case."""
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    if case == "main":
        return _digits_case(seed, FULL.frames, FULL.height, FULL.width)
    if case == "demo":
        return _digits_case(seed, 24, 48, 48, classes="instances")
    if case == "zstack":
        return make_zstack(seed)
    if case == "enter_leave":
        return _digits_case(seed, 16, 48, 112, crop=slice(32, 80))
    if case == "odd":
        return _digits_case(seed, 13, 37, 45)
    raise ValueError(f"Invalid value for argument `case`: {case!r}; expected one of {CASES}")


# === One run (in its own process) ===


def run_one(case, seed, network, factor, steps, threads):
    """Trains `network` on `case` (seed) at `factor` x its default rate; returns a result dict."""
    import keras
    import tensorflow as tf

    from keras_hyperbolic.tasks import segmentation_pipeline as pipeline
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    data = make_case(case, seed)
    keras.utils.set_random_seed(seed)
    model = pipeline.build_network(network, data["num_classes"], FULL)
    prepared = pipeline.prepare(model, data["video"], data["truth"], data["weights"],
                                FULL.memory_budget_mb)
    rate = FULL.learning_rate_of(network) * factor
    with tempfile.TemporaryDirectory() as run_dir:
        result = pipeline.train(model, prepared, steps, rate, run_dir, seed=seed, verbose=0)
    labels = pipeline.predict(model, prepared)
    per_class = pipeline.class_iou(data["truth"], labels, data["num_classes"])
    unlabelled = [t for t in range(len(labels)) if t not in data["labelled"]]
    memory = pipeline.copy_step_memory(model, prepared.video, prepared.targets,
                                       prepared.weights)
    return {
        "case": case, "seed": seed, "network": network, "rate_factor": factor,
        "learning_rate": rate, "steps": steps, "shape": list(data["video"].shape),
        "num_classes": data["num_classes"],
        "mean_iou": float(np.mean(list(per_class.values()))),
        "unlabelled_mean_iou": float(np.mean(list(pipeline.class_iou(
            data["truth"][unlabelled], labels[unlabelled], data["num_classes"]).values()))),
        "per_class_iou": {str(c): v for c, v in per_class.items()},
        "seconds_per_step": result["seconds_per_step"], "final_loss": result["final_loss"],
        "step_extra_mb": memory["step_extra_mb"], "memory_source": memory["source"],
        "parameters": int(model.count_params()), "onednn": runtime.onednn_enabled(),
    }


# === The suite ===


def job_key(job):
    return (job["case"], job["seed"], job["network"], round(job["rate_factor"], 6))


def load_results(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def run_jobs(jobs, args):
    """Runs each job in a process of its own, `args.jobs` at a time; appends to `args.json`."""
    pending = list(jobs)
    running = []
    while pending or running:
        while pending and len(running) < args.jobs:
            job = pending.pop(0)
            command = [sys.executable, __file__, "--worker", json.dumps(job),
                       "--steps", str(args.steps), "--threads", str(args.threads)]
            running.append((job, subprocess.Popen(command, stdout=subprocess.PIPE, text=True)))
        job, process = running.pop(0)
        out, _ = process.communicate()
        if process.returncode != 0:
            print(f"FAILED: {job} (exit {process.returncode})", flush=True)
            continue
        result = json.loads(out.strip().splitlines()[-1])
        with open(args.json, "a") as handle:
            handle.write(json.dumps(result) + "\n")
        print(f"{result['case']:<12} seed {result['seed']} {result['network']:<10} "
              f"x{result['rate_factor']:<6g} mean IoU {result['mean_iou']:5.1f} "
              f"(unlabelled frames {result['unlabelled_mean_iou']:5.1f}), "
              f"{result['seconds_per_step']:.2f} s/step", flush=True)


def spread(values):
    values = list(values)
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def report(results, steps):
    """Per case and network: mean IoU at the default rate (mean [min-max] over seeds), over rates."""
    from keras_hyperbolic.tasks.segmentation_settings import FULL

    rows = [r for r in results if r["steps"] == steps]
    lines = [f"mean IoU over all frames (mean over classes), {steps} steps; default rates: "
             f"hyperbolic {FULL.learning_rate:g}, unet {FULL.unet_learning_rate:g}",
             f"{'case':<12} {'network':<11} {'shape':<16} {'default rate':>22} "
             f"{'all rates':>22} {'step MB':>8} {'s/step':>7}"]
    for case in dict.fromkeys(r["case"] for r in rows):
        for network in NETWORKS:
            mine = [r for r in rows if r["case"] == case and r["network"] == network]
            if not mine:
                continue
            default = [r["mean_iou"] for r in mine if abs(r["rate_factor"] - 1) < 1e-6]
            lines.append(
                f"{case:<12} {network:<11} {'x'.join(map(str, mine[0]['shape'][:3])):<16} "
                f"{spread(default):>22} {spread(r['mean_iou'] for r in mine):>22} "
                f"{np.median([r['step_extra_mb'] for r in mine]):>8.1f} "
                f"{np.median([r['seconds_per_step'] for r in mine]):>7.2f}")
    for factor in sorted({r["rate_factor"] for r in rows}):
        for network in NETWORKS:
            values = [r["mean_iou"] for r in rows
                      if r["network"] == network and r["rate_factor"] == factor]
            if values:
                lines.append(f"all cases, {network:<10} x{factor:<6g}: {spread(values)}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4],
                        help="seeds of the main case")
    parser.add_argument("--other-seeds", nargs="+", type=int, default=[0],
                        help="seeds of the other cases")
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--rate-factors", nargs="+", type=float, default=[1.0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads of each run")
    parser.add_argument("--json", default="benchmark_segmentation_suite.jsonl")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(run_one(job["case"], job["seed"], job["network"], job["rate_factor"],
                                 args.steps, args.threads)))
        return
    done = {job_key(r) for r in load_results(args.json) if r["steps"] == args.steps}
    jobs = [{"case": case, "seed": seed, "network": network, "rate_factor": factor}
            for case in args.cases for seed in (args.seeds if case == "main" else args.other_seeds)
            for factor in args.rate_factors for network in args.networks]
    jobs = [j for j in jobs if job_key(j) not in done]
    print(f"{len(jobs)} runs to do ({len(done)} already in {args.json}); CPU: "
          f"{cpu_model()}", flush=True)
    run_jobs(jobs, args)
    print("\n" + report(load_results(args.json), args.steps))


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    main()
