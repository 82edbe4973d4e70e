"""`IRevNet`: the i-RevNet classifier of Jacobsen, Smeulders & Oyallon, bijective or injective."""

import keras
import tensorflow as tf

from keras_hyperbolic import layers as khl
from keras_hyperbolic.layers.channel_zero_padding import ChannelZeroPadding
from keras_hyperbolic.layers.irevnet_block import IRevNetBlock
from keras_hyperbolic.layers.residual import check_normalization
from keras_hyperbolic.models.preset_mixin import PresetMixin
from keras_hyperbolic.models.serving import ClassificationServing
from keras_hyperbolic.reversible import ReversibleSequence
from keras_hyperbolic.validation import (
    check_divisible_input,
    check_optional_positive_int,
    check_positive_int,
    invalid,
)

_POOL = {1: keras.layers.GlobalAveragePooling1D, 2: keras.layers.GlobalAveragePooling2D,
         3: keras.layers.GlobalAveragePooling3D}


def _check_stages(stages):
    if (
        isinstance(stages, (str, bytes))
        or not isinstance(stages, (list, tuple))
        or not stages
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in stages)
    ):
        raise invalid("stages", stages, "a non-empty list of block counts (integers >= 1)")
    return tuple(int(s) for s in stages)


def _check_strides(strides, stages):
    if strides is None:
        return (1,) + (2,) * (len(stages) - 1)
    if (
        not isinstance(strides, (list, tuple))
        or len(strides) != len(stages)
        or any(isinstance(s, bool) or s not in (1, 2) for s in strides)
    ):
        raise invalid("strides", strides, f"one stride (1 or 2) per stage ({len(stages)})")
    return tuple(int(s) for s in strides)


# === Model ===


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class IRevNet(PresetMixin, ClassificationServing, keras.Model):
    """i-RevNet: an invertible (bijective or injective) feature extractor and a linear classifier.

    The input operator `S~` squeezes the input invertibly (space to depth by
    `init_squeeze` along every spatial axis) and, for the injective variant,
    appends zero channels (the thesis's model (a): 48 -> 96 channels). The
    state is split into two halves `[x | x~]` and passes `sum(stages)`
    `IRevNetBlock`s (`x_next = S x~`, `x~_next = S x + F(x~)`, `F` the
    pre-activation bottleneck); the first block of a stage with stride 2
    down-samples each half (thesis eq. 39). Every map up to the final feature
    map is bijective, except the zero padding, which has an exact left
    inverse: `inverse(features(x))` rebuilds `x`, and training stores only the
    final features (one `ReversibleSequence`). The head is batch
    normalisation, ReLU, global average pooling and a dense layer (the
    reference code's head; the thesis: average, ReLU, linear). Exported as a
    classifier (`ClassificationServing`): `images` -> `probabilities`, `labels`.
    Presets: `IRevNet.presets()`, built by `IRevNet.from_preset(name, **overrides)`.

    Args:
        num_classes: number of classes (logits), >= 1.
        input_shape: `(height, width, channels)` of one example (2D), or
            `(length, channels)` / `(d, h, w, channels)`; spatial sizes
            divisible by `init_squeeze * 2**(number of stride-2 stages)`.
        stages: number of blocks per stage (each >= 1), e.g. `(6, 16, 72, 6)`.
        strides: stride (1 or 2) of each stage's first block; `None`
            (default): 1 for the first stage, 2 for the others.
        hidden_channels: bottleneck channels of every block (`None`: a
            quarter of the block's output half, the thesis).
        kernel_size: kernel size of the bottleneck's middle convolution.
        normalization: normalisation inside the bottlenecks ("batch", the
            thesis; "layer", "instance", "none").
        init_squeeze: space-to-depth factor of the input operator, 1, 2 or 4
            (model (b): 2, 3 -> 12 channels; model (a): 4, 3 -> 48).
        injective: append zero channels after the squeeze (left-invertible
            on the image, not bijective).
        stem_channels: channels of the state after the zero padding (even,
            larger than the squeezed channels); `None` with `injective=True`
            doubles them. Only with `injective=True`.
        memory_efficient: train the invertible part by inversion (True) or
            plain autodiff (False).
        **kwargs: base `keras.Model` arguments.

    Input shape:
        `(batch, *input_shape)`.

    Output shape:
        `(batch, num_classes)`: logits.

    Raises:
        ValueError: an invalid argument, an odd state channel count, or an
            `input_shape` whose spatial sizes are not divisible by the total
            down-sampling.

    Example:
    >>> net = IRevNet(num_classes=10, input_shape=(16, 16, 1), stages=(1, 1))
    >>> x = np.random.rand(2, 16, 16, 1).astype("float32")
    >>> np.allclose(net.inverse(net.features(x)), x, atol=1e-5)
    True

    Reference:
        Jacobsen, Smeulders, Oyallon, "i-RevNet: Deep Invertible Networks"
        (ICLR 2018); Jacobsen's thesis, section 6.3.
    """

    def __init__(
        self,
        num_classes,
        input_shape,
        stages=(2, 2, 2),
        strides=None,
        hidden_channels=None,
        kernel_size=3,
        normalization="batch",
        init_squeeze=2,
        injective=False,
        stem_channels=None,
        memory_efficient=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) not in (2, 3, 4):
            raise invalid("input_shape", input_shape, "(*spatial, channels) with 1 to 3 spatial axes")
        self.example_shape = tuple(int(s) for s in input_shape)
        self.rank = len(self.example_shape) - 1
        self.stages = _check_stages(stages)
        self.strides = _check_strides(strides, self.stages)
        self.hidden_channels = check_optional_positive_int(hidden_channels, "hidden_channels")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.normalization = check_normalization(normalization)
        if isinstance(init_squeeze, bool) or init_squeeze not in (1, 2, 4):
            raise invalid("init_squeeze", init_squeeze, "1, 2 or 4")
        self.init_squeeze = int(init_squeeze)
        if not isinstance(injective, bool):
            raise invalid("injective", injective, "True or False")
        self.injective = injective
        if not isinstance(memory_efficient, bool):
            raise invalid("memory_efficient", memory_efficient, "True or False")
        self.memory_efficient = memory_efficient
        squeezes = {1: 0, 2: 1, 4: 2}[self.init_squeeze]
        squeezed = self.example_shape[-1] * 2 ** (self.rank * squeezes)
        if stem_channels is not None and not injective:
            raise invalid("stem_channels", stem_channels, "None unless injective=True")
        if injective:
            stem_channels = 2 * squeezed if stem_channels is None else stem_channels
            stem_channels = check_positive_int(stem_channels, "stem_channels", minimum=squeezed + 1)
        state = stem_channels if injective else squeezed
        if state % 2:
            raise invalid("stem_channels" if injective else "input_shape",
                          stem_channels if injective else input_shape,
                          "an even channel count for the state after the input operator "
                          f"(here {state})")
        self.stem_channels = stem_channels
        downs = squeezes + self.strides.count(2)
        check_divisible_input((None,) + self.example_shape, self.rank, 2**downs, downs,
                              name="input_shape")

        # === Layers ===
        squeeze_layer = getattr(khl, f"PixelShufflePooling{self.rank}D")
        layers = [squeeze_layer(name=f"input_squeeze{i}") for i in range(squeezes)]
        if injective:
            layers.append(ChannelZeroPadding(stem_channels, name="input_padding"))
        for s, (count, stride) in enumerate(zip(self.stages, self.strides)):
            for j in range(count):
                layers.append(IRevNetBlock(
                    rank=self.rank, stride=stride if j == 0 else 1,
                    hidden_channels=self.hidden_channels, kernel_size=self.kernel_size,
                    normalization=self.normalization, name=f"stage{s}_block{j}",
                ))
        self.core = ReversibleSequence(layers, memory_efficient=memory_efficient, name="core")
        # Synchronized: the global batch's statistics under tf.distribute.
        self.head_norm = keras.layers.BatchNormalization(synchronized=True, name="head_norm")
        self.head_pool = _POOL[self.rank](name="head_pool")
        self.classifier = keras.layers.Dense(self.num_classes, name="classifier")
        self.build((None,) + self.example_shape)

    def build(self, input_shape):
        shape = tuple(input_shape)
        if tuple(shape[1:]) != self.example_shape:
            raise ValueError(
                f"Invalid shape for argument `inputs`: expected (batch, *{self.example_shape}) "
                f"(`input_shape`). Received: inputs.shape={shape}"
            )
        if self.built:
            # Built in __init__; building again would try to add state.
            return
        self.core.build(shape)
        features = tuple(self.core.compute_output_shape(shape))
        self.head_norm.build(features)
        self.head_pool.build(features)
        self.classifier.build((features[0], features[-1]))
        self.built = True

    @property
    def feature_shape(self):
        """Shape of one example's final feature map."""
        return tuple(self.core.compute_output_shape((None,) + self.example_shape))[1:]

    def compute_output_shape(self, input_shape):
        return (tuple(input_shape)[0], self.num_classes)

    def features(self, x, training=None):
        """The final feature map (as many values as `x`; twice as many when injective by default)."""
        return self.core(x, training=training)

    def inverse(self, features, training=None):
        """Rebuilds the input from `features(x)` (a left inverse when injective)."""
        return self.core.inverse(tf.convert_to_tensor(features), training=training)

    def call(self, inputs, training=None):
        z = self.core(inputs, training=training)
        z = tf.nn.relu(self.head_norm(z, training=training))
        return self.classifier(self.head_pool(z))

    # === Config ===

    #: Presets fix the classes and the input shape (`from_preset`, `PresetMixin`).
    preset_arguments = ("num_classes", "input_shape")

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, input_shape=list(self.example_shape),
            stages=list(self.stages), strides=list(self.strides),
            hidden_channels=self.hidden_channels, kernel_size=self.kernel_size,
            normalization=self.normalization, init_squeeze=self.init_squeeze,
            injective=self.injective, stem_channels=self.stem_channels,
            memory_efficient=self.memory_efficient,
        )
        return config
