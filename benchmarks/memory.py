"""Peak memory and step time of one training step: plain autodiff vs keras.remat vs ReversibleSequence.

Workload (issue 3): a stack of `depth` AdditiveCoupling blocks on a batch of
(8, 128, 128, 32) in 2D, and a 3D workload of the same number of elements,
(4, 32, 32, 32, 32). Modes:

- `plain`: `ReversibleSequence(memory_efficient=False)`, i.e. plain autodiff;
- `remat`: every block wrapped in `keras.remat` (on TF: `tf.recompute_grad`),
  the baseline to beat: it recomputes from stored block inputs, so its memory
  still grows with depth;
- `reversible`: `ReversibleSequence(memory_efficient=True)`.

Each (workload, mode, depth) runs in its own subprocess for its peak memory,
read from TensorFlow's allocator statistics for CPU:0 (see
keras_hyperbolic.profiling). Step times come from one more subprocess per
(workload, depth) that builds all three modes and alternates them, repeat
after repeat, so a machine whose load drifts slows every mode alike and the
time ratios stay fair. Prints a table with ratios to plain autodiff measured
in the same run, and writes JSON.

Run:  python benchmarks/memory.py                       (2D, depths 4..64; ~10 min on 2 cores)
      python benchmarks/memory.py --workloads 3d --depths 4 16 64
      python benchmarks/memory.py --quick               (tiny, seconds; a smoke test)
"""

import argparse
import json
import os
import sys

WORKLOADS = {
    "2d": {"rank": 2, "shape": (8, 128, 128, 32)},
    "3d": {"rank": 3, "shape": (4, 32, 32, 32, 32)},
    "quick": {"rank": 2, "shape": (2, 64, 64, 8)},
}
MODES = ("plain", "remat", "reversible")


def build_step(workload, mode, depth):
    """A traced training step (loss, gradients, SGD update) for one configuration."""
    import keras
    import tensorflow as tf

    from keras_hyperbolic.layers import AdditiveCoupling
    from keras_hyperbolic.reversible import ReversibleSequence

    spec = WORKLOADS[workload]
    keras.utils.set_random_seed(0)
    blocks = [AdditiveCoupling(rank=spec["rank"]) for _ in range(depth)]
    if mode == "remat":
        stack = ReversibleSequence(blocks, memory_efficient=False)

        def forward(x):
            for block in blocks:
                x = keras.remat(lambda t, b=block: b(t, training=True))(x)
            return x

    else:
        stack = ReversibleSequence(blocks, memory_efficient=(mode == "reversible"))

        def forward(x):
            return stack(x, training=True)

    inputs = tf.random.stateless_normal(spec["shape"], seed=(1, 2))
    stack.build(inputs.shape)
    optimizer = keras.optimizers.SGD(1e-4)
    optimizer.build(stack.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(forward(inputs)))
        grads = tape.gradient(loss, stack.trainable_variables)
        optimizer.apply(grads, stack.trainable_variables)
        return loss

    return step


def worker(args):
    from keras_hyperbolic.profiling import measure_step

    step = build_step(args.workload, args.mode, args.depth)
    result = measure_step(step, repeats=1, warmup=1)
    result.update(workload=args.workload, mode=args.mode, depth=args.depth)
    print(json.dumps(result))


def timing_worker(args):
    """Median step time of every mode, the modes alternated within each repeat."""
    import statistics
    import time

    steps = {mode: build_step(args.workload, mode, args.depth) for mode in args.modes}
    for step in steps.values():
        step()  # trace and warm up
    times = {mode: [] for mode in steps}
    for _ in range(args.repeats):
        for mode, step in steps.items():
            start = time.perf_counter()
            step().numpy()
            times[mode].append(time.perf_counter() - start)
    print(json.dumps({mode: statistics.median(t) for mode, t in times.items()}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["2d"], choices=sorted(WORKLOADS))
    parser.add_argument("--depths", nargs="+", type=int, default=[4, 8, 16, 32, 64])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="benchmark_memory.json", help="where to write results")
    parser.add_argument("--quick", action="store_true", help="tiny workload, depths 2 and 4")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timing-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.timing_worker:
        return timing_worker(args)
    if args.quick:
        args.workloads, args.depths, args.repeats = ["quick"], [2, 4], 1

    from keras_hyperbolic.profiling import megabytes, run_worker

    results = []
    for workload in args.workloads:
        for depth in args.depths:
            times = run_worker(
                [os.path.abspath(__file__), "--timing-worker", "--workload", workload,
                 "--depth", str(depth), "--repeats", str(args.repeats), "--modes", *args.modes]
            )
            for mode in args.modes:
                result = run_worker(
                    [os.path.abspath(__file__), "--worker", "--workload", workload,
                     "--mode", mode, "--depth", str(depth)]
                )
                result["step_seconds"] = times[mode]
                results.append(result)
                print(
                    f"  measured {workload} {mode:>10} depth {depth:>3}: "
                    f"{megabytes(result['peak_bytes']):8.1f} MB  {result['step_seconds']:.3f} s",
                    file=sys.stderr,
                )
    print(report(results))
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"\nwrote {args.json}")
    return results


def report(results):
    from keras_hyperbolic.profiling import megabytes

    by_key = {(r["workload"], r["mode"], r["depth"]): r for r in results}
    lines = []
    for workload in sorted({r["workload"] for r in results}):
        depths = sorted({r["depth"] for r in results if r["workload"] == workload})
        lines.append(f"\nWorkload {workload} {WORKLOADS[workload]['shape']} "
                     f"(peak from {results[0]['peak_source']})")
        lines.append(f"{'depth':>5} | {'plain MB':>9} {'remat MB':>9} {'rev MB':>9} | "
                     f"{'plain/rev':>9} {'remat/rev':>9} | {'plain s':>8} {'remat s':>8} "
                     f"{'rev s':>8} {'rev/plain t':>11}")
        for depth in depths:
            row = {m: by_key.get((workload, m, depth)) for m in MODES}
            mb = {m: max(megabytes(r["peak_bytes"]), 1e-9) if r else float("nan") for m, r in row.items()}
            sec = {m: r["step_seconds"] if r else float("nan") for m, r in row.items()}
            lines.append(
                f"{depth:>5} | {mb['plain']:9.1f} {mb['remat']:9.1f} {mb['reversible']:9.1f} | "
                f"{mb['plain'] / mb['reversible']:9.2f} {mb['remat'] / mb['reversible']:9.2f} | "
                f"{sec['plain']:8.3f} {sec['remat']:8.3f} {sec['reversible']:8.3f} "
                f"{sec['reversible'] / sec['plain']:11.2f}"
            )
        rev = [by_key.get((workload, "reversible", d)) for d in depths]
        if rev[0] and rev[-1]:
            lines.append(
                f"reversible peak at depth {depths[-1]} / depth {depths[0]}: "
                f"{rev[-1]['peak_bytes'] / rev[0]['peak_bytes']:.2f}x"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
