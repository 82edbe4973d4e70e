"""Memory-efficient reversible and invertible convolutional networks for Keras 3 on TensorFlow.

Sub-packages, in the order data flows through them:
`ops` (stateless maths) -> `layers` (invertible Keras layers) -> `reversible`
(the memory-efficient gradient engine) -> `models` -> `export`.

`import keras_hyperbolic` imports neither TensorFlow nor Keras: each
sub-package is imported when first used (`keras_hyperbolic.layers`, or
`from keras_hyperbolic import layers`), so the command answers `--help` and
bad input at once and a program can still set TensorFlow's environment
(`keras_hyperbolic.runtime.prefer_onednn()`) after importing the package.

A `.keras` file that holds the package's layers or models loads once their
classes are registered with Keras, which importing `keras_hyperbolic.models`
does; `keras_hyperbolic.load_model(path)` does both in one call.
"""

import importlib

__version__ = "0.1.0"

#: The sub-packages and modules served on first attribute access (PEP 562).
SUBMODULES = (
    "bijectors", "callbacks", "data", "distribute", "export", "layers", "models", "ops",
    "optimizers", "profiling", "reversible", "runtime", "tasks", "training", "validation",
)

# The modules whose import registers every serialisable class of the package with Keras.
_REGISTERING = ("layers", "reversible", "optimizers", "callbacks", "models")


def load_model(filepath, **kwargs):
    """`keras.saving.load_model(filepath, **kwargs)` with the package's classes registered.

    Imports the modules that register the package's layers, engine, optimizer,
    callbacks and models with Keras (importing `keras_hyperbolic.models` alone
    registers the same), then loads `filepath` (a `.keras` file) with Keras's
    own loader; `kwargs` (`compile`, `safe_mode`, `custom_objects`) are its.
    """
    import keras

    for name in _REGISTERING:
        importlib.import_module(f"{__name__}.{name}")
    return keras.saving.load_model(filepath, **kwargs)


def __getattr__(name):
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # also binds it on the package
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(SUBMODULES))
