"""`InvertibleUNet`: the fully invertible U-Net (iUNet) of Etmann, Ke & Schönlieb.

The U shape (skip connections across resolutions) is laid out as ONE flat
stack of invertible layers, so the whole invertible part is a single
`ReversibleSequence` and its training memory does not grow with depth:
the skip portion `c_i` split off at level `i` is carried down losslessly by a
parameter-free pixel shuffle as passive channels behind the active ones, and
unshuffled when the up path concatenates it again. Coupling blocks act on the
active channels only, so the maps computed are exactly iUNet's eqs. (8)/(9).
"""

import keras
import tensorflow as tf

from keras_hyperbolic import layers as khl
from keras_hyperbolic.layers.active_channels import ActiveChannels
from keras_hyperbolic.layers.carried_skips import SplitDownsample, UpsampleConcat
from keras_hyperbolic.layers.conv_by_rank import conv_class
from keras_hyperbolic.models.hyperbolic_segmenter import check_model_inputs
from keras_hyperbolic.models.serving import SegmentationServing
from keras_hyperbolic.reversible import ReversibleSequence
from keras_hyperbolic.validation import (
    check_choice,
    check_divisible_input,
    check_positive_int,
    check_rank,
    invalid,
)

DEFAULT_SPLIT = {1: 0.5, 2: 0.5, 3: 0.25}  # iUNet Remark 7: channels double per level


def level_channels(channels, levels, rank, split_fraction):
    """Channels at each level and the kept (down-going) portion; raises when they don't divide."""
    result = []
    c = channels
    for level in range(levels):
        if c < 2 or c % 2:
            raise invalid("channels", channels, f"a channel count that stays even at every level "
                          f"(level {level} would have {c} channels)")
        if level == levels - 1:
            result.append((c, None))
            break
        keep = c * split_fraction
        if keep != int(keep) or not 1 <= keep < c:
            raise invalid("channels", channels, f"a channel count whose split fraction "
                          f"{split_fraction} leaves whole, non-empty portions at every level "
                          f"(level {level}: {c} channels)")
        result.append((c, int(keep)))
        c = int(keep) * 2**rank
    return result


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class InvertibleUNet(SegmentationServing, keras.Model):
    """Fully invertible U-Net (iUNet), 1D/2D/3D, trained by inversion.

    Left side per level `i` (eq. 8): `blocks_per_level` additive coupling
    blocks, then a channel split: the first `split_fraction * C` channels are
    down-sampled by learnable orthogonal pooling (`2**rank` times the
    channels), the rest are kept for the skip. Right side (eq. 9): coupling
    blocks, learnable orthogonal up-sampling, concatenation with the skip.
    Each coupling's residual function ends in a zero-initialised convolution
    after layer normalisation, and the orthogonal poolings start as the Haar
    transform and its inverse, so the network starts as the identity.

    The invertible part is one `ReversibleSequence` (`self.core`); optional
    linear convolutions map the input to `channels` (`project_input=True`)
    and the output to `output_channels` (e.g. class logits). Linear maps at
    the ends store no extra activations for their gradients.

    Args:
        rank: number of spatial axes, 1, 2 or 3.
        channels: channels of the invertible part at full resolution.
        levels: number of resolutions (>= 1).
        blocks_per_level: coupling blocks per level and side (the "depth").
        split_fraction: fraction of channels down-sampled at each split;
            default 1/2 (1D, 2D) or 1/4 (3D), so channels double per level.
        hidden_channels: hidden channels of each coupling's residual
            function; `None` uses half the block's channels.
        kernel_size: kernel size inside the couplings.
        normalization: normalisation inside the couplings ("layer" by default).
        parametrization: "expm" or "cayley" (orthogonal pooling).
        project_input: add a linear convolution from the input's channels to `channels`.
        output_channels: if set, a linear 1x1 convolution to this many outputs.
        memory_efficient: train the invertible part by inversion (True) or
            plain autodiff (False).
        **kwargs: base `keras.Model` arguments.

    Input shape:
        `(batch, *spatial, C_in)`; `C_in == channels` unless `project_input`;
        spatial sizes divisible by `2**(levels - 1)`.

    Output shape:
        `(batch, *spatial, output_channels or channels)`.

    Raises:
        ValueError: invalid sizes, channels that do not split evenly at every
            level, or (at build or call time) a spatial size not divisible by
            `2**(levels - 1)`, a wrong rank or channel count.
        TypeError: (at call time) non-floating inputs (e.g. int32): they are
            not converted.

    Example:
    >>> net = InvertibleUNet(rank=2, channels=8, levels=3)
    >>> x = np.random.rand(1, 16, 16, 8).astype("float32")
    >>> np.allclose(net(x), x, atol=1e-5)   # the identity at initialisation
    True

    Reference:
        Etmann, Ke, Schönlieb, "iUNets: Fully invertible U-Nets with Learnable
        Up- and Downsampling" (2020), eqs. (8), (9), section 3.1.
    """

    def __init__(
        self,
        rank,
        channels,
        levels,
        blocks_per_level=2,
        split_fraction=None,
        hidden_channels=None,
        kernel_size=3,
        normalization="layer",
        parametrization="expm",
        project_input=False,
        output_channels=None,
        memory_efficient=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rank = check_rank(rank)
        self.channels = check_positive_int(channels, "channels")
        self.levels = check_positive_int(levels, "levels")
        self.blocks_per_level = check_positive_int(blocks_per_level, "blocks_per_level", 0)
        if split_fraction is None:
            split_fraction = DEFAULT_SPLIT[self.rank]
        if not isinstance(split_fraction, (int, float)) or not 0 < split_fraction < 1:
            raise invalid("split_fraction", split_fraction, "a number in (0, 1)")
        self.split_fraction = float(split_fraction)
        self.hidden_channels = (
            None if hidden_channels is None
            else check_positive_int(hidden_channels, "hidden_channels")
        )
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.normalization = normalization
        self.parametrization = check_choice(parametrization, ("expm", "cayley"), "parametrization")
        if not isinstance(project_input, bool):
            raise invalid("project_input", project_input, "True or False")
        self.project_input = project_input
        self.output_channels = (
            None if output_channels is None
            else check_positive_int(output_channels, "output_channels")
        )
        if not isinstance(memory_efficient, bool):
            raise invalid("memory_efficient", memory_efficient, "True or False")
        self.memory_efficient = memory_efficient
        self.layout = level_channels(self.channels, self.levels, self.rank, self.split_fraction)

        # === Layers ===
        conv = conv_class(self.rank)
        stack = self._flat_u()
        if not stack:
            raise invalid("blocks_per_level", blocks_per_level,
                          ">= 1 when levels == 1 (the network would be empty)")
        self.core = ReversibleSequence(stack, memory_efficient=memory_efficient, name="core")
        self.input_projection = (
            conv(self.channels, self.kernel_size, padding="same", name="input_projection")
            if project_input else None
        )
        self.output_projection = (
            conv(self.output_channels, 1, name="output_projection")
            if self.output_channels else None
        )

    def _couplings(self, channels, side, level):
        """The coupling blocks of one level and side, on the `channels` active channels."""
        return [
            ActiveChannels(
                khl.AdditiveCoupling(
                    rank=self.rank, hidden_channels=self.hidden_channels,
                    kernel_size=self.kernel_size, normalization=self.normalization,
                    zero_init=True, name=f"{side}{level}_coupling{j}",
                ),
                active=channels, name=f"{side}{level}_block{j}",
            )
            for j in range(self.blocks_per_level)
        ]

    def _flat_u(self):
        """The invertible layers of the U in order: left side down, right side up (eqs. 8, 9)."""
        pool = getattr(khl, f"OrthogonalPooling{self.rank}D")
        unpool = getattr(khl, f"OrthogonalUnpooling{self.rank}D")
        stack = []
        for level, (c, keep) in enumerate(self.layout):
            stack += self._couplings(c, "left", level)
            if keep is not None:
                stack.append(SplitDownsample(
                    self.rank, c, keep,
                    pool(parametrization=self.parametrization, init="haar", name=f"down{level}"),
                    name=f"split_down{level}"))
        for level in reversed(range(self.levels)):
            c, keep = self.layout[level]
            if keep is not None:
                stack.append(UpsampleConcat(
                    self.rank, keep * 2**self.rank, c - keep,
                    unpool(parametrization=self.parametrization, init="haar", name=f"up{level}"),
                    name=f"up_concat{level}"))
            stack += self._couplings(c, "right", level)
        return stack

    @property
    def input_multiple(self):
        return 2 ** (self.levels - 1)

    def build(self, input_shape):
        shape = check_divisible_input(input_shape, self.rank, self.input_multiple, self.levels - 1)
        if self.input_projection is not None:
            self.input_projection.build(shape)
            shape = shape[:-1] + (self.channels,)
        elif shape[-1] != self.channels:
            raise ValueError(
                f"Invalid shape for argument `inputs`: expected {self.channels} channels "
                f"(`channels`), or use project_input=True. Received: inputs.shape={tuple(input_shape)}"
            )
        self.core.build(shape)
        if self.output_projection is not None:
            self.output_projection.build(shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.output_channels or self.channels,)

    def compute_output_spec(self, inputs, training=None):
        self._check_inputs(inputs)  # symbolic calls skip `call`
        return super().compute_output_spec(inputs, training=training)

    def _check_inputs(self, inputs, name="inputs", projected=True):
        channels = self.channels
        if projected and self.input_projection is not None:
            projection = self.input_projection
            channels = projection.kernel.shape[-2] if projection.built else None
        check_model_inputs(inputs, self.rank, self.input_multiple, self.levels - 1, channels, name)

    def call(self, inputs, training=None):
        self._check_inputs(inputs)
        x = self.input_projection(inputs) if self.input_projection is not None else inputs
        y = self.core(x, training=training)
        return self.output_projection(y) if self.output_projection is not None else y

    def forward_invertible(self, x, training=None):
        """The invertible part alone: `channels` channels in, `channels` out."""
        x = tf.convert_to_tensor(x)
        self._check_inputs(x, name="x", projected=False)
        return self.core(x, training=training)

    def inverse(self, y, training=None):
        """Inverse of the invertible part (`forward_invertible`)."""
        y = tf.convert_to_tensor(y)
        self._check_inputs(y, name="y", projected=False)
        return self.core.inverse(y, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            rank=self.rank, channels=self.channels, levels=self.levels,
            blocks_per_level=self.blocks_per_level, split_fraction=self.split_fraction,
            hidden_channels=self.hidden_channels, kernel_size=self.kernel_size,
            normalization=self.normalization, parametrization=self.parametrization,
            project_input=self.project_input, output_channels=self.output_channels,
            memory_efficient=self.memory_efficient,
        )
        return config
