"""Shared machinery of the invertible pooling layers (rank-generic, both directions).

A pooling layer maps `(batch, *spatial, C)` to `(batch, *spatial / 2, 2**rank * C)`;
its unpooling counterpart is the same operator run the other way: its `call` is
the pooling's inverse (with the unpooling layer's own parameters) and its
`inverse` is the pooling. Subclasses implement `_build_parameters(channels)`,
`_down(x)` and `_up(y)` for `C` = the channel count at the fine resolution.
"""

import tensorflow as tf

from keras_hyperbolic.layers.invertible import InvertibleLayer
from keras_hyperbolic.validation import check_input_shape, check_rank


class BaseInvertiblePooling(InvertibleLayer):
    """Base of the invertible poolings; not public (use the 1D/2D/3D classes)."""

    #: False: `call` halves the resolution; True: `call` doubles it (unpooling).
    upsample = False

    def __init__(self, rank, **kwargs):
        # Orthogonal maps (a permutation, an orthogonal DWT or block transform).
        super().__init__(is_volume_preserving=True, **kwargs)
        self.rank = check_rank(rank)
        self.factor = 2**self.rank
        self.fine_channels = None

    # --- shapes -------------------------------------------------------------
    def _check_fine(self, shape, name):
        """Checks a fine-resolution shape `(B, *spatial, C)`; returns it."""
        shape = check_input_shape(shape, self.rank, name=name, require_static=False)
        if self.fine_channels is not None and shape[-1] != self.fine_channels:
            raise ValueError(
                f"Invalid shape for argument `{name}`: {type(self).__name__} was built "
                f"for {self.fine_channels} channels at the fine resolution. "
                f"Received: {name}.shape={shape}"
            )
        return shape

    def _check_coarse(self, shape, name):
        """Checks a coarse shape `(B, *spatial, s*C)`; returns it."""
        shape = check_input_shape(shape, self.rank, name=name, divisor=1, require_static=False)
        if shape[-1] % self.factor != 0:
            raise ValueError(
                f"Invalid shape for argument `{name}`: the channel count {shape[-1]} is "
                f"not divisible by 2**rank = {self.factor}. Received: {name}.shape={shape}"
            )
        if self.fine_channels is not None and shape[-1] != self.factor * self.fine_channels:
            raise ValueError(
                f"Invalid shape for argument `{name}`: {type(self).__name__} was built "
                f"for {self.factor * self.fine_channels} channels at the coarse "
                f"resolution. Received: {name}.shape={shape}"
            )
        return shape

    def _fine_shape(self, coarse):
        return (coarse[0],) + tuple(None if n is None else 2 * n for n in coarse[1:-1]) + (
            coarse[-1] // self.factor,
        )

    def _coarse_shape(self, fine):
        return (fine[0],) + tuple(None if n is None else n // 2 for n in fine[1:-1]) + (
            fine[-1] * self.factor,
        )

    def _check_input(self, shape, name="inputs"):
        return self._check_coarse(shape, name) if self.upsample else self._check_fine(shape, name)

    def _check_output(self, shape, name="outputs"):
        return self._check_fine(shape, name) if self.upsample else self._check_coarse(shape, name)

    def build(self, input_shape):
        shape = self._check_input(tuple(input_shape))
        channels = shape[-1] // self.factor if self.upsample else shape[-1]
        self._build_parameters(channels)
        self.fine_channels = channels

    def _build_parameters(self, channels):
        pass

    def compute_output_shape(self, input_shape):
        shape = self._check_input(tuple(input_shape), "input_shape")
        return self._fine_shape(shape) if self.upsample else self._coarse_shape(shape)

    def compute_input_shape(self, output_shape):
        shape = self._check_output(tuple(output_shape), "output_shape")
        return self._coarse_shape(shape) if self.upsample else self._fine_shape(shape)

    # --- maps ---------------------------------------------------------------
    def _with_runtime_check(self, x, fine):
        """Unknown spatial sizes are checked when the graph runs (odd sizes would
        otherwise be truncated silently by the strided maps)."""
        if not fine or all(n is not None for n in x.shape[1:-1]):
            return x
        check = tf.debugging.assert_equal(
            tf.math.floormod(tf.shape(x)[1:-1], 2),
            0,
            message=f"{type(self).__name__}: every spatial size of the fine-resolution "
            "tensor must be divisible by 2",
        )
        with tf.control_dependencies([check]):
            return tf.identity(x)

    def _run(self, x, down, name):
        x = tf.convert_to_tensor(x)
        if down:
            self._check_fine(tuple(x.shape), name)
            return self._down(self._with_runtime_check(x, fine=True))
        self._check_coarse(tuple(x.shape), name)
        return self._up(x)

    def call(self, inputs, training=None):
        return self._run(inputs, down=not self.upsample, name="inputs")

    def _inverse(self, outputs, training=None):
        return self._run(outputs, down=self.upsample, name="outputs")

    def get_config(self):
        # `rank` is fixed by the public 1D/2D/3D class, so it is not serialised.
        return super().get_config()
