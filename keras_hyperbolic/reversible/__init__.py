"""The memory-efficient gradient engine: reversible stacks that rebuild activations by inversion."""

from keras_hyperbolic.reversible.sequence import ReversibleSequence, reversible_layers  # noqa: F401
