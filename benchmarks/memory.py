"""Peak memory and step time of one training step: plain autodiff vs keras.remat vs ReversibleSequence.

The benchmark lives in the package (`keras_hyperbolic.tasks.memory_benchmark`,
also `keras-hyperbolic benchmark memory`); this script runs it with the same options.

Run:  python benchmarks/memory.py                       (2D, depths 4..64; ~10 min on 2 cores)
      python benchmarks/memory.py --workloads 3d --depths 4 16 64
      python benchmarks/memory.py --quick               (tiny, seconds; a smoke test)
"""

from keras_hyperbolic import runtime  # imports no TensorFlow

# oneDNN on before TensorFlow is imported, unless the user chose.
runtime.prefer_onednn()

from keras_hyperbolic.tasks import memory_benchmark  # noqa: E402

if __name__ == "__main__":
    memory_benchmark.run_from_arguments(memory_benchmark.argument_parser().parse_args())
