"""`profiling.live_tensor_peak`: the peak of the step's own tensors, against sizes known by construction."""

import json
import os
import subprocess
import sys
import textwrap

# Runs in a subprocess with oneDNN on: only then does TensorFlow's CPU allocator
# record allocations (and keep statistics), whatever this test process uses.
_SCRIPT = textwrap.dedent("""
    import json
    import tensorflow as tf
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from keras_hyperbolic.profiling import live_tensor_peak

    x = tf.random.normal([1024, 1024])  # 4 MiB, alive before the call: not counted

    @tf.function
    def step(x):
        # Two 4 MiB products and their 8 MiB concatenation are alive together.
        return tf.concat([x * 2.0, x * 3.0], axis=0)

    step(x)
    print(json.dumps([live_tensor_peak(lambda: step(x)) for _ in range(2)]))
""")


def test_live_tensor_peak_counts_the_requested_sizes_of_the_calls_tensors():
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"}
    run = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    peaks = json.loads(run.stdout.strip().splitlines()[-1])
    assert peaks == [16 * 2**20, 16 * 2**20], peaks


def test_estimate_counts_a_closing_head_as_freed_before_the_stack_rebuilds_blocks():
    from keras_hyperbolic.models import HyperbolicSegmenter
    from keras_hyperbolic.profiling import training_step_estimate

    config = dict(num_classes=2, rank=2, width=4, units=[(1, "down"), (1, "up"), (1, None)],
                  h=0.5, hidden_channels=4)
    linear, head = HyperbolicSegmenter(**config), HyperbolicSegmenter(**config, head_channels=6)

    def kept(model, plain=False):
        return training_step_estimate(model, (16, 16, 3), plain=plain)["activation_bytes"]

    # On plain autodiff the head's activation is held with the stack's until the backward pass;
    # by inversion the head's backward frees it before the stack rebuilds any block, so it adds
    # less (here nothing: one rebuilt block holds more).
    added_plain = kept(head, plain=True) - kept(linear, plain=True)
    assert added_plain > 0
    assert kept(head) - kept(linear) < added_plain
