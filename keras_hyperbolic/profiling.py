"""Measuring the peak memory and time of a training step, one configuration per process.

The peak comes from TensorFlow's allocator statistics for `CPU:0`
(`tf.config.experimental.get_memory_info`, after `reset_memory_stats`). Where
that is unavailable (TF built without oneDNN, or `TF_ENABLE_ONEDNN_OPTS=0`),
the fallback is the peak resident set size of the process, which includes
roughly 700 MB of TF runtime (DESIGN.md): compare such figures with each other,
never with allocator figures.

Each configuration runs in its own subprocess so that neither allocator caches
nor traced functions of one configuration leak into another.
"""

import json
import resource
import statistics
import subprocess
import sys
import time

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
        result = step_fn()
        # Make sure asynchronous work is finished before the clock stops.
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
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


def run_worker(argv, timeout=1800):
    """Runs `python argv...` in a fresh process and parses the last JSON line it prints."""
    completed = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=timeout
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"worker {' '.join(argv)} failed (exit {completed.returncode}):\n"
            f"{completed.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


def megabytes(num_bytes):
    return num_bytes / 2**20
