"""Peak memory and step time of one training step: plain autodiff vs keras.remat vs ReversibleSequence.

The benchmark lives in the package (`keras_hyperbolic.tasks.memory_benchmark`,
also `keras-hyperbolic benchmark memory`); this script runs it with the same options.

Run:  python benchmarks/memory.py                       (2D, depths 4..64; ~10 min on 2 cores)
      python benchmarks/memory.py --workloads 3d --depths 4 16 64
      python benchmarks/memory.py --quick               (tiny, seconds; a smoke test)
"""

import os

# oneDNN on before TensorFlow is imported, unless the user chose (keras_hyperbolic.runtime).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from keras_hyperbolic.tasks import memory_benchmark  # noqa: E402

if __name__ == "__main__":
    memory_benchmark.run_from_arguments(memory_benchmark.argument_parser().parse_args())
