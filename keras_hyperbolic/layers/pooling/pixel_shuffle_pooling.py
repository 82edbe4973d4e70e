"""Pixel shuffle ("squeeze") pooling: the parameter-free invertible down-sampling.

Reference: J.-H. Jacobsen, A. Smeulders, E. Oyallon, "i-RevNet: Deep Invertible
Networks" (the invertible down-sampling of Sec. 3.1 / thesis ch. 6).
"""

import tensorflow as tf

from keras_hyperbolic.layers.pooling.base import BaseInvertiblePooling
from keras_hyperbolic.layers.rank_classes import rank_classes, rank_doc
from keras_hyperbolic.ops.orthogonal import block_kernel
from keras_hyperbolic.ops.pixel_shuffle import squeeze, unsqueeze


class BasePixelShufflePooling(BaseInvertiblePooling):
    """Squeeze of any rank (see `PixelShufflePooling2D`)."""

    def _down(self, x):
        return squeeze(x, self.rank)

    def _up(self, y):
        return unsqueeze(y, self.rank)

    def _constant_kernel(self, channels):
        # The squeeze is the block transform of the identity (a 0/1 kernel):
        # TFLite runs it as a convolution, with no 6- or 8-axis transpose.
        return block_kernel(tf.eye(self.factor, dtype=tf.float64), channels, self.rank)


class BasePixelShuffleUnpooling(BasePixelShufflePooling):
    upsample = True


_POOLING_DOC = """Invertible squeeze (pixel shuffle) down-sampling ({rank}D).

Moves each 2x..x2 block into the channels: output channel `p * C + c` holds
channel `c` at block position `p` (row-major over the spatial axes).{extra}
No parameters; orthogonal (a permutation), so the log-determinant is zero.

Args:
    **kwargs: base layer arguments.

Input shape:
    `(batch, {spatial}, C)`; spatial sizes even.

Output shape:
    `(batch, {half}, {s} * C)`.

Raises:
    ValueError: wrong rank, unknown channel count or odd spatial size.

Example:

>>> y = keras_hyperbolic.layers.PixelShufflePooling{rank}D()(x)

Reference: Jacobsen, Smeulders, Oyallon, "i-RevNet: Deep Invertible Networks".
"""

_UNPOOLING_DOC = """Invertible un-squeeze (depth to space) up-sampling ({rank}D).

`call` is `PixelShufflePooling{rank}D.inverse`; `inverse` is the squeeze.{extra}

Args:
    **kwargs: base layer arguments.

Input shape:
    `(batch, {spatial}, {s} * C)`; channels divisible by {s}.

Output shape:
    `(batch, {double}, C)`.

Raises:
    ValueError: wrong rank, unknown channel count or channels not divisible by {s}.

Example:

>>> x = keras_hyperbolic.layers.PixelShuffleUnpooling{rank}D()(y)

Reference: Jacobsen, Smeulders, Oyallon, "i-RevNet: Deep Invertible Networks".
"""


def _doc(template, extra_2d):
    # In 2D the squeeze is TensorFlow's own op: say so there.
    return lambda rank: rank_doc(template, rank, extra=extra_2d if rank == 2 else "")


PixelShufflePooling1D, PixelShufflePooling2D, PixelShufflePooling3D = rank_classes(
    BasePixelShufflePooling,
    "PixelShufflePooling",
    _doc(_POOLING_DOC, " In 2D this is `tf.nn.space_to_depth(x, 2)`."),
)
PixelShuffleUnpooling1D, PixelShuffleUnpooling2D, PixelShuffleUnpooling3D = rank_classes(
    BasePixelShuffleUnpooling,
    "PixelShuffleUnpooling",
    _doc(_UNPOOLING_DOC, " In 2D this is `tf.nn.depth_to_space(y, 2)`."),
)
