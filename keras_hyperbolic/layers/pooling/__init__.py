"""Invertible pooling and unpooling layers (wavelet, orthogonal, pixel shuffle, pairs).

`__all__` is what `keras_hyperbolic.layers` re-exports.
"""

from keras_hyperbolic.layers.pooling.base import (  # noqa: F401
    BaseInvertiblePooling,
    constant_kernels,
)
from keras_hyperbolic.layers.pooling.orthogonal_pooling import (
    OrthogonalPooling1D,
    OrthogonalPooling2D,
    OrthogonalPooling3D,
    OrthogonalUnpooling1D,
    OrthogonalUnpooling2D,
    OrthogonalUnpooling3D,
)
from keras_hyperbolic.layers.pooling.pair_pooling import PairPooling
from keras_hyperbolic.layers.pooling.pixel_shuffle_pooling import (
    PixelShufflePooling1D,
    PixelShufflePooling2D,
    PixelShufflePooling3D,
    PixelShuffleUnpooling1D,
    PixelShuffleUnpooling2D,
    PixelShuffleUnpooling3D,
)
from keras_hyperbolic.layers.pooling.wavelet_pooling import (
    WaveletPooling1D,
    WaveletPooling2D,
    WaveletPooling3D,
    WaveletUnpooling1D,
    WaveletUnpooling2D,
    WaveletUnpooling3D,
)

__all__ = [
    "OrthogonalPooling1D",
    "OrthogonalPooling2D",
    "OrthogonalPooling3D",
    "OrthogonalUnpooling1D",
    "OrthogonalUnpooling2D",
    "OrthogonalUnpooling3D",
    "PairPooling",
    "PixelShufflePooling1D",
    "PixelShufflePooling2D",
    "PixelShufflePooling3D",
    "PixelShuffleUnpooling1D",
    "PixelShuffleUnpooling2D",
    "PixelShuffleUnpooling3D",
    "WaveletPooling1D",
    "WaveletPooling2D",
    "WaveletPooling3D",
    "WaveletUnpooling1D",
    "WaveletUnpooling2D",
    "WaveletUnpooling3D",
]
