"""Invertible Keras layers: poolings, reversible blocks and invertible convolutions."""

from keras_hyperbolic.layers.invertible import InvertibleLayer, check_invertible  # noqa: F401
from keras_hyperbolic.layers.residual import ResidualFunction  # noqa: F401
from keras_hyperbolic.layers.additive_coupling import AdditiveCoupling  # noqa: F401
from keras_hyperbolic.layers.hyperbolic_block import HyperbolicBlock  # noqa: F401
