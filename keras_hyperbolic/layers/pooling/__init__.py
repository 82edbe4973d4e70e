"""Invertible pooling and unpooling layers (wavelet, orthogonal, pixel shuffle, pairs)."""

from keras_hyperbolic.layers.pooling.base import (  # noqa: F401
    BaseInvertiblePooling,
    constant_kernels,
)
from keras_hyperbolic.layers.pooling.orthogonal_pooling import (  # noqa: F401
    OrthogonalPooling1D,
    OrthogonalPooling2D,
    OrthogonalPooling3D,
    OrthogonalUnpooling1D,
    OrthogonalUnpooling2D,
    OrthogonalUnpooling3D,
)
from keras_hyperbolic.layers.pooling.pair_pooling import PairPooling  # noqa: F401
from keras_hyperbolic.layers.pooling.pixel_shuffle_pooling import (  # noqa: F401
    PixelShufflePooling1D,
    PixelShufflePooling2D,
    PixelShufflePooling3D,
    PixelShuffleUnpooling1D,
    PixelShuffleUnpooling2D,
    PixelShuffleUnpooling3D,
)
from keras_hyperbolic.layers.pooling.wavelet_pooling import (  # noqa: F401
    WaveletPooling1D,
    WaveletPooling2D,
    WaveletPooling3D,
    WaveletUnpooling1D,
    WaveletUnpooling2D,
    WaveletUnpooling3D,
)
