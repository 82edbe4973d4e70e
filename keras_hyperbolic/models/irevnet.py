"""`IRevNet`: the bijective i-RevNet classifier of Jacobsen, Smeulders & Oyallon."""

import keras
import tensorflow as tf

from keras_hyperbolic import layers as khl
from keras_hyperbolic.reversible import ReversibleSequence
from keras_hyperbolic.validation import check_divisible_input, check_positive_int, invalid


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class IRevNet(keras.Model):
    """Bijective i-RevNet: an invertible feature extractor and a linear classifier.

    The input is first squeezed invertibly (space to depth, `2**rank` times the
    channels at half the resolution); then come `len(stages)` stages of
    additive coupling blocks (`y1 = x1 + F(x2)`, `y2 = x2 + G(y1)`), separated by
    invertible down-sampling (another squeeze). Every map up to the final
    feature map is bijective, so `inverse(features(x))` rebuilds `x` exactly
    and training stores only the final features (one `ReversibleSequence`).
    The classifier head is batch normalisation, ReLU, global average pooling
    and a dense layer, as in the thesis.

    Args:
        num_classes: number of classes (logits), >= 1.
        input_shape: `(height, width, channels)` of one example (2D) or
            `(d, h, w, c)` (3D); spatial sizes divisible by `2**len(stages)`
            and the squeezed channel count `channels * 2**rank` even.
        stages: number of coupling blocks per stage, e.g. `(2, 2, 2)`.
        hidden_channels: hidden channels of the couplings' residual
            functions per stage (`None`: half the stage's channels).
        kernel_size: kernel size inside the couplings.
        normalization: normalisation inside the couplings.
        memory_efficient: train the invertible part by inversion (True) or
            plain autodiff (False).
        **kwargs: base `keras.Model` arguments.

    Input shape:
        `(batch, *input_shape)`.

    Output shape:
        `(batch, num_classes)`: logits.

    Raises:
        ValueError: `num_classes < 1`, empty or invalid `stages`, or an
            `input_shape` whose spatial sizes are not divisible by
            `2**len(stages)`.

    Example:
    >>> net = IRevNet(num_classes=10, input_shape=(16, 16, 1), stages=(1, 1))
    >>> x = np.random.rand(2, 16, 16, 1).astype("float32")
    >>> np.allclose(net.inverse(net.features(x)), x, atol=1e-5)
    True

    Reference:
        Jacobsen, Smeulders, Oyallon, "i-RevNet: Deep Invertible Networks"
        (ICLR 2018); Jacobsen's thesis, chapter 6.
    """

    def __init__(
        self,
        num_classes,
        input_shape,
        stages=(2, 2, 2),
        hidden_channels=None,
        kernel_size=3,
        normalization="batch",
        memory_efficient=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) not in (2, 3, 4):
            raise invalid("input_shape", input_shape, "(*spatial, channels) with 1 to 3 spatial axes")
        self.example_shape = tuple(int(s) for s in input_shape)
        self.rank = len(self.example_shape) - 1
        if (
            isinstance(stages, (str, bytes))
            or not isinstance(stages, (list, tuple))
            or not stages
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in stages)
        ):
            raise invalid("stages", stages, "a non-empty list of block counts (integers >= 0)")
        self.stages = tuple(int(s) for s in stages)
        self.hidden_channels = (
            None if hidden_channels is None
            else check_positive_int(hidden_channels, "hidden_channels")
        )
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.normalization = normalization
        if not isinstance(memory_efficient, bool):
            raise invalid("memory_efficient", memory_efficient, "True or False")
        self.memory_efficient = memory_efficient
        downs = len(self.stages)
        check_divisible_input((None,) + self.example_shape, self.rank, 2**downs, downs,
                              name="input_shape")

        # === Layers ===
        squeeze = getattr(khl, f"PixelShufflePooling{self.rank}D")
        blocks = [squeeze(name="input_squeeze")]
        for s, count in enumerate(self.stages):
            if s > 0:
                blocks.append(squeeze(name=f"stage{s}_down"))
            for j in range(count):
                blocks.append(khl.AdditiveCoupling(
                    rank=self.rank, hidden_channels=self.hidden_channels,
                    kernel_size=self.kernel_size, normalization=normalization,
                    name=f"stage{s}_block{j}",
                ))
        self.core = ReversibleSequence(blocks, memory_efficient=memory_efficient, name="core")
        # Synchronized: the global batch's statistics under tf.distribute.
        self.head_norm = keras.layers.BatchNormalization(synchronized=True, name="head_norm")
        self.head_pool = (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
                          keras.layers.GlobalAveragePooling3D)[self.rank - 1](name="head_pool")
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
        """Shape of one example's final (bijective) feature map."""
        return tuple(self.core.compute_output_shape((None,) + self.example_shape))[1:]

    def compute_output_shape(self, input_shape):
        return (tuple(input_shape)[0], self.num_classes)

    def features(self, x, training=None):
        """The final bijective feature map (same number of values as `x`)."""
        return self.core(x, training=training)

    def inverse(self, features, training=None):
        """Rebuilds the input from `features(x)`."""
        return self.core.inverse(tf.convert_to_tensor(features), training=training)

    def call(self, inputs, training=None):
        z = self.core(inputs, training=training)
        z = tf.nn.relu(self.head_norm(z, training=training))
        return self.classifier(self.head_pool(z))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, input_shape=list(self.example_shape),
            stages=list(self.stages), hidden_channels=self.hidden_channels,
            kernel_size=self.kernel_size, normalization=self.normalization,
            memory_efficient=self.memory_efficient,
        )
        return config

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
