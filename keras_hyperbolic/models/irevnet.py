"""`IRevNet`: the i-RevNet classifier of Jacobsen, Smeulders & Oyallon, bijective or injective."""

import keras
import tensorflow as tf

from keras_hyperbolic import layers as khl
from keras_hyperbolic.layers.conv_by_rank import conv_class
from keras_hyperbolic.layers.coupling import check_splittable_shape, split_halves
from keras_hyperbolic.layers.invertible import InvertibleLayer, vjp
from keras_hyperbolic.layers.residual import (
    ScaledInitializer,
    check_normalization,
    make_normalization,
)
from keras_hyperbolic.ops.pixel_shuffle import (
    squeeze,
    squeezed_shape,
    unsqueeze,
    unsqueezed_shape,
)
from keras_hyperbolic.reversible import ReversibleSequence
from keras_hyperbolic.validation import (
    check_divisible_input,
    check_optional_positive_int,
    check_positive_int,
    check_rank,
    invalid,
)

_POOL = {1: keras.layers.GlobalAveragePooling1D, 2: keras.layers.GlobalAveragePooling2D,
         3: keras.layers.GlobalAveragePooling3D}


# === Layers ===


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class IRevNetBlock(InvertibleLayer):
    """One i-RevNet block (thesis eq. 39) on the state `[x | x~]`, rank-generic.

        x_next  = S x~,
        x~_next = S x + F(x~),

    with the exact inverse `x~ = S^-1 x_next`, `x = S^-1 (x~_next - F(x~))`.
    `S` is the identity (`stride=1`) or the invertible down-sampling of each
    half by 2 along every spatial axis (pixel shuffle, `2**rank` times the
    channels): the two halves are squeezed separately, so `x` and `x~` never
    mix. `F` is the thesis's pre-activation bottleneck: three convolutions,
    each preceded by normalisation and ReLU, with kernel sizes 1, `kernel_size`
    and 1, the middle one with a quarter of the output channels:
    `norm-ReLU-conv1x1(C -> O/4)`, `norm-ReLU-conv3x3(O/4 -> O/4, stride)`,
    `norm-ReLU-conv1x1(O/4 -> O)`, `O` the output half's channels. The stride
    of a down-sampling block sits in the 3x3 convolution (a strided 1x1 would
    ignore three quarters of `x~`); the reference PyTorch code uses three 3x3
    convolutions with the stride in the first. The last convolution starts at
    0.1 times its He-normal initialisation, as the package's `ResidualFunction`.

    The Jacobian is a block permutation times a unit-triangular matrix:
    `|det| = 1`, `log_det_jacobian` is zero.

    Args:
        rank: number of spatial axes, 1, 2 or 3.
        stride: 1 (keep the resolution) or 2 (down-sample each half).
        hidden_channels: channels of the bottleneck; `None` (default) uses
            a quarter of the output half's channels (at least 1).
        kernel_size: kernel size of the middle convolution.
        normalization: "batch" (default, the thesis), "layer", "instance" or
            "none" (then the convolutions have biases).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, *spatial, 2C)`: `[x | x~]`.

    Output shape:
        `(batch, *spatial, 2C)` for `stride=1`;
        `(batch, *spatial / 2, 2C * 2**rank)` for `stride=2`.

    Raises:
        ValueError: an invalid argument, an odd channel count or (stride 2) an
            odd spatial size.

    Example:
    >>> block = IRevNetBlock(rank=2, stride=2)
    >>> x = np.random.rand(2, 8, 8, 4).astype("float32")
    >>> block(x).shape
    TensorShape([2, 4, 4, 16])

    Reference: Jacobsen, Smeulders, Oyallon, "i-RevNet: Deep Invertible
    Networks" (ICLR 2018); Jacobsen's thesis, section 6.3, eq. (39).
    """

    def __init__(self, rank, stride=1, hidden_channels=None, kernel_size=3,
                 normalization="batch", **kwargs):
        super().__init__(is_volume_preserving=True, **kwargs)
        self.rank = check_rank(rank)
        if isinstance(stride, bool) or stride not in (1, 2):
            raise invalid("stride", stride, "1 or 2")
        self.stride = int(stride)
        self.hidden_channels = check_optional_positive_int(hidden_channels, "hidden_channels")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.normalization = check_normalization(normalization)

    def build(self, input_shape):
        input_shape = check_splittable_shape(self, input_shape, self.rank)
        if self.stride == 2:
            check_divisible_input(input_shape, self.rank, 2, 1)
        channels = input_shape[-1] // 2
        out = channels * (2**self.rank if self.stride == 2 else 1)
        hidden = self.hidden_channels or max(1, out // 4)
        conv = conv_class(self.rank)
        use_bias = self.normalization == "none"  # otherwise the next norm's beta
        specs = [(hidden, 1, 1, "he_normal"), (hidden, self.kernel_size, self.stride, "he_normal"),
                 (out, 1, 1, ScaledInitializer("he_normal", 0.1))]
        self.norms, self.convs = [], []
        shape = input_shape[:-1] + (channels,)
        for i, (filters, size, stride, init) in enumerate(specs, start=1):
            norm = make_normalization(self.normalization, self.dtype_policy, f"norm{i}")
            layer = conv(filters, size, strides=stride, padding="same", use_bias=use_bias,
                         kernel_initializer=init, dtype=self.dtype_policy, name=f"conv{i}")
            if norm is not None:
                norm.build(shape)
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
            self.norms.append(norm)
            self.convs.append(layer)

    def bottleneck(self, x, training=None):
        """`F(x~)` in the compute dtype, returned in `x`'s dtype."""
        z = x
        for norm, conv in zip(self.norms, self.convs):
            if norm is not None:
                z = norm(z, training=training)
            z = conv(tf.nn.relu(z))
        return tf.cast(z, x.dtype)

    def _down(self, x):
        return squeeze(x, self.rank) if self.stride == 2 else x

    def _up(self, y):
        return unsqueeze(y, self.rank) if self.stride == 2 else y

    def call(self, x, training=None):
        x1, x2 = split_halves(x)
        f_out = self.bottleneck(x2, training=training)
        return tf.concat([self._down(x2), self._down(x1) + f_out], axis=-1)

    def _inverse(self, y, training=None):
        a, b = split_halves(y)
        x2 = self._up(a)
        x1 = self._up(b - self.bottleneck(x2, training=training))
        return tf.concat([x1, x2], axis=-1)

    def _backward(self, y, dy, training=None, dlog_det=None):
        # Fused: the inversion's F(x~) is differentiated, not recomputed.
        # y = (S x2, S x1 + F(x2)): dx1 = S^T db, dx2 = S^T da + F'(x2)^T db (S orthogonal).
        a, b = split_halves(y)
        da, db = split_halves(dy)
        x2 = self._up(a)
        f_out, dx2_from_f, pairs = vjp(
            lambda x2: self.bottleneck(x2, training=training), x2, self.trainable_variables, db
        )
        x1 = tf.stop_gradient(self._up(b - f_out))
        dx = tf.concat([self._up(db), self._up(da) + dx2_from_f], axis=-1)
        x = tf.concat([x1, tf.stop_gradient(x2)], axis=-1)
        return x, dx, pairs

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        return shape if self.stride == 1 else squeezed_shape(shape, self.rank)

    def compute_input_shape(self, output_shape):
        shape = tuple(output_shape)
        return shape if self.stride == 1 else unsqueezed_shape(shape, self.rank)

    def get_config(self):
        config = super().get_config()
        config.update(rank=self.rank, stride=self.stride, hidden_channels=self.hidden_channels,
                      kernel_size=self.kernel_size, normalization=self.normalization)
        return config


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class ChannelZeroPadding(InvertibleLayer):
    """Puts zero channels in front: the injective part of i-RevNet's input operator.

    `call` maps `(batch, *spatial, C)` to `(batch, *spatial, channels)`: the
    first `channels - C` channels are zero, the input follows. `inverse` drops
    them. `inverse` is a left inverse (`inverse(call(x)) == x` exactly) and on
    the image of `call` (inputs whose leading channels are zero) the two maps
    are inverse to each other; off the image `inverse` is a projection. The
    map is not square, so it has no log-determinant.

    Why in front: when the padding is half the state, the zeros form the half
    `x` that the next block only adds to (`x~_next = x + F(x~)`), so no
    bottleneck ever evaluates on exact zeros. A normalisation of an all-zero
    channel turns the rounding noise of a rebuilt (inverted) state into
    non-zero activations, which the memory-efficient training would then
    differentiate.

    Args:
        channels: channel count of the output, larger than the input's.
        **kwargs: base `Layer` arguments.

    Input shape:
        `(batch, *spatial, C)`, `C < channels`.

    Output shape:
        `(batch, *spatial, channels)`.

    Reference: Jacobsen's thesis, section 6.3.2, model (a) ("48 to 96 by
    simply adding 0").
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_positive_int(channels, "channels")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if input_shape[-1] is None or input_shape[-1] >= self.channels:
            raise ValueError(
                f"Invalid shape for argument `inputs` of ChannelZeroPadding: expected fewer "
                f"than `channels`={self.channels} known channels. "
                f"Received: inputs.shape={input_shape}"
            )
        self.input_channels = int(input_shape[-1])

    def call(self, x, training=None):
        pad = [[0, 0]] * (len(x.shape) - 1) + [[self.channels - self.input_channels, 0]]
        return tf.pad(x, pad)

    def build_for_inverse(self, output_shape):
        if not self.built:
            raise ValueError("ChannelZeroPadding must be built (called) before `inverse`: "
                             "the output does not say how many channels were padded.")

    def _inverse(self, y, training=None):
        return y[..., self.channels - self.input_channels:]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.channels,)

    def compute_input_shape(self, output_shape):
        return tuple(output_shape)[:-1] + (self.input_channels,)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config


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
class IRevNet(keras.Model):
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
    reference code's head; the thesis: average, ReLU, linear).

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

    @classmethod
    def from_preset(cls, name, num_classes=None, input_shape=None, **overrides):
        """An `IRevNet` from a preset of `keras_hyperbolic.models.presets` (e.g. "irevnet_b")."""
        from keras_hyperbolic.models.presets import get_preset

        preset = get_preset(name)
        if preset["model"] != cls.__name__:
            raise ValueError(
                f"Invalid value for argument `name`: preset {name!r} builds a "
                f"{preset['model']}, not an IRevNet. Received: name={name!r}"
            )
        config = dict(preset["config"])
        config.update(overrides)
        config["num_classes"] = num_classes if num_classes is not None else preset["num_classes"]
        config["input_shape"] = tuple(input_shape or preset["input_shape"])
        return cls(**config)

    # === Serving ===

    serving_family = "classification"

    def serving_endpoints(self, input_shape=None, dynamic_spatial=True, batch_size=None):
        """The signatures of the classifier (see `keras_hyperbolic.models.serving`).

        `serving_default`: `images` `(batch, *input_shape)` -> `probabilities`
        `(batch, num_classes)` (softmax) and `labels` `(batch,)` int64. The
        image shape is the model's (`dynamic_spatial` is ignored).

        Args:
            input_shape: overrides the image input's shape (batch axis included).
            dynamic_spatial: ignored (the input shape is fixed).
            batch_size: a fixed batch size (TFLite); `None` leaves it free.
        """
        from keras_hyperbolic.models import serving

        return serving.classification_endpoints(self, input_shape, False, batch_size)
