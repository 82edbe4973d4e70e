"""Which tensors are alive at the peak of a training step's gradients: TensorFlow's memory profiler.

Traces one gradients step of `lensink_video` (or a smaller layout) under
`tf.profiler.experimental`, converts the trace with the profiler's own
"memory_profile" tool and prints the allocations alive at the allocator's peak,
largest first, in state-sized units (one float32 tensor of the network's
full-resolution width at the input's spatial size), with the op that made each
one. Buffers are forwarded between element-wise ops, so an allocation carries
the name of the op that first made it, not of the value it holds at the peak.
This is how the reversible floor of issue 14 was found (see docs/benchmarks.md).

Run:  python benchmarks/peak_tensors.py                          (lensink_video, 64 x 64 x 32 x 6)
      python benchmarks/peak_tensors.py --shape 96 96 64 6 --plain
      python benchmarks/peak_tensors.py --shape 96 96 64 6 --double   (38 layers)
"""

import argparse
import json

from keras_hyperbolic import runtime  # imports no TensorFlow

# oneDNN on before TensorFlow is imported, unless the user chose: allocator statistics need it.
runtime.prefer_onednn()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[64, 64, 32, 6])
    parser.add_argument("--plain", action="store_true", help="plain autodiff instead of the engine")
    parser.add_argument("--double", action="store_true", help="twice the layers per unit (38)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)  # the same op order every run
    import keras
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as profiler_plugin

    from keras_hyperbolic.models import HyperbolicSegmenter
    from keras_hyperbolic.profiling import profiler_trace
    from paper_memory import lensink_config  # this script's directory is on sys.path

    config = lensink_config(args.double)
    keras.utils.set_random_seed(0)
    model = HyperbolicSegmenter(num_classes=2, memory_efficient=not args.plain, **config)
    shape = (1, *args.shape)
    model.build(shape)
    variables = model.trainable_variables

    @tf.function
    def gradients_step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)))
        return loss, tape.gradient(loss, variables)

    x = tf.random.stateless_normal(shape, seed=(1, 2))
    gradients_step(x)  # traced and run once before the profiled call
    with profiler_trace(lambda: gradients_step(x)) as path:
        data, _ = profiler_plugin.xspace_to_tools_data([path], "memory_profile", {})
    profile = json.loads(data)
    state = 4 * int(np.prod(args.shape[:-1])) * config["width"]
    for allocator, memory in profile["memoryProfilePerAllocator"].items():
        peak = int(memory["profileSummary"]["peakStats"]["peakBytesInUse"])
        print(f"{allocator}: peak {peak / 2**20:.1f} MB in use = {peak / state:.2f} states "
              f"(one state {state / 2**20:.2f} MB)")
        rows = []
        for active in memory.get("activeAllocations", []):
            index, special = int(active.get("snapshotIndex", -1)), int(active.get("specialIndex", -1))
            event = (memory["memoryProfileSnapshots"][index]["activityMetadata"] if index >= 0
                     else memory["specialAllocations"][special])
            rows.append((int(event.get("allocationBytes", 0)), int(event.get("requestedBytes", 0)),
                         event.get("tfOpName", "?"), event.get("tensorShape", "")))
        rows.sort(reverse=True)
        print(f"  {'states':>7} {'requested':>9}  op  shape")
        for taken, requested, op, tensor_shape in rows[:args.top]:
            print(f"  {taken / state:>7.3f} {requested / state:>9.3f}  {op}  {tensor_shape}")


if __name__ == "__main__":
    main()
