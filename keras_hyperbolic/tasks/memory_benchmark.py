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

Run:  keras-hyperbolic benchmark memory                 (2D, depths 4..64; ~10 min on 2 cores)
      keras-hyperbolic benchmark memory --workloads 3d --depths 4 16 64
      keras-hyperbolic benchmark memory --quick         (tiny, seconds; a smoke test)
(or `python benchmarks/memory.py` with the same options).
"""

import argparse
import json
import sys

_MODULE = "keras_hyperbolic.tasks.memory_benchmark"

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


def run_memory_benchmark(workloads=("2d",), depths=(4, 8, 16, 32, 64), modes=MODES, repeats=3,
                         json_path="benchmark_memory.json", quick=False):
    """Measures every (workload, mode, depth), prints the table and writes `json_path`.

    Each configuration's peak comes from its own process, the step times from one
    process per (workload, depth) that alternates the modes. Returns the results.
    """
    from keras_hyperbolic.profiling import megabytes, run_worker

    if quick:
        workloads, depths, repeats = ["quick"], [2, 4], 1
    results = []
    for workload in workloads:
        for depth in depths:
            times = run_worker(
                ["-m", _MODULE, "--timing-worker", "--workload", workload,
                 "--depth", str(depth), "--repeats", str(repeats), "--modes", *modes]
            )
            for mode in modes:
                result = run_worker(
                    ["-m", _MODULE, "--worker", "--workload", workload,
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
    with open(json_path, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"\nwrote {json_path}")
    return results


def argument_parser(parser=None):
    """The benchmark's options (shared by `keras-hyperbolic benchmark memory` and the script)."""
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["2d"], choices=sorted(WORKLOADS))
    parser.add_argument("--depths", nargs="+", type=int, default=[4, 8, 16, 32, 64])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="benchmark_memory.json", help="where to write results")
    parser.add_argument("--quick", action="store_true", help="tiny workload, depths 2 and 4")
    return parser


def run_from_arguments(args):
    return run_memory_benchmark(args.workloads, args.depths, args.modes, args.repeats, args.json,
                                args.quick)


def _worker_main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--timing-worker", action="store_true")
    parser.add_argument("--workload")
    parser.add_argument("--mode")
    parser.add_argument("--depth", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    args = parser.parse_args()
    return timing_worker(args) if args.timing_worker else worker(args)


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
    _worker_main()
