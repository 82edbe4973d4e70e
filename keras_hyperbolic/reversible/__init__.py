"""The memory-efficient gradient engine: reversible stacks that rebuild activations by inversion.

`ReversibleSequence` runs a stack of `InvertibleLayer`s under one custom
gradient and, going backwards, asks each block for
`backward(y, dy) -> (x, dx, [(variable, gradient), ...])`; `match_gradients`
sums those pairs onto the variables TensorFlow asks about. `record_inputs`
records what stacks receive (for inversion probes) without touching the engine;
`plain_autodiff(model)` runs a model's stacks as plain autodiff for a while
(where memory is no object: small training crops, inference, export).
"""

from keras_hyperbolic.reversible.gradients import match_gradients  # noqa: F401
from keras_hyperbolic.reversible.sequence import (  # noqa: F401
    ReversibleSequence,
    plain_autodiff,
    record_inputs,
    reversible_layers,
)
