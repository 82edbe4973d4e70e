"""Training memory of the papers' networks, measured: reversible (memory_efficient=True) vs plain autodiff.

Activation memory is what grows with the input. For each network and mode one
process measures a gradients step at two inputs, the second with the last
spatial axis (the frames of a video) doubled, and takes the growth of the
step's peak: weights, weight gradients and the optimizer's temporaries are
the same at both sizes and cancel. The peak is that of the tensors' own
sizes (`keras_hyperbolic.profiling.live_tensor_peak`, from the profiler's
trace): the allocator's peak (CPU:0) also counts chunks handed out larger
than requested, which depends on the process's allocation history (measured:
1.5 state-sized tensors of it in the weight gradients of the 38-layer network
at one input, none at the other), so its growth is printed beside, not used.
The process runs with inter-op parallelism 1, so the op order, and with it
the peak, repeats exactly (with the default thread pool the allocator's peaks
vary by about 20 % from run to run).

Reported per configuration, at the smaller input:
- activations: the growth, in MB and in state-sized tensors per input volume
  (a state: one float32 tensor of the network's full-resolution width, 6
  channels for `lensink_video`, at the input's spatial size), next to the
  paper's count (its Table 1: 3 states reversible, 19 + 2 plain);
- the raw peak of a full training step (loss, gradients, SGD update) and
  where it goes: weights (4 bytes per parameter), their gradients (the same),
  the optimizer update (full-step peak minus gradients-only peak), the
  activations, and the rest (the input, workspaces, one layer's transients);
- the full step's time (median of `--repeats` after one warm-up call).

1. `lensink_video` (Lensink et al. Table 2: 19 layers, two 3D Haar steps up
   front, 3x3x3 kernels, 20.3 M parameters), and the same with twice the
   layers per unit: the reversible activations should not grow.
2. `InvertibleUNet` (2D, 3 levels) at depths 5, 10, 20, 30 coupling blocks
   per level and side, next to the iUNet README's percentages.
3. `--full-size`: one training step of `lensink_video` at the paper's own
   240 x 424 x 72 x 6 input, reversible and plain (about 11 GB of memory and
   tens of minutes on 2 cores), beside the paper's Table 1.

Run:  python benchmarks/paper_memory.py              (1 and 2)
      python benchmarks/paper_memory.py --full-size  (3)
      python benchmarks/paper_memory.py --quick      (seconds-scale smoke test)
"""

import argparse
import hashlib
import json
import os
import sys

from keras_hyperbolic import runtime  # imports no TensorFlow

# oneDNN on before TensorFlow is imported, unless the user chose; the workers inherit it
# (keras_hyperbolic.profiling.run_worker).
runtime.prefer_onednn()

PAPER_TABLE_1 = {"reversible_mb": 528, "plain_mb": 3693, "reversible_states": 3}
IUNET_README = {5: 26.8, 10: 18.4, 20: 13.8, 30: 12.2}
PAPER_VIDEO_INPUT = (240, 424, 72, 6)


def lensink_config(double):
    from keras_hyperbolic.models import get_preset

    config = get_preset("lensink_video")["config"]
    if double:
        config["units"] = [(2 * n, d) for n, d in config["units"]]
    return config


def lensink_layers(double=False):
    return sum(n for n, _ in lensink_config(double)["units"])


def build_model(spec):
    import keras

    from keras_hyperbolic.models import HyperbolicSegmenter, InvertibleUNet

    keras.utils.set_random_seed(0)
    if spec["kind"] == "lensink":
        return HyperbolicSegmenter(num_classes=2, memory_efficient=spec["memory_efficient"],
                                   **lensink_config(spec["double"]))
    return InvertibleUNet(rank=2, channels=spec["shape"][-1], levels=spec["levels"],
                          blocks_per_level=spec["depth"],
                          memory_efficient=spec["memory_efficient"])


def state_channels(spec):
    """Channels of one state at full resolution (the unit the paper counts in)."""
    if spec["kind"] == "lensink":
        return lensink_config(spec["double"])["width"]
    return spec["shape"][-1]


def doubled(shape):
    """`shape` (batch, *spatial, channels) with its last spatial axis doubled."""
    return list(shape[:-2]) + [2 * shape[-2], shape[-1]]


def worker(spec):
    import numpy as np
    import tensorflow as tf

    # One op at a time: the same order every run, so the allocator's peak repeats.
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from keras_hyperbolic.profiling import live_tensor_peak, measure_step

    model = build_model(spec)
    small = tuple(spec["shape"])
    model.build(small)
    variables = model.trainable_variables
    optimizer = keras.optimizers.SGD(1e-5)
    optimizer.build(variables)
    weights_in_use = tf.config.experimental.get_memory_info("CPU:0")["current"]

    def loss_and_gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)))
        return loss, tape.gradient(loss, variables)

    @tf.function
    def gradients_step(x):
        return loss_and_gradients(x)  # all gradients alive at the end, as before an update

    @tf.function
    def forward(x):
        return model(x, training=True)

    @tf.function
    def training_step(x):
        loss, grads = loss_and_gradients(x)
        optimizer.apply(grads, variables)
        return loss

    def run(step, shape, repeats):
        x = tf.random.stateless_normal(shape, seed=(1, 2))
        return measure_step(lambda: step(x), repeats=repeats, warmup=spec["warmup"])

    def gradients(shape):
        x = tf.random.stateless_normal(shape, seed=(1, 2))
        measured = measure_step(lambda: gradients_step(x), repeats=1, warmup=spec["warmup"])
        measured["live_peak_bytes"] = live_tensor_peak(lambda: gradients_step(x))
        return measured

    result = {"spec": spec, "parameters": int(sum(int(np.prod(v.shape)) for v in variables)),
              "weights_in_use_bytes": int(weights_in_use),
              "state_bytes": 4 * int(np.prod(small[:-1])) * state_channels(spec)}
    if spec.get("full_size"):  # one step, no second size: the run is the figure
        result["step"] = run(training_step, small, spec["repeats"])
    else:
        result["gradients_small"] = gradients(small)
        result["gradients_large"] = gradients(tuple(doubled(small)))
        result["step"] = run(training_step, small, spec["repeats"])
        # The forward pass alone: what the reversible backward recomputes.
        result["forward"] = run(forward, small, spec["repeats"])
    print(json.dumps(result))


def summarise(result):
    """Breakdown of the full step's peak at the smaller input (bytes), from a worker's result."""
    peak = result["step"]["peak_bytes"]
    weights = 4 * result["parameters"]
    if "gradients_small" not in result:
        return {"peak": peak, "weights": weights, "seconds": result["step"]["step_seconds"]}
    small, large = result["gradients_small"], result["gradients_large"]
    activations = large["live_peak_bytes"] - small["live_peak_bytes"]
    update = peak - small["peak_bytes"]
    return {
        "peak": peak,
        "weights": weights,
        "gradients": weights,
        "update": update,
        "activations": activations,
        "allocator_activations": large["peak_bytes"] - small["peak_bytes"],
        "rest": peak - 2 * weights - update - activations,
        "states": activations / result["state_bytes"],
        "seconds": result["step"]["step_seconds"],
        "forward_seconds": result["forward"]["step_seconds"],
    }


def measure(spec, cache=None):
    """One configuration's worker result; with `cache` (a directory) kept there and reused."""
    from keras_hyperbolic.profiling import megabytes, run_worker

    path = None
    if cache:
        key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        path = os.path.join(cache, f"{key}.json")
    if path and os.path.exists(path):
        with open(path) as handle:
            result = json.load(handle)
    else:
        result = run_worker([os.path.abspath(__file__), "--worker", json.dumps(spec)], timeout=7200)
        if path:
            os.makedirs(cache, exist_ok=True)
            with open(path, "w") as handle:
                json.dump(result, handle)
    if result["step"]["peak_source"] != "allocator":
        raise RuntimeError("TensorFlow's allocator keeps no statistics in the worker: run with "
                           "TF_ENABLE_ONEDNN_OPTS=1 (or unset).")
    s = summarise(result)
    extra = (f", activations {megabytes(s['activations']):.1f} MB ({s['states']:.2f} states)"
             if "activations" in s else "")
    print(f"  measured {spec}: step peak {megabytes(s['peak']):.1f} MB{extra}, "
          f"{s['seconds']:.2f} s", file=sys.stderr, flush=True)
    return result


def _row(label, rev, plain, unit=2**20, digits=1):
    ratio = plain / rev if rev > 0 else float("nan")
    return f"  {label:<34} {rev / unit:>12.{digits}f} {plain / unit:>12.{digits}f} {ratio:>10.2f}"


def _growth(before, after):
    if before["activations"] <= 0:  # tiny inputs: the peak is all weights
        return "n/a (no activation growth measured at this input size)"
    return f"{100 * (after['activations'] / before['activations'] - 1):+.1f} %"


def lensink_report(rev, plain, shape):
    r, p = summarise(rev), summarise(plain)
    layers = lensink_layers(rev["spec"]["double"])
    state_mb = rev["state_bytes"] / 2**20
    lines = [
        f"lensink_video, {layers} layers, {rev['parameters']:,} parameters, input {tuple(shape)}, "
        f"batch 1; one state = {state_mb:.2f} MB (peaks of live tensors, inter-op parallelism 1):",
        f"  {'':<34} {'reversible':>12} {'plain':>12} {'plain/rev':>10}",
        _row("activations (growth), MB", r["activations"], p["activations"]),
        _row("activations, state-sized tensors", r["activations"], p["activations"], unit=rev["state_bytes"], digits=2),
        _row("  growth of allocator peaks, MB", r["allocator_activations"], p["allocator_activations"]),
        f"  {'paper Table 1, states':<34} {PAPER_TABLE_1['reversible_states']:>12} "
        f"{layers + 2:>12} {(layers + 2) / PAPER_TABLE_1['reversible_states']:>10.2f}",
        _row("raw peak of a training step, MB", r["peak"], p["peak"]),
        _row("  weights", r["weights"], p["weights"]),
        _row("  weight gradients", r["gradients"], p["gradients"]),
        _row("  optimizer update (SGD)", r["update"], p["update"]),
        _row("  activations", r["activations"], p["activations"]),
        _row("  rest (input, workspaces)", r["rest"], p["rest"]),
        f"  {'step time, s':<34} {r['seconds']:>12.2f} {p['seconds']:>12.2f} "
        f"{'rev/plain ' + format(r['seconds'] / p['seconds'], '.2f'):>10}",
        f"  {'  of which the forward pass, s':<34} {r['forward_seconds']:>12.2f} "
        f"{p['forward_seconds']:>12.2f}",
    ]
    return lines


def lensink_lines(lensink, shape):
    lines = lensink_report(lensink[(False, True)], lensink[(False, False)], shape)
    lines += lensink_report(lensink[(True, True)], lensink[(True, False)], shape)
    r1, r2 = summarise(lensink[(False, True)]), summarise(lensink[(True, True)])
    p1, p2 = summarise(lensink[(False, False)]), summarise(lensink[(True, False)])
    lines.append(f"twice the layers: reversible activations {_growth(r1, r2)}, plain {_growth(p1, p2)}")
    return lines


def iunet_report(results, depths, shape):
    lines = [f"InvertibleUNet 2D, 3 levels, input {tuple(shape)}: reversible as % of plain autodiff "
             "(iUNet README in brackets)",
             f"  {'depth':>5} {'params':>9} {'rev act MB':>11} {'plain act MB':>13} "
             f"{'act %':>7} {'rev peak':>9} {'plain peak':>11} {'peak %':>7} {'README %':>9} "
             f"{'rev s':>6} {'plain s':>8}"]
    for depth in depths:
        r, p = summarise(results[(depth, True)]), summarise(results[(depth, False)])
        lines.append(
            f"  {depth:>5} {results[(depth, True)]['parameters']:>9,} "
            f"{r['activations'] / 2**20:>11.1f} {p['activations'] / 2**20:>13.1f} "
            f"{100 * r['activations'] / max(p['activations'], 1):>7.1f} "
            f"{r['peak'] / 2**20:>9.1f} {p['peak'] / 2**20:>11.1f} "
            f"{100 * r['peak'] / max(p['peak'], 1):>7.1f} {IUNET_README.get(depth, float('nan')):>9} "
            f"{r['seconds']:>6.2f} {p['seconds']:>8.2f}")
    return lines


def full_size(args):
    """One step per mode at the paper's input; modes not in `--modes` are read from `--json`."""
    results = {}
    if os.path.exists(args.json):
        with open(args.json) as handle:
            results = {k == "True": v for k, v in json.load(handle).items() if k in ("True", "False")}
    for efficient in args.modes:
        spec = {"kind": "lensink", "double": False, "memory_efficient": efficient,
                "shape": [1, *PAPER_VIDEO_INPUT], "full_size": True, "warmup": 0, "repeats": 1}
        results[efficient] = measure(spec, args.cache)
    if set(results) != {True, False}:
        return {str(k): v for k, v in results.items()}, ["measured so far: " + ", ".join(
            f"{'reversible' if k else 'plain'} peak {v['step']['peak_bytes'] / 2**30:.2f} GB"
            for k, v in results.items())]
    r, p = summarise(results[True]), summarise(results[False])
    layers = lensink_layers()
    lines = [f"lensink_video ({layers} layers) at the paper's input {PAPER_VIDEO_INPUT}, batch 1, one "
             "training step (SGD), first call (no warm-up):",
             f"  {'':<34} {'reversible':>12} {'plain':>12} {'plain/rev':>10}",
             _row("step peak, GB", r["peak"], p["peak"], unit=2**30, digits=2),
             f"  {'paper Table 1 (states), GB':<34} {PAPER_TABLE_1['reversible_mb'] / 1024:>12.2f} "
             f"{PAPER_TABLE_1['plain_mb'] / 1024:>12.2f} "
             f"{PAPER_TABLE_1['plain_mb'] / PAPER_TABLE_1['reversible_mb']:>10.2f}",
             f"  {'step time (incl. tracing), s':<34} {r['seconds']:>12.0f} {p['seconds']:>12.0f}"]
    return {str(k): v for k, v in results.items()}, lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs and depths (smoke test)")
    parser.add_argument("--full-size", action="store_true",
                        help="one step of lensink_video at the paper's 240x424x72x6 input")
    parser.add_argument("--lensink-shape", type=int, nargs=4, default=[96, 96, 64, 6],
                        help="smaller input (H W frames C); the larger doubles the frames")
    parser.add_argument("--iunet-shape", type=int, nargs=4, default=[4, 64, 64, 16],
                        help="smaller input (batch H W C); the larger doubles W")
    parser.add_argument("--depths", type=int, nargs="+", default=[5, 10, 20, 30])
    parser.add_argument("--repeats", type=int, default=2, help="timed full steps per config")
    parser.add_argument("--modes", default="reversible,plain",
                        help="--full-size: the modes to measure now (others are read from --json)")
    parser.add_argument("--skip-iunet", action="store_true")
    parser.add_argument("--skip-lensink", action="store_true")
    parser.add_argument("--lensink-variants", default="paper,double",
                        help="'paper' (19 layers), 'double' (38): the lensink_video configurations "
                             "to measure now (the table needs both: reuse the other via --cache)")
    parser.add_argument("--cache", metavar="DIR",
                        help="keep each configuration's result in DIR and reuse it: resume a long "
                             "run, or measure configurations in parallel processes")
    parser.add_argument("--json", default="benchmark_paper_memory.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    args.modes = [{"reversible": True, "plain": False}[m] for m in args.modes.split(",")]
    bad = set(args.lensink_variants.split(",")) - {"paper", "double"}
    if bad:
        parser.error(f"--lensink-variants: {sorted(bad)} not among 'paper', 'double' "
                     f"(got {args.lensink_variants!r})")
    if args.full_size:
        results, lines = full_size(args)
    else:
        if args.quick:
            args.lensink_shape, args.iunet_shape, args.depths = [8, 8, 8, 6], [2, 16, 16, 8], [1, 2]
        results, lines = {"lensink": {}, "iunet": {}}, []
        variants = [] if args.skip_lensink else args.lensink_variants.split(",")
        for double in [v == "double" for v in variants]:
            for efficient in (True, False):
                spec = {"kind": "lensink", "double": double, "memory_efficient": efficient,
                        "shape": [1] + args.lensink_shape, "warmup": 1, "repeats": args.repeats}
                results["lensink"][(double, efficient)] = measure(spec, args.cache)
        if len(results["lensink"]) == 4:
            lines += lensink_lines(results["lensink"], args.lensink_shape)
        elif results["lensink"]:
            lines += lensink_report(results["lensink"][(variants[0] == "double", True)],
                                    results["lensink"][(variants[0] == "double", False)],
                                    args.lensink_shape)
        if not args.skip_iunet:
            for depth in args.depths:
                for efficient in (True, False):
                    spec = {"kind": "iunet", "depth": depth, "levels": 3, "memory_efficient": efficient,
                            "shape": args.iunet_shape, "warmup": 1, "repeats": args.repeats}
                    results["iunet"][(depth, efficient)] = measure(spec, args.cache)
            lines += [""] + iunet_report(results["iunet"], args.depths, args.iunet_shape)
        results = {k: {str(kk): vv for kk, vv in v.items()} for k, v in results.items()}
    print("\n".join(lines))
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"\nwrote {args.json}")
    return results


if __name__ == "__main__":
    main()
