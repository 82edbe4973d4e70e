"""Keras's convolution class for a number of spatial axes (the rank-generic lookup)."""

import keras

from keras_hyperbolic.validation import check_rank

_CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}


def conv_class(rank):
    """`keras.layers.Conv1D`, `Conv2D` or `Conv3D` for `rank` = 1, 2 or 3."""
    return _CONV[check_rank(rank)]
