"""The memory-efficient gradient engine: reversible stacks that rebuild activations by inversion.

`ReversibleSequence` runs a stack of `InvertibleLayer`s under one custom
gradient and, going backwards, asks each block for
`backward(y, dy) -> (x, dx, [(variable, gradient), ...])`; `match_gradients`
sums those pairs onto the variables TensorFlow asks about. `record_inputs`
records what stacks receive (for inversion probes) without touching the engine.
"""

from keras_hyperbolic.reversible.gradients import match_gradients  # noqa: F401
from keras_hyperbolic.reversible.sequence import (  # noqa: F401
    ReversibleSequence,
    record_inputs,
    reversible_layers,
)
