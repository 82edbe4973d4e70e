"""Time and peak memory of `keras-hyperbolic segment` at growing sizes, up to a DAVIS-size video.

For each size T x H x W the main job's generated video (`video_segmentation.make_video`:
handwritten digits moving over a texture, `keras_hyperbolic.data.make_digit_video`) is written
as `video.npy` with the masks of its three labelled frames (palette PNGs) and every frame's
truth (`truth.npy`); for each volume size (`--volumes`, slices x H x W) the suite's noisy
16-bit z-stack is written as NIfTI (`volume.nii.gz`, slices on the last axis, anisotropic voxels,
a rotated affine) with a label map holding three labelled slices (255 elsewhere) and the truth as
a second map. Then `segment` runs on it for the reversible segmenter and the U-Net, each
in its own process, with the default settings unless told otherwise. Printed and written
(`--json`) for each run: its plan (whole video, windows or crops, the estimated step memory),
wall time, training and prediction seconds, seconds per step, the process's peak resident
memory (`wait4`'s `ru_maxrss`: TensorFlow itself included, about 1 GB at the smallest size),
the peak of TensorFlow's `CPU:0` allocator where it keeps statistics (oneDNN on; it counts only
the tensors that allocator serves, a small part of what a `fit` holds), and the mean IoU over
all frames against the generator's truth; for a volume, whether `masks.nii.gz` kept its affine.

These runs are benchmarks, not tests (the suite runs the same code paths on tiny inputs): the
default sizes take hours on 2 CPU cores.

Run:  python benchmarks/segment_scale.py                          (every size; hours)
      python benchmarks/segment_scale.py --sizes 16x48x48 --volumes --steps 30   (minutes)
      python benchmarks/segment_scale.py --sizes --volumes 160x256x256   (the CT-size volume)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from keras_hyperbolic import runtime  # imports no TensorFlow

# oneDNN on before TensorFlow is imported, unless the user chose: allocator statistics need it.
runtime.prefer_onednn()

SIZES = ("16x48x48", "24x96x96", "48x192x192", "72x240x424", "72x480x854")
VOLUMES = ("160x256x256",)  # a CT-size volume
NETWORKS = ("hyperbolic", "unet")


def parse_size(text):
    frames, height, width = (int(v) for v in text.lower().split("x"))
    return frames, height, width


def write_video(directory, size, seed=0):
    """The main job's video at `size`, as `segment` reads it; returns the label arguments."""
    import numpy as np

    from keras_hyperbolic.data import media
    from keras_hyperbolic.tasks.segmentation_settings import FULL
    from keras_hyperbolic.tasks.video_segmentation import make_video

    frames, height, width = size
    data = make_video(FULL.override(frames=frames, height=height, width=width), seed)
    os.makedirs(directory, exist_ok=True)
    np.save(os.path.join(directory, "video.npy"), (data["video"] * 255).round().astype(np.uint8))
    np.save(os.path.join(directory, "truth.npy"), data["masks"])
    labels = []
    for t in data["labelled_frames"]:
        path = os.path.join(directory, f"mask_{t:03d}.png")
        media.write_mask_png(path, data["masks"][t], 2)
        labels.append(f"{t}={path}")
    return labels


def write_volume(directory, size, seed=0):
    """A CT-size z-stack as NIfTI; returns `(volume, labels, truth)` paths.

    The suite's noisy 16-bit z-stack (`segmentation_suite.make_zstack`) at
    `size` = slices x H x W, stored as a scanner would: slices on the data's
    LAST axis, anisotropic voxels (0.8 x 0.8 x 2.5 mm: segment finds the slice
    axis from the spacing) and an affine with a rotation and an offset. The
    label map holds the truth on the suite's three slices and 255 (unlabelled)
    elsewhere; the truth is a second label map.
    """
    import nibabel
    import numpy as np

    from segmentation_suite import make_zstack

    slices, height, width = size
    if height != width:
        raise SystemExit(f"--volumes {'x'.join(map(str, size))}: the z-stack's slices are square")
    data = make_zstack(seed, slices=slices, size=height)
    angle = np.deg2rad(12.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.8, 2.5])
    affine[:3, 3] = (-102.4, -120.0, 35.0)
    os.makedirs(directory, exist_ok=True)
    labels = np.full(data["truth"].shape, 255, np.uint8)
    labels[data["labelled"]] = data["truth"][data["labelled"]]
    paths = []
    for name, array in (("volume", data["uint16"]), ("labels", labels),
                        ("truth", data["truth"].astype(np.uint8))):
        image = nibabel.Nifti1Image(np.moveaxis(array, 0, -1), affine)  # slices last
        image.header.set_zooms((0.8, 0.8, 2.5))
        paths.append(os.path.join(directory, f"{name}.nii.gz"))
        image.to_filename(paths[-1])
    return tuple(paths)


def worker(arguments):
    """In the child: `segment_video` with `arguments`, then the allocator's peak on stdout."""
    from keras_hyperbolic.profiling import allocator_available
    from keras_hyperbolic.tasks.segment import segment_video

    options = json.loads(arguments)
    segment_video(**options)
    peak = None
    if allocator_available():
        import tensorflow as tf

        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    print("ALLOCATOR_PEAK_MB " + json.dumps(peak), flush=True)


def run_one(input, labels, truth, network, output, steps, budget):
    """Runs segment in a child process; returns its row (times, memory, plan, IoU)."""
    options = {"input": input, "labels": labels, "output": output, "network": network,
               "truth": truth, "steps": steps, "memory_budget_mb": budget, "verbose": 2,
               "overwrite": True}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(options)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"segment failed ({network}, {input}):\n{out[-3000:]}")
    plan = out[out.index("plan:"):].splitlines()[:7]
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    peak = json.loads(next(line.split(" ", 1)[1] for line in out.splitlines()
                           if line.startswith("ALLOCATOR_PEAK_MB ")))
    training = metrics["training"]
    return {"network": network, "plan": plan, "mode": training["mode"],
            "crop": training["crop"], "estimate_mb": training["estimate_mb"],
            "wall_seconds": seconds, "train_seconds": training["train_seconds"],
            "seconds_per_step": training["seconds_per_step"],
            "predict_seconds": metrics["predict_seconds"],
            "peak_rss_mb": usage.ru_maxrss / 1024, "allocator_peak_mb": peak,
            "mean_iou": metrics["truth"]["mean_iou"], "affine_kept": affine_kept(input, output)}


def affine_kept(input, output):
    """For a NIfTI input: whether `masks.nii.gz` has the input's affine (None for a video)."""
    import nibabel
    import numpy as np

    from keras_hyperbolic.data.nifti import is_nifti

    if not is_nifti(input):
        return None

    return bool(np.array_equal(nibabel.load(os.path.join(output, "masks.nii.gz")).affine,
                               nibabel.load(input).affine))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), metavar="TxHxW",
                        help=f"video sizes (default {' '.join(SIZES)})")
    parser.add_argument("--volumes", nargs="*", default=list(VOLUMES), metavar="SxHxW",
                        help="NIfTI z-stacks, slices x H x W (default "
                        f"{' '.join(VOLUMES)}; none: --volumes)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--steps", type=int, default=None, help="default: segment's (300)")
    parser.add_argument("--memory-budget", type=float, default=None, metavar="MB",
                        help="default: segment's (4096 MB)")
    parser.add_argument("--work", default=None, help="where the videos and outputs go "
                        "(default: a temporary directory)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    work = args.work or tempfile.mkdtemp(prefix="segment_scale_")
    inputs = []
    for text in args.sizes:
        directory = os.path.join(work, text)
        labels = write_video(directory, parse_size(text))
        inputs.append((text, "video", os.path.join(directory, "video.npy"), labels,
                       os.path.join(directory, "truth.npy")))
    for text in args.volumes:
        directory = os.path.join(work, "volume_" + text)
        volume, labels, truth = write_volume(directory, parse_size(text))
        inputs.append((text, "NIfTI volume", volume, [labels], truth))
    results = []
    for text, kind, input, labels, truth in inputs:
        for network in args.networks:
            row = run_one(input, labels, truth, network,
                          os.path.join(os.path.dirname(input), f"out_{network}"),
                          args.steps, args.memory_budget)
            row["size"], row["kind"] = list(parse_size(text)), kind
            results.append(row)
            print(f"\n== {text} {kind}, {network}\n" + "\n".join(row["plan"]))
            allocator = row["allocator_peak_mb"]
            print(f"  {row['wall_seconds']:.0f} s in all (training {row['train_seconds']:.0f} s, "
                  f"{row['seconds_per_step']:.2f} s/step; prediction "
                  f"{row['predict_seconds']:.0f} s); peak RSS {row['peak_rss_mb']:.0f} MB"
                  + (f", allocator peak {allocator:.0f} MB" if allocator is not None else "")
                  + f"; mean IoU {row['mean_iou']:.1f}"
                  + ("" if row["affine_kept"] is None else
                     f"; masks.nii.gz has the input's affine: {row['affine_kept']}"), flush=True)
    for network in args.networks:
        whole = [r["size"] for r in results if r["network"] == network and r["mode"] == "whole"
                 and r["kind"] == "video"]
        print(f"{network}: trained whole up to "
              + (" x ".join(map(str, max(whole, key=lambda s: s[0] * s[1] * s[2]))) if whole
                 else "none of these sizes")
              + " (whole: the step's estimate within the budget and its voxels within "
              "max_step_voxels)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"work": work, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
