"""Invertible Keras layers: poolings, reversible blocks, invertible convolutions, networks' own."""

from keras_hyperbolic.layers.invertible import InvertibleLayer, check_invertible  # noqa: F401
from keras_hyperbolic.layers.residual import ResidualFunction  # noqa: F401
from keras_hyperbolic.layers.additive_coupling import AdditiveCoupling  # noqa: F401
from keras_hyperbolic.layers.hyperbolic_block import HyperbolicBlock  # noqa: F401
from keras_hyperbolic.layers.leapfrog_velocity import LeapfrogVelocity  # noqa: F401
from keras_hyperbolic.layers.projection import Projection  # noqa: F401
from keras_hyperbolic.layers.affine_coupling import AffineCoupling  # noqa: F401
from keras_hyperbolic.layers.invertible_conv import (  # noqa: F401
    InvertibleConv1D,
    InvertibleConv2D,
    InvertibleConv3D,
)
from keras_hyperbolic.layers.invertible_1x1_conv import Invertible1x1Conv  # noqa: F401
from keras_hyperbolic.layers.sneaky_relu import SneakyReLU  # noqa: F401
from keras_hyperbolic.layers.elementwise_affine import ElementwiseAffine  # noqa: F401
# The layers of one network each: i-RevNet's, and the flat layout of iUNet's U.
from keras_hyperbolic.layers.irevnet_block import IRevNetBlock  # noqa: F401
from keras_hyperbolic.layers.channel_zero_padding import ChannelZeroPadding  # noqa: F401
from keras_hyperbolic.layers.active_channels import ActiveChannels  # noqa: F401
from keras_hyperbolic.layers.carried_skips import SplitDownsample, UpsampleConcat  # noqa: F401
from keras_hyperbolic.layers.pooling import *  # noqa: F401,F403  (its __all__)
