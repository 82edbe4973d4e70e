"""Measuring the peak memory and time of a training step, one configuration per process.

The peak comes from TensorFlow's allocator statistics for `CPU:0`
(`tf.config.experimental.get_memory_info`, after `reset_memory_stats`). Where
that is unavailable (TF built without oneDNN, or `TF_ENABLE_ONEDNN_OPTS=0`),
the fallback is the peak resident set size of the process, which includes
roughly 700 MB of TF runtime (docs/design.md, "TensorFlow and Keras facts"): compare them with each other,
never with allocator figures.

`live_tensor_peak` is the fragmentation-free counterpart: the peak of the
bytes the step's tensors hold, summed from the sizes the ops requested in
TensorFlow's profiler trace.

Each configuration runs in its own subprocess so that neither allocator caches
nor traced functions of one configuration leak into another.
"""

import contextlib
import glob
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf


def _allocator_peak(device="CPU:0"):
    try:
        return tf.config.experimental.get_memory_info(device)["peak"]
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None


def measure_step(step_fn, repeats=3, warmup=1, device="CPU:0"):
    """Runs `step_fn()` and returns its peak memory and median time.

    Returns a dict with `peak_bytes`, `peak_source` ("allocator" or "rss"),
    `step_seconds` (median of `repeats` calls after `warmup` calls) and
    `step_seconds_all`.
    """
    for _ in range(warmup):
        step_fn()
    try:
        tf.config.experimental.reset_memory_stats(device)
    except (ValueError, RuntimeError, tf.errors.OpError):
        pass
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _finish(step_fn())  # asynchronous work finished before the clock stops
        times.append(time.perf_counter() - start)
    peak = _allocator_peak(device)
    source = "allocator"
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        source = "rss"
    return {
        "peak_bytes": int(peak),
        "peak_source": source,
        "step_seconds": statistics.median(times),
        "step_seconds_all": times,
    }


def _finish(result):
    """Waits for `result`'s tensors, so that asynchronous work is inside what is measured."""
    return tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)


@contextlib.contextmanager
def profiler_trace(step_fn):
    """Runs `step_fn()` under TensorFlow's profiler; yields the trace's `.xplane.pb` path.

    The file lives in a temporary directory for the duration of the `with`.
    """
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            _finish(step_fn())
        finally:
            tf.profiler.experimental.stop()
        yield glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]


def live_tensor_peak(step_fn):
    """The peak of the bytes held by the tensors `step_fn()` makes, from the profiler's trace.

    Sums the sizes the ops requested over the call's allocations and frees in
    trace order. Unlike the allocator's peak it does not count rounding and
    chunks handed out larger than asked for (fragmentation, which depends on
    the process's allocation history), nor tensors alive before the call
    (weights). Run it once the step is traced, in a process with inter-op
    parallelism 1 so the order repeats. The oneDNN allocator serves requests
    below 256 KB without tracing them; they are not counted (a tiny step's
    peak is 0).
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with profiler_trace(step_fn) as path, open(path, "rb") as handle:
        space.ParseFromString(handle.read())
    changes = []  # (time in ps, +/- requested bytes)
    for plane in space.planes:
        sign = {key: {"MemoryAllocation": 1, "MemoryDeallocation": -1}.get(meta.name)
                for key, meta in plane.event_metadata.items()}
        requested = {key for key, meta in plane.stat_metadata.items() if meta.name == "requested_bytes"}
        for line in plane.lines:
            for event in line.events:
                if sign.get(event.metadata_id):
                    size = sum(s.int64_value or s.uint64_value for s in event.stats
                               if s.metadata_id in requested)
                    changes.append((line.timestamp_ns * 1000 + event.offset_ps,
                                    sign[event.metadata_id] * size))
    if not changes and _allocator_peak() is None:
        raise RuntimeError("the profiler traced no allocations (with oneDNN off TensorFlow's CPU "
                           "allocator records none): run with TF_ENABLE_ONEDNN_OPTS=1")
    live = peak = 0
    for _, change in sorted(changes, key=lambda c: c[0]):
        live += change
        peak = max(peak, live)
    return peak


def run_worker(argv, timeout=1800, env=None):
    """Runs `python argv...` in a fresh process and parses the last JSON line it prints.

    The worker gets this process's environment (or `env`), with oneDNN on unless
    that environment says otherwise (`keras_hyperbolic.runtime`).
    """
    env = dict(os.environ if env is None else env)
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    completed = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=timeout, env=env
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"worker {' '.join(argv)} failed (exit {completed.returncode}):\n"
            f"{completed.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


def megabytes(num_bytes):
    """`num_bytes` in MiB (2**20 bytes), the unit of every printed memory figure."""
    return num_bytes / 2**20


# === A training step's memory, measured ===


def allocator_available(device="CPU:0"):
    """Whether TensorFlow's allocator keeps statistics for `device` in this process."""
    try:
        tf.config.experimental.reset_memory_stats(device)
        tf.config.experimental.get_memory_info(device)
        return True
    except (ValueError, RuntimeError, tf.errors.OpError):
        return False


def _step_memory_here(model, inputs, targets, sample_weight):
    model.train_on_batch(inputs, targets, sample_weight=sample_weight)  # traced, optimizer built
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    model.train_on_batch(inputs, targets, sample_weight=sample_weight)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    return {"peak_mb": megabytes(peak), "step_extra_mb": megabytes(peak - before)}


def training_step_memory(model, inputs, targets, sample_weight=None):
    """Peak memory of one `train_on_batch` of a compiled model, always as numbers.

    Measured with TensorFlow's allocator statistics for CPU:0. Where this
    process has none (oneDNN off, TensorFlow's default on CPUs without
    AVX-512), the model (saved as `.keras` with its compile config), the batch
    and the optimizer's class and config go to a fresh process with oneDNN on,
    which measures the same step there. One warm-up step runs first (tracing,
    optimizer slots); the model passed in is not trained by the fallback.

    Returns:
        `{"peak_mb", "step_extra_mb", "source"}`: the step's allocator peak,
        that peak minus the bytes in use before the step (weights, optimizer
        state), and "allocator" or "allocator (subprocess with oneDNN on)".
    """
    if allocator_available():
        return {**_step_memory_here(model, inputs, targets, sample_weight), "source": "allocator"}
    import os
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="keras_hyperbolic_memory_") as scratch:
        model_path = os.path.join(scratch, "model.keras")
        model.save(model_path)
        arrays = {"inputs": np.asarray(inputs), "targets": np.asarray(targets)}
        if sample_weight is not None:
            arrays["sample_weight"] = np.asarray(sample_weight)
        np.savez(os.path.join(scratch, "batch.npz"), **arrays)
        result = run_worker(["-m", "keras_hyperbolic.profiling", "step-memory", scratch],
                            env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"})
    return {**result, "source": "allocator (subprocess with oneDNN on)"}


def _step_memory_worker(scratch):
    import os

    import keras
    import numpy as np

    import keras_hyperbolic.models  # noqa: F401  (registers the models for loading)

    model = keras.saving.load_model(os.path.join(scratch, "model.keras"))
    batch = np.load(os.path.join(scratch, "batch.npz"))
    result = _step_memory_here(model, batch["inputs"], batch["targets"],
                               batch["sample_weight"] if "sample_weight" in batch else None)
    print(json.dumps(result))


# === A training step's memory, estimated ===


def memory_estimate(model, input_shape, batch_size=1):
    """Bytes of weights and of the activations a training step keeps (float32 estimates).

    A copy of the model (from its config) is built for the requested input, so
    every reversible stack's input shape is the one that input gives. `stream`:
    the tensors passed between the blocks of the reversible stacks, which plain
    autodiff stores (a lower bound: each block also stores its internals),
    against what the memory-efficient engine keeps (the stacks' outputs and the
    largest block's input and output while it is rebuilt).

    Args:
        model: a keras_hyperbolic model (or any model whose config rebuilds it).
        input_shape: the input shape without the batch axis.
        batch_size: the batch size of the step.

    Returns:
        A dict: `parameters`, `weights_bytes`, `adam_training_state_bytes`,
        `input_bytes`, `stream_bytes_plain_autodiff`, `stream_bytes_memory_efficient`.
    """
    import numpy as np

    from keras_hyperbolic.callbacks import reversible_stacks

    shape = (batch_size,) + tuple(int(s) for s in input_shape)
    copy = type(model).from_config(model.get_config())
    copy.build(shape)
    parameters = int(copy.count_params())
    plain = efficient = 0
    for stack in reversible_stacks(copy):  # outermost: nested stacks are part of their parent
        stream = (batch_size,) + tuple(stack.built_input_shape[1:])
        sizes = [int(np.prod(stream))]
        for block in stack.blocks:
            stream = tuple(block.compute_output_shape(stream))
            sizes.append(int(np.prod(stream)))
        plain += 4 * sum(sizes)
        efficient += 4 * (sizes[-1] + 2 * max(sizes))
    return {
        "parameters": parameters,
        "weights_bytes": 4 * parameters,
        "adam_training_state_bytes": 4 * 3 * parameters,
        "input_bytes": 4 * int(np.prod(shape)),
        "stream_bytes_plain_autodiff": plain,
        "stream_bytes_memory_efficient": efficient,
    }


#: Graph ops whose outputs take no memory of their own (views, constants, variable reads).
_VIEW_OPS = frozenset({
    "Const", "Placeholder", "ReadVariableOp", "Shape", "ShapeN", "Reshape", "Identity",
    "StopGradient", "Squeeze", "ExpandDims", "NoOp", "VarHandleOp", "Size", "Rank",
})


def _op_bytes(op):
    total = 0
    for output in op.outputs:
        if not output.dtype.is_floating or not output.shape.is_fully_defined():
            continue
        total += output.dtype.size * int(np.prod(output.shape.as_list()))
    return total


def training_step_estimate(model, input_shape, batch_size=1, plain=False):
    """Estimated peak bytes of one training step (Adam) of `model` on an input of `input_shape`.

    No step is run. A copy of the model (from its config) is traced for the
    requested input, forward and backward, with every reversible stack on
    plain autodiff; the forward tensors that the backward pass reads are what
    plain autodiff keeps. For a stack that trains memory-efficiently, its
    blocks' share is replaced by what the engine keeps (`memory_estimate`'s
    stream) plus the largest block's share (one block is rebuilt at a time),
    or, where larger, what the layers after the stacks keep (a closing head):
    their backward pass frees it before the stacks rebuild any block.
    The activations count twice (their gradients flow back at the same
    sizes); added are the weights with their gradients and Adam's two
    moments, the input, integer targets and float sample weights, and twice
    the largest tensor. A plan, not a measurement: check it with
    `training_step_memory`. Measured peaks at 64 x 64 x 60-172 frames
    (benchmarks/segment_memory.py, 1024 MB) were 0.52x the estimate for the
    reversible `video_cpu` segmenter, 0.42x for it on plain autodiff and 1.09x
    for `BaselineUNet` (its concatenations and group norms keep more than counted).

    Args:
        model: a Keras model whose config rebuilds it (the package's models).
        input_shape: the input shape without the batch axis.
        batch_size: the batch size of the step.
        plain: estimate the step with every stack on plain autodiff
            (`reversible.plain_autodiff`), as if none were memory-efficient.

    Returns:
        A dict of byte counts: `total_bytes`, `state_bytes` (weights, gradients,
        Adam), `data_bytes`, `activation_bytes` (kept for backprop, counted
        once), `transient_bytes`.
    """
    from keras_hyperbolic.reversible import reversible_layers

    shape = (batch_size,) + tuple(int(s) for s in input_shape)
    copy = type(model).from_config(model.get_config())
    copy.build(shape)
    stacks = [layer for layer in reversible_layers(copy) if layer is not copy]
    efficient = [] if plain else [stack.name for stack in stacks if stack.memory_efficient]
    for stack in stacks:  # trace plain autodiff everywhere (read at call time)
        stack.memory_efficient = False

    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(copy(x, training=True))
        return tape.gradient(loss, copy.trainable_variables)

    graph = tf.function(step).get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    operations = graph.get_operations()  # in creation order: the forward pass, then the backward
    first = next(i for i, op in enumerate(operations) if op.name.startswith("gradient_tape/"))
    needed = {t.name for op in operations[first:] for t in op.inputs}
    largest = 0
    outside = []  # (op index, bytes) kept for backprop outside every efficient stack
    last_inside = -1  # index of the last op inside an efficient stack
    blocks = {}  # (stack, block) -> what plain autodiff keeps of one block of an efficient stack
    for index, op in enumerate(operations[:first]):
        if op.type in _VIEW_OPS:
            continue
        size = _op_bytes(op)
        largest = max(largest, size)
        if not any(t.name in needed for t in op.outputs):
            continue
        parts = op.name.split("/")
        inside = next((i for i, part in enumerate(parts[:-1]) for name in efficient
                       if part == name or re.fullmatch(re.escape(name) + r"_\d+", part)), None)
        if inside is None:
            outside.append((index, size))
        else:
            last_inside = index
            key = (parts[inside], parts[inside + 1] if inside + 2 < len(parts) else "")
            blocks[key] = blocks.get(key, 0) + size
    kept = sum(size for index, size in outside if index < last_inside)
    # What the layers after the last efficient stack keep (a closing head) is freed by their
    # backward pass before any stack rebuilds a block: it and one block do not add up.
    after = sum(size for index, size in outside if index > last_inside)
    if efficient:
        for stack in stacks:
            stack.memory_efficient = stack.name in efficient
        kept += memory_estimate(copy, input_shape, batch_size)["stream_bytes_memory_efficient"]
        kept += max(after, max(blocks.values(), default=0))
    else:
        kept += after  # nothing is rebuilt: everything is held together
    parameters = int(copy.count_params())
    voxels = int(np.prod(shape[:-1]))
    data = 4 * int(np.prod(shape)) + 8 * voxels + 4 * voxels
    state = 4 * 4 * parameters
    transient = 2 * largest
    return {
        "total_bytes": int(state + data + 2 * kept + transient),
        "state_bytes": int(state),
        "data_bytes": int(data),
        "activation_bytes": int(kept),
        "transient_bytes": int(transient),
    }

if __name__ == "__main__":
    if sys.argv[1:2] == ["step-memory"]:
        _step_memory_worker(sys.argv[2])
