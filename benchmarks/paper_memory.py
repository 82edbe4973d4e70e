"""Training memory of the papers' networks: reversible (memory_efficient=True) vs plain autodiff.

1. `lensink_video` (Lensink et al. Table 2: 19 layers, two 3D Haar steps up
   front, 3x3x3 kernels) at a reduced input size, next to the paper's Table 1
   (528 MB reversible vs 3693 MB non-reversible for the states, 7.0x), and the
   state memory computed for the paper's full 240x424x72x6 input.
2. The same network with twice the layers per unit: the reversible peak
   should stay flat.
3. `InvertibleUNet` memory as a percentage of plain autodiff at depths
   (coupling blocks per level and side) 5, 10, 20, 30, next to the iUNet
   README (26.8, 18.4, 13.8, 12.2 %).

Each configuration runs in its own subprocess; the peak is TensorFlow's
allocator peak for CPU:0 over a traced training step (loss, gradients, SGD
update), see keras_hyperbolic.profiling. "activations" is that peak minus the
bytes of the weight gradients (4 bytes per parameter, the same in both modes):
the paper's Table 1 counts the states only. At reduced input sizes the 20 M
weights of the 384-channel layers dominate the raw peak, so both are shown.

Run:  python benchmarks/paper_memory.py            (~20 min on 2 cores)
      python benchmarks/paper_memory.py --quick    (seconds-scale smoke test)
"""

import argparse
import json
import os
import sys

# oneDNN on before TensorFlow is imported, unless the user chose (keras_hyperbolic.runtime);
# the workers inherit it (keras_hyperbolic.profiling.run_worker).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

PAPER_TABLE_1 = {"reversible_mb": 528, "plain_mb": 3693}
IUNET_README = {5: 26.8, 10: 18.4, 20: 13.8, 30: 12.2}
PAPER_VIDEO_INPUT = (240, 424, 72, 6)


def _lensink_config(double):
    from keras_hyperbolic.models import get_preset

    config = get_preset("lensink_video")["config"]
    if double:
        config["units"] = [(2 * n, d) for n, d in config["units"]]
    return config


def build_model(spec, memory_efficient):
    import keras

    from keras_hyperbolic.models import HyperbolicSegmenter, InvertibleUNet

    keras.utils.set_random_seed(0)
    if spec["kind"] == "lensink":
        return HyperbolicSegmenter(num_classes=2, memory_efficient=memory_efficient,
                                   **_lensink_config(spec["double"]))
    return InvertibleUNet(rank=2, channels=spec["channels"], levels=spec["levels"],
                          blocks_per_level=spec["depth"], memory_efficient=memory_efficient)


def worker(spec):
    import keras
    import tensorflow as tf

    from keras_hyperbolic.profiling import measure_step

    model = build_model(spec, spec["memory_efficient"])
    inputs = tf.random.stateless_normal(tuple(spec["shape"]), seed=(1, 2))
    model.build(inputs.shape)
    variables = model.trainable_variables
    optimizer = keras.optimizers.SGD(1e-5)
    optimizer.build(variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(inputs, training=True)))
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return loss

    result = measure_step(step, repeats=spec.get("repeats", 1), warmup=1)
    params = int(sum(int(tf.size(v)) for v in variables))
    result.update(spec=spec, parameters=params,
                  activation_bytes=max(result["peak_bytes"] - 4 * params, 0))
    print(json.dumps(result))


def measure(spec):
    from keras_hyperbolic.profiling import megabytes, run_worker

    result = run_worker([os.path.abspath(__file__), "--worker", json.dumps(spec)])
    print(f"  measured {spec}: peak {megabytes(result['peak_bytes']):.1f} MB, activations "
          f"{megabytes(result['activation_bytes']):.1f} MB, {result['step_seconds']:.2f} s",
          file=sys.stderr, flush=True)
    return result


def state_memory_full_input(config, layers):
    """MB of the states for the paper's full input, counted as the paper's Table 1 does.

    Every state of the network has the same number of values as the 6-channel
    input (6 channels at full size = 48 at half = 384 at quarter). Plain
    autodiff keeps every layer's state plus the two initial ones; the
    reversible network keeps a fixed number of states whatever the depth:
    the final pair and the one being rebuilt.
    """
    values = 1
    for s in PAPER_VIDEO_INPUT:
        values *= s
    state_mb = 4 * values / 2**20
    return {"state_mb": state_mb, "plain_mb": (layers + 2) * state_mb,
            "reversible_mb": 3 * state_mb}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    # 96x96x64: the largest input whose plain-autodiff step fits comfortably in a
    # few minutes on 2 cores; at 48x48x32 the 20 M weights dominate the peak.
    parser.add_argument("--lensink-shape", type=int, nargs=4, default=[96, 96, 64, 3])
    parser.add_argument("--iunet-shape", type=int, nargs=4, default=[4, 64, 64, 16])
    parser.add_argument("--depths", type=int, nargs="+", default=[5, 10, 20, 30])
    parser.add_argument("--json", default="benchmark_paper_memory.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    if args.quick:
        args.lensink_shape, args.iunet_shape, args.depths = [8, 8, 8, 3], [2, 16, 16, 8], [1, 2]

    from keras_hyperbolic.profiling import megabytes

    results = {"lensink": {}, "iunet": {}}
    for double in (False, True):
        for efficient in (True, False):
            spec = {"kind": "lensink", "double": double, "memory_efficient": efficient,
                    "shape": [1] + args.lensink_shape}
            results["lensink"][(double, efficient)] = measure(spec)
    for depth in args.depths:
        for efficient in (True, False):
            spec = {"kind": "iunet", "depth": depth, "channels": args.iunet_shape[-1],
                    "levels": 3, "memory_efficient": efficient, "shape": args.iunet_shape}
            results["iunet"][(depth, efficient)] = measure(spec)

    lines = []
    lensink = results["lensink"]
    rev, plain = lensink[(False, True)], lensink[(False, False)]
    layers = sum(n for n, _ in _lensink_config(False)["units"])
    lines.append(f"lensink_video (Table 2, {layers} layers, {rev['parameters']:,} parameters) "
                 f"at input {tuple(args.lensink_shape)}, batch 1 (peak from {rev['peak_source']}):")
    lines.append(f"{'':<28} {'reversible MB':>14} {'plain MB':>10} {'plain/rev':>10}")
    for key, label in (("peak_bytes", "raw step peak"), ("activation_bytes", "activations (peak - grads)")):
        r, p = megabytes(rev[key]), megabytes(plain[key])
        lines.append(f"{label:<28} {r:>14.1f} {p:>10.1f} {p / max(r, 1e-9):>10.2f}")
    lines.append(f"{'paper Table 1 (states)':<28} {PAPER_TABLE_1['reversible_mb']:>14} "
                 f"{PAPER_TABLE_1['plain_mb']:>10} "
                 f"{PAPER_TABLE_1['plain_mb'] / PAPER_TABLE_1['reversible_mb']:>10.2f}")
    full = state_memory_full_input(_lensink_config(False), layers)
    lines.append(f"computed states for the paper's full {PAPER_VIDEO_INPUT} input: one state "
                 f"{full['state_mb']:.1f} MB; reversible (3 states) {full['reversible_mb']:.0f} MB, "
                 f"plain ({layers}+2 states) {full['plain_mb']:.0f} MB, "
                 f"{full['plain_mb'] / full['reversible_mb']:.2f}x")
    rev2, plain2 = lensink[(True, True)], lensink[(True, False)]
    lines.append(f"\nlayers per unit doubled ({2 * layers} layers):")
    for key, label in (("peak_bytes", "raw step peak"), ("activation_bytes", "activations")):
        lines.append(
            f"  {label:<14} reversible {megabytes(rev[key]):8.1f} -> {megabytes(rev2[key]):8.1f} MB "
            f"({100 * (rev2[key] / max(rev[key], 1) - 1):+.1f}%), plain {megabytes(plain[key]):8.1f} -> "
            f"{megabytes(plain2[key]):8.1f} MB ({100 * (plain2[key] / max(plain[key], 1) - 1):+.1f}%)"
        )
    lines.append(f"\nInvertibleUNet 2D, 3 levels, input {tuple(args.iunet_shape)}: memory as % of "
                 "plain autodiff (iUNet README in brackets)")
    lines.append(f"{'depth':>5} {'params':>9} {'rev MB':>9} {'plain MB':>9} {'raw %':>7} "
                 f"{'activ. %':>9} {'README %':>9} {'rev s':>7} {'plain s':>8}")
    for depth in args.depths:
        r, p = results["iunet"][(depth, True)], results["iunet"][(depth, False)]
        lines.append(
            f"{depth:>5} {r['parameters']:>9,} {megabytes(r['peak_bytes']):>9.1f} "
            f"{megabytes(p['peak_bytes']):>9.1f} {100 * r['peak_bytes'] / max(p['peak_bytes'], 1):>7.1f} "
            f"{100 * r['activation_bytes'] / max(p['activation_bytes'], 1):>9.1f} "
            f"{IUNET_README.get(depth, float('nan')):>9} {r['step_seconds']:>7.2f} "
            f"{p['step_seconds']:>8.2f}"
        )
    print("\n".join(lines))
    with open(args.json, "w") as handle:
        json.dump({k: {str(kk): vv for kk, vv in v.items()} for k, v in results.items()},
                  handle, indent=2)
    print(f"\nwrote {args.json}")
    return results


if __name__ == "__main__":
    main()
