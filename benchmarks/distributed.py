"""Training throughput of a 2-device MirroredStrategy run relative to one device, same run.

Workload: a HyperbolicSegmenter (memory-efficient engine on) trained with `model.fit` on a
fixed global batch, once on the default (one-device) strategy and once under
`tf.distribute.MirroredStrategy` over two devices, in the same process, alternating runs.
Samples/second are measured on the epochs after a warm-up epoch (tracing excluded); the
median over `--repeats` timed epochs is reported with the ratio two-device / one-device.

Devices: on a machine with GPUs, pass `--devices /gpu:0 /gpu:1`. Without them the CPU is split
into two *logical* devices, which share the same physical cores: the two replicas then compete
for the cores one device already used, so a ratio near (or below) 1 is expected there. The
script says which case it measured.

Run:  python benchmarks/distributed.py                  (CPU, two logical devices, ~1-2 min)
      python benchmarks/distributed.py --quick          (smoke test, seconds)
      python benchmarks/distributed.py --devices /gpu:0 /gpu:1 --size 64 --batch 32
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from keras_hyperbolic import runtime  # noqa: E402  (imports no TensorFlow)

# oneDNN on before TensorFlow is imported, unless the user chose.
runtime.prefer_onednn()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=None,
                        help="devices of the mirrored run (default: two logical CPU devices)")
    parser.add_argument("--size", type=int, default=32, help="image side")
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--steps", type=int, default=8, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per configuration")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch, args.steps, args.repeats = 16, 8, 2, 1

    import tensorflow as tf

    if args.devices is None:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        devices = ["/cpu:0", "/cpu:1"]
        logical_cpu = True
    else:
        devices = args.devices
        logical_cpu = all("cpu" in d.lower() for d in devices)

    import keras
    import numpy as np

    from keras_hyperbolic.models import HyperbolicSegmenter

    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    x = rng.random((n, args.size, args.size, 3)).astype("float32")
    y = (x.mean(axis=-1) > 0.5).astype("int32")

    def build(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = HyperbolicSegmenter(num_classes=2, rank=2, width=8,
                                        units=[(2, "down"), (2, "down"), (2, "up"), (2, "up")])
            model.compile(optimizer=keras.optimizers.SGD(0.01),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=False, verbose=0)  # warm-up
        return model

    strategies = {"one device": tf.distribute.get_strategy(),
                  f"{len(devices)} devices": tf.distribute.MirroredStrategy(devices)}
    models = {name: build(strategy) for name, strategy in strategies.items()}
    times = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():  # alternate, so drifts in load hit both
            start = time.perf_counter()
            model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=False, verbose=0)
            times[name].append(time.perf_counter() - start)
    rates = {name: n / statistics.median(t) for name, t in times.items()}
    one, two = rates.values()
    cores = os.cpu_count()
    print(f"HyperbolicSegmenter {args.size}x{args.size}, global batch {args.batch}, "
          f"{args.steps} steps/epoch, median of {args.repeats} epochs")
    for name, rate in rates.items():
        print(f"  {name:>12}: {rate:8.1f} samples/s")
    print(f"  ratio {list(rates)[1]} / one device: {two / one:.2f}x")
    if logical_cpu:
        print(f"  note: the devices are logical CPU devices sharing the same {cores} physical "
              "cores, so the mirrored run has no extra compute; the ratio measures the "
              "overhead of replication and all-reduce, not a speed-up.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"samples_per_second": rates, "ratio": two / one, "devices": devices,
                       "logical_cpu": logical_cpu, "cpu_count": cores}, f, indent=1)


if __name__ == "__main__":
    main()
