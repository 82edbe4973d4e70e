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
