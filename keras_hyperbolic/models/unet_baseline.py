"""`BaselineUNet`: a plain (non-invertible) Keras U-Net, the baseline of the examples and benchmarks."""

import keras

from keras_hyperbolic.layers.conv_by_rank import conv_class
from keras_hyperbolic.models.serving import SegmentationServing
from keras_hyperbolic.validation import (
    check_activation,
    check_choice,
    check_divisible_input,
    check_positive_int,
    check_rank,
)

NORMALIZATIONS = ("group", "instance", "batch")


def _normalization(kind, channels):
    if kind == "batch":
        # Synchronized: the global batch's statistics under tf.distribute.
        return keras.layers.BatchNormalization(synchronized=True)
    if kind == "instance":
        return keras.layers.GroupNormalization(groups=channels)
    # Up to 8 groups of at least 2 channels each (Wu & He's default is 32 groups
    # of wider layers; the baselines here have 2-160 channels).
    divisors = [g for g in (8, 4, 2) if channels % g == 0 and channels // g >= 2]
    return keras.layers.GroupNormalization(groups=divisors[0] if divisors else 1)


_POOL = {1: keras.layers.MaxPooling1D, 2: keras.layers.MaxPooling2D, 3: keras.layers.MaxPooling3D}
_UP = {1: keras.layers.UpSampling1D, 2: keras.layers.UpSampling2D, 3: keras.layers.UpSampling3D}


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class BaselineUNet(SegmentationServing, keras.Model):
    """A plain U-Net (Ronneberger et al.), 1D/2D/3D, trained with ordinary autodiff.

    Each level has `convs_per_level` blocks of convolution -> normalisation
    -> activation; max pooling goes down, up-sampling followed
    by a convolution goes up, and the skip connection is a channel
    concatenation. Channels double at every level. A 1x1 convolution maps to
    class logits. It stores every activation for backprop: the baseline
    against which the reversible networks' memory is compared.

    Args:
        num_classes: output channels (logits), >= 1.
        rank: number of spatial axes, 1, 2 or 3.
        filters: channels at the finest level.
        levels: number of pooling steps (the U-Net has `levels + 1` resolutions).
        convs_per_level: convolution blocks per level and side.
        kernel_size: kernel size of the convolutions.
        activation: activation after each normalisation.
        normalization: `"group"` (default), `"instance"` or `"batch"`. Group and
            instance norm use each sample's own statistics, so they behave the
            same at batch size 1 and at inference; batch norm at batch size 1
            (the video tasks) trains on one sample's statistics and predicts with
            moving averages, which handicaps the baseline.
        **kwargs: base `keras.Model` arguments.

    Input shape:
        `(batch, *spatial, channels)`, spatial sizes divisible by `2**levels`.

    Output shape:
        `(batch, *spatial, num_classes)`.

    Raises:
        ValueError: `num_classes < 1`, invalid sizes, or (at build time) a
            spatial size not divisible by `2**levels`.

    Example:
    >>> unet = BaselineUNet(num_classes=2, rank=2, filters=8, levels=2)
    >>> unet(np.zeros((1, 16, 16, 3), "float32")).shape
    TensorShape([1, 16, 16, 2])

    Reference:
        Ronneberger, Fischer, Brox, "U-Net" (2015); Cicek et al., "3D U-Net" (2016).
    """

    def __init__(
        self,
        num_classes,
        rank=3,
        filters=8,
        levels=2,
        convs_per_level=2,
        kernel_size=3,
        activation="relu",
        normalization="group",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.rank = check_rank(rank)
        self.filters = check_positive_int(filters, "filters")
        self.levels = check_positive_int(levels, "levels", minimum=0)
        self.convs_per_level = check_positive_int(convs_per_level, "convs_per_level")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        check_activation(activation)
        self.activation = activation
        self.normalization = check_choice(normalization, NORMALIZATIONS, "normalization")

        # === Layers ===
        def conv_block(channels, name):
            return keras.Sequential(
                [
                    conv_class(self.rank)(channels, self.kernel_size, padding="same", use_bias=False),
                    _normalization(self.normalization, channels),
                    keras.layers.Activation(activation),
                ],
                name=name,
            )

        self.down_blocks = [
            [conv_block(self.filters * 2**level, f"down{level}_{i}")
             for i in range(self.convs_per_level)]
            for level in range(self.levels + 1)
        ]
        self.pools = [_POOL[self.rank](2, name=f"pool{level}") for level in range(self.levels)]
        self.ups = [
            keras.Sequential(
                [_UP[self.rank](2), conv_class(self.rank)(self.filters * 2**level, self.kernel_size,
                                                   padding="same")],
                name=f"up{level}",
            )
            for level in range(self.levels)
        ]
        self.up_blocks = [
            [conv_block(self.filters * 2**level, f"up{level}_{i}")
             for i in range(self.convs_per_level)]
            for level in range(self.levels)
        ]
        self.concat = keras.layers.Concatenate(axis=-1)
        self.head = conv_class(self.rank)(self.num_classes, 1, name="logits")

    @property
    def input_multiple(self):
        """Every spatial size must be a multiple of this."""
        return 2**self.levels

    def build(self, input_shape):
        check_divisible_input(input_shape, self.rank, self.input_multiple, self.levels)
        # Build every sub-layer with the shapes that flow through the network.
        self.call(keras.KerasTensor(tuple(input_shape)))
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.num_classes,)

    def call(self, inputs, training=None):
        x = inputs
        skips = []
        for level in range(self.levels + 1):
            for block in self.down_blocks[level]:
                x = block(x, training=training)
            if level < self.levels:
                skips.append(x)
                x = self.pools[level](x)
        for level in reversed(range(self.levels)):
            x = self.ups[level](x)
            x = self.concat([skips[level], x])
            for block in self.up_blocks[level]:
                x = block(x, training=training)
        return self.head(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "rank": self.rank,
                "filters": self.filters,
                "levels": self.levels,
                "convs_per_level": self.convs_per_level,
                "kernel_size": self.kernel_size,
                "activation": self.activation,
                "normalization": self.normalization,
            }
        )
        return config
