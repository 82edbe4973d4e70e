"""Invertible Keras layers: poolings, reversible blocks and invertible convolutions."""

from keras_hyperbolic.layers.invertible import InvertibleLayer, check_invertible  # noqa: F401
