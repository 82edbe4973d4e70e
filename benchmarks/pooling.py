"""Forward + inverse time of each invertible pooling, relative to the bare pixel shuffle.

For a batch of shape `--shape` (default (8, 256, 256, 16), float32) times
`inverse(pool(x))` inside one `tf.function` for every pooling kind, and
`tf.nn.depth_to_space(tf.nn.space_to_depth(x, 2), 2)` as the baseline, measured
in the same run (before and after the layers; the ratio uses the median over
both). Each is warmed up first, then the median of `--repeats` timings is
reported. Timings on a shared machine are noisy: compare ratios, not seconds.

Run:  python benchmarks/pooling.py
      python benchmarks/pooling.py --repeats 20 --json pooling.json
      python benchmarks/pooling.py --shape 2 64 64 8 --repeats 3   (a smoke test)
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from keras_hyperbolic import runtime  # noqa: E402  (imports no TensorFlow)

# oneDNN on before TensorFlow is imported, unless the user chose.
runtime.prefer_onednn()

import tensorflow as tf  # noqa: E402

from keras_hyperbolic import layers  # noqa: E402

KINDS = {
    "pixel_shuffle": lambda: layers.PixelShufflePooling2D(),
    "haar": lambda: layers.WaveletPooling2D("haar"),
    "db2": lambda: layers.WaveletPooling2D("db2"),
    "learnable": lambda: layers.WaveletPooling2D("learnable"),
    "orthogonal_expm": lambda: layers.OrthogonalPooling2D("expm"),
    "orthogonal_cayley": lambda: layers.OrthogonalPooling2D("cayley"),
}


def time_fn(fn, x, warmup, repeats):
    for _ in range(warmup):
        fn(x).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x).numpy()  # .numpy() waits for the result
        times.append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 256, 256, 16],
                        help="batch, height, width, channels (default: 8 256 256 16)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=list(KINDS))
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here ('-' for stdout)")
    args = parser.parse_args(argv)

    x = tf.random.stateless_normal(args.shape, seed=[0, 0], dtype=tf.float32)

    @tf.function
    def baseline(inp):
        return tf.nn.depth_to_space(tf.nn.space_to_depth(inp, 2), 2)

    base_times = time_fn(baseline, x, args.warmup, args.repeats)
    results = {}
    for kind in args.kinds:
        layer = KINDS[kind]()
        layer.build(x.shape)

        @tf.function
        def round_trip(inp, layer=layer):
            return layer.inverse(layer(inp))

        error = float(tf.reduce_max(tf.abs(round_trip(x) - x)))
        results[kind] = {"times_s": time_fn(round_trip, x, args.warmup, args.repeats), "max_abs_error": error}
    base_times += time_fn(baseline, x, args.warmup, args.repeats)

    base = statistics.median(base_times)
    print(f"forward+inverse, batch {tuple(args.shape)} float32, median of {args.repeats} "
          f"(tf.function, {args.warmup} warm-up calls); TF {tf.__version__}")
    print(f"{'kind':<20}{'ms':>10}{'x pixel shuffle':>18}{'max |x - f^-1(f(x))|':>24}")
    print(f"{'space/depth_to_space':<20}{base * 1e3:>10.2f}{1.0:>18.2f}{'(baseline)':>24}")
    summary = {"shape": args.shape, "repeats": args.repeats, "tensorflow": tf.__version__,
               "baseline_ms": base * 1e3, "kinds": {}}
    for kind, result in results.items():
        median = statistics.median(result["times_s"])
        ratio = median / base
        print(f"{kind:<20}{median * 1e3:>10.2f}{ratio:>18.2f}{result['max_abs_error']:>24.2e}")
        summary["kinds"][kind] = {"ms": median * 1e3, "ratio": ratio, "max_abs_error": result["max_abs_error"]}
    if "haar" in results:
        verdict = "met" if summary["kinds"]["haar"]["ratio"] <= 3.0 else "NOT met"
        print(f"target Haar <= 3x pixel shuffle: {verdict}")
    if args.json:
        text = json.dumps(summary, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
