"""The flat layout of an invertible U: skips carried down as passive channels (iUNet eqs. 8, 9).

`SplitDownsample` splits off a skip portion and down-samples the rest;
the skip is carried down losslessly by a parameter-free pixel shuffle behind
the active channels. `UpsampleConcat` up-samples the active channels and
unshuffles the carried skip beside them: the inverse layout. So a whole U is
one flat stack of invertible layers (`keras_hyperbolic.models.InvertibleUNet`).
"""

import keras
import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.ops.pixel_shuffle import (
    squeeze,
    squeezed_shape,
    unsqueeze,
    unsqueezed_shape,
)


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class SplitDownsample(InvertibleLayer):
    """iUNet eq. (8), one step down: split `[y~ | c]`, `D(y~)` goes on, `c` is carried.

    Input `[y (C) | passive (P)]` at level i; output at level i+1:
    `[D(y~) | shuffle(c) | shuffle(passive)]` with `y~` the first `keep`
    channels of `y`. The shuffle is a parameter-free reordering.
    """

    def __init__(self, rank, channels, keep, down, **kwargs):
        if isinstance(down, dict):
            down = keras.saving.deserialize_keras_object(down)
        # The shuffle of the carried channels is a permutation: `down` decides.
        super().__init__(
            is_constant_jacobian=down.is_constant_jacobian,
            is_volume_preserving=down.is_volume_preserving,
            **kwargs,
        )
        self.rank, self.channels, self.keep, self.down = int(rank), int(channels), int(keep), down

    def build(self, input_shape):
        shape = tuple(input_shape)
        if not self.down.built:
            self.down.build(shape[:-1] + (self.keep,))

    def compute_output_shape(self, input_shape):
        return squeezed_shape(input_shape, self.rank)

    def compute_input_shape(self, output_shape):
        return unsqueezed_shape(output_shape, self.rank)

    def call(self, x, training=None):
        kept, rest = x[..., : self.keep], x[..., self.keep :]
        return tf.concat([self.down(kept), squeeze(rest, self.rank)], axis=-1)

    def _inverse(self, y, training=None):
        width = self.keep * 2**self.rank
        kept = self.down.inverse(y[..., :width])
        return tf.concat([kept, unsqueeze(y[..., width:], self.rank)], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(rank=self.rank, channels=self.channels, keep=self.keep,
                      down=keras.saving.serialize_keras_object(self.down))
        return config


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class UpsampleConcat(InvertibleLayer):
    """iUNet eq. (9), one step up: `concat(U(y), c)` with the carried skip `c` unshuffled.

    Input `[y (A) | shuffle(c) (S) | rest]` at level i+1; output at level i:
    `[U(y) | c | unshuffle(rest)]`. The inverse of `SplitDownsample`'s layout.
    """

    def __init__(self, rank, active, skip, up, **kwargs):
        if isinstance(up, dict):
            up = keras.saving.deserialize_keras_object(up)
        # The unshuffle of the carried channels is a permutation: `up` decides.
        super().__init__(
            is_constant_jacobian=up.is_constant_jacobian,
            is_volume_preserving=up.is_volume_preserving,
            **kwargs,
        )
        self.rank, self.active, self.skip, self.up = int(rank), int(active), int(skip), up

    def build(self, input_shape):
        shape = tuple(input_shape)
        if not self.up.built:
            self.up.build(shape[:-1] + (self.active,))

    def compute_output_shape(self, input_shape):
        return unsqueezed_shape(input_shape, self.rank)

    def compute_input_shape(self, output_shape):
        return squeezed_shape(output_shape, self.rank)

    def call(self, x, training=None):
        y = x[..., : self.active]
        rest = x[..., self.active :]
        return tf.concat([self.up(y), unsqueeze(rest, self.rank)], axis=-1)

    def _inverse(self, y, training=None):
        width = self.active // 2**self.rank
        a = self.up.inverse(y[..., :width])
        return tf.concat([a, squeeze(y[..., width:], self.rank)], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(rank=self.rank, active=self.active, skip=self.skip,
                      up=keras.saving.serialize_keras_object(self.up))
        return config
