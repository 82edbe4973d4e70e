"""The time price of rebuilding activations: reversible vs plain-autodiff training step, one process.

The memory-efficient engine rebuilds each block's input from its output during
the backward pass; for a leapfrog block that is one more evaluation of its
residual function `f`, whose result the block's vector-Jacobian product then
reuses, so nothing else is recomputed. The reversible step should therefore
cost at most about the plain step plus one forward pass of the reversible
stack; it is printed beside the measured ratio as that estimate (measured on
`lensink_video` the engine's step costs less than that: its fused backward is
leaner than autodiff's).

Measured here in ONE process, on the same weights and input, alternating the
calls (reversible step, plain step, stack forward, ...) so that a change of
the machine's speed affects all three alike; medians of `--repeats` rounds
after one warm-up round. A step is loss, gradients and an SGD update.

Default: `lensink_video` (Lensink et al. Table 2, 19 layers) at 96 x 96 x 64
x 6, the configuration of `paper_memory.py`. `--stack KIND --rank R --depth D`
times instead a coupling stack of `benchmarks/peers.py` (the networks built
against memcnn and revlib, their shapes and weights): there the rebuild is one
forward of the whole stack.

Run:  python benchmarks/recompute_cost.py
      python benchmarks/recompute_cost.py --shape 48 48 32 6 --repeats 5
      python benchmarks/recompute_cost.py --stack additive --rank 2 --depth 32 --repeats 7
"""

import argparse
import json
import statistics
import time

from keras_hyperbolic import runtime  # imports no TensorFlow

# oneDNN on before TensorFlow is imported, unless the user chose.
runtime.prefer_onednn()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_hyperbolic.models import HyperbolicSegmenter, get_preset  # noqa: E402


def build_pair(preset, shape):
    """The preset's segmenter on the engine and the same network and weights on plain autodiff."""
    keras.utils.set_random_seed(0)
    config = get_preset(preset)["config"]
    reversible = HyperbolicSegmenter(num_classes=2, memory_efficient=True, **config)
    plain = HyperbolicSegmenter(num_classes=2, memory_efficient=False, **config)
    for model in (reversible, plain):
        model.build((1,) + tuple(shape))
    plain.set_weights(reversible.get_weights())
    return reversible, plain


def build_stack_pair(kind, rank, depth):
    """A coupling stack of `peers.py` on the engine and on plain autodiff, one set of weights."""
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peer_networks import coupling_weights, keras_network
    from peers import SHAPES

    spec = {"kind": kind, "rank": rank, "depth": depth, "shape": SHAPES[rank]}
    weights = coupling_weights(spec)
    return keras_network(spec, True, weights), keras_network(spec, False, weights), SHAPES[rank]


def training_step(model):
    variables = model.trainable_variables
    optimizer = keras.optimizers.SGD(1e-5)
    optimizer.build(variables)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


def stack_forward(model):
    """The reversible stack's forward pass alone: what the backward pass evaluates again."""

    stack = getattr(model, "hyperbolic", model)  # a segmenter's reversible part, or a stack

    @tf.function
    def forward(pair):
        return stack(pair, training=True)

    return forward


def timed(fn, arg):
    start = time.perf_counter()
    fn(arg).numpy()  # waits for the asynchronous work
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="lensink_video")
    parser.add_argument("--shape", type=int, nargs="+", default=[96, 96, 64, 6],
                        help="input (spatial..., channels), batch 1")
    parser.add_argument("--stack", choices=("additive", "affine", "revlib"), default=None,
                        help="time a coupling stack of peers.py instead of --preset")
    parser.add_argument("--rank", type=int, choices=(2, 3), default=2, help="of --stack")
    parser.add_argument("--depth", type=int, default=32, help="blocks of --stack")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up")
    parser.add_argument("--json", default="benchmark_recompute_cost.json")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    if args.stack:
        reversible, plain, shape = build_stack_pair(args.stack, args.rank, args.depth)
        x = tf.random.stateless_normal(shape, seed=(1, 2))
        pair = x
        what = f"{args.stack} stack {args.rank}D, depth {args.depth}, input {shape}"
    else:
        reversible, plain = build_pair(args.preset, args.shape)
        x = tf.random.stateless_normal((1,) + tuple(args.shape), seed=(1, 2))
        pair = reversible.opened_pair(x)
        layers = sum(n for n, _ in get_preset(args.preset)["config"]["units"])
        what = f"{args.preset} ({layers} layers), input {tuple(args.shape)}, batch 1"
    calls = {"reversible step": (training_step(reversible), x),
             "plain step": (training_step(plain), x),
             "stack forward": (stack_forward(reversible), pair)}
    times = {name: [] for name in calls}
    for round_ in range(args.repeats + 1):
        for name, (fn, arg) in calls.items():
            seconds = timed(fn, arg)
            if round_:  # round 0 traces and warms up
                times[name].append(seconds)
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["reversible step"] / median["plain step"]
    estimate = (median["plain step"] + median["stack forward"]) / median["plain step"]
    print(f"{what}, oneDNN "
          f"{'on' if runtime.onednn_enabled() else 'off'}; medians of {args.repeats} "
          "alternated rounds, seconds:")
    for name, value in median.items():
        print(f"  {name:<18} {value:8.2f}   (all: {', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"  reversible / plain step:            {ratio:.3f}")
    print(f"  (plain + one stack forward) / plain: {estimate:.3f}   <- plain plus the rebuild")
    with open(args.json, "w") as handle:
        json.dump({"preset": None if args.stack else args.preset,
                   "stack": args.stack and {"kind": args.stack, "rank": args.rank,
                                            "depth": args.depth},
                   "shape": list(x.shape), "seconds": times,
                   "median": median, "ratio": ratio, "plain_plus_one_forward": estimate},
                  handle, indent=2)


if __name__ == "__main__":
    main()
