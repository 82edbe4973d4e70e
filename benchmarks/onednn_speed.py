"""Training-step time of the main job's network with TensorFlow's oneDNN CPU path off and on.

TensorFlow turns oneDNN on by default only on CPUs with AVX-512-class
features; `TF_ENABLE_ONEDNN_OPTS` overrides that and is read when TensorFlow is
imported, so each setting runs in its own process (alternated, `--rounds`
times, so a drifting machine load slows both alike). Each process times
`--steps` training steps of the main job's HyperbolicSegmenter on the main
job's video (both from `keras_hyperbolic.tasks.segmentation_settings.FULL`) after
one warm-up step. Set `ONEDNN_MAX_CPU_ISA=AVX2`
to make oneDNN use only AVX2 kernels (a CPU without AVX-512).

Run:  python benchmarks/onednn_speed.py
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time


def worker(steps):
    import keras
    import numpy as np

    from keras_hyperbolic import runtime
    from keras_hyperbolic.tasks.segmentation_pipeline import build_network
    from keras_hyperbolic.tasks.segmentation_settings import FULL
    from keras_hyperbolic.tasks.video_segmentation import make_video

    keras.utils.set_random_seed(0)
    data = make_video()
    x, y, w = (data[k][None] for k in ("video", "masks", "weights"))
    model = build_network("hyperbolic", 2, FULL)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.train_on_batch(x, y, sample_weight=w)  # trace, build the optimizer
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y, sample_weight=w)
        times.append(time.perf_counter() - start)
    print(json.dumps({"onednn": runtime.onednn_enabled(), "seconds": float(np.median(times))}))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.steps)
    import os

    seconds = {"0": [], "1": []}
    for _ in range(args.rounds):
        for setting in ("0", "1"):
            env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "2"}
            out = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(args.steps)],
                                 capture_output=True, text=True, env=env, check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            seconds[setting].append(result["seconds"])
            print(f"  TF_ENABLE_ONEDNN_OPTS={setting}: {result['seconds']:.2f} s/step", flush=True)
    off, on = statistics.median(seconds["0"]), statistics.median(seconds["1"])
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "(not set)")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; ONEDNN_MAX_CPU_ISA={isa}")
    print(f"main job network, one training step: oneDNN off {off:.2f} s, on {on:.2f} s "
          f"-> {off / on:.1f}x faster with oneDNN on")


if __name__ == "__main__":
    main()
