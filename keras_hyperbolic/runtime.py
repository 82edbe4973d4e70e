"""The TensorFlow process settings the package cares about: oneDNN on CPU.

TensorFlow turns its oneDNN CPU path on by default only on CPUs with
AVX-512-class features. On AVX2-only CPUs (many AMD servers and laptops) it is
off: 3D convolutions run on slower kernels (one training step of the main
job's network on its earlier 16 x 64 x 64 x 3 video: 2.29 s off against 0.84 s
on, 2.7x, on a 2-core AMD EPYC with AVX2 and FMA and no AVX-512, measured by
`benchmarks/onednn_speed.py`) and the CPU allocator keeps no memory
statistics. The switch, `TF_ENABLE_ONEDNN_OPTS`, is read once, when TensorFlow
is imported, so:

- where the package owns the process (the `keras-hyperbolic` command's
  `main()`, the examples, the benchmarks) it calls `prefer_onednn()` before
  TensorFlow is imported, which sets `TF_ENABLE_ONEDNN_OPTS=1` unless the user
  set a value of their own;
- where TensorFlow is already imported (a library user's process) it only
  warns, once, when training runs on a CPU with oneDNN off.

This module imports nothing heavy, nor does `import keras_hyperbolic`: a
script may import the package, call `prefer_onednn()`, then TensorFlow.
"""

import os
import sys
import warnings

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
#: One training step of the main job's 3D network (16 x 64 x 64 x 3 video), oneDNN off / on:
#: 2.29 s / 0.84 s on a 2-core AMD EPYC (AVX2 and FMA, no AVX-512), benchmarks/onednn_speed.py.
MEASURED_SPEEDUP = 2.7
MEASURED_ON = "a 2-core AMD EPYC (AVX2, no AVX-512)"

_warned = False


def prefer_onednn():
    """Sets `TF_ENABLE_ONEDNN_OPTS=1` unless the user set it or TensorFlow is already imported.

    Returns True when this call set it.
    """
    if ONEDNN_VARIABLE in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ[ONEDNN_VARIABLE] = "1"
    return True


def configure_command_process():
    """What the command sets before TensorFlow is imported: oneDNN on, TensorFlow's C++ info logs off.

    A user's own values of both variables are kept.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    prefer_onednn()


def onednn_enabled():
    """Whether TensorFlow's oneDNN CPU path is on in this process (None if unknown)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow build without the query
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def warn_if_onednn_off():
    """Warns once per process when TensorFlow runs on CPU with oneDNN off."""
    global _warned
    if _warned:
        return
    _warned = True
    if onednn_enabled() is not False:
        return
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return
    warnings.warn(
        "TensorFlow's oneDNN CPU path is off in this process (its default on CPUs without "
        f"AVX-512): 3D convolutions run about {MEASURED_SPEEDUP:g}x slower (measured on one "
        f"training step of the main job's network, on {MEASURED_ON}) and CPU memory "
        f"statistics are unavailable. Set the environment variable {ONEDNN_VARIABLE}=1 before "
        f"TensorFlow is imported (e.g. `export {ONEDNN_VARIABLE}=1`, or call "
        "keras_hyperbolic.runtime.prefer_onednn() first); the keras-hyperbolic command, the "
        "examples and the benchmarks do this themselves.",
        RuntimeWarning,
        stacklevel=3,
    )
