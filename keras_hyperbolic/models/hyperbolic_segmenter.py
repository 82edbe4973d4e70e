"""`HyperbolicSegmenter`: the fully hyperbolic (leapfrog) encoder-decoder of Lensink et al."""

import keras
import tensorflow as tf

from keras_hyperbolic import layers as khl
from keras_hyperbolic.layers.conv_by_rank import conv_class
from keras_hyperbolic.models.preset_mixin import PresetMixin
from keras_hyperbolic.models.serving import SegmentationServing
from keras_hyperbolic.reversible import ReversibleSequence
from keras_hyperbolic.validation import (
    check_choice,
    check_divisible_input,
    check_positive_float,
    check_positive_int,
    check_rank,
    invalid,
)

POOLINGS = ("haar", "db2", "learnable", "orthogonal")
DIRECTIONS = ("down", "up", None)


def make_pooling(pooling, rank, up, name=None):
    """The invertible (un)pooling layer of kind `pooling` for one half of the pair."""
    if pooling == "orthogonal":
        cls = getattr(khl, f"Orthogonal{'Unpooling' if up else 'Pooling'}{rank}D")
        return cls(name=name)
    cls = getattr(khl, f"Wavelet{'Unpooling' if up else 'Pooling'}{rank}D")
    return cls(wavelet=pooling, name=name)


def check_hidden_channels(hidden_channels, num_units):
    """None, a positive int, or a list of one (positive int or None) per unit; lists as lists."""
    if isinstance(hidden_channels, (list, tuple)):
        if len(hidden_channels) != num_units or not all(
            h is None or (isinstance(h, int) and not isinstance(h, bool) and h > 0)
            for h in hidden_channels
        ):
            raise invalid("hidden_channels", hidden_channels,
                          f"None, a positive integer, or a list of {num_units} entries (one per "
                          "unit), each a positive integer or None")
        return list(hidden_channels)
    if hidden_channels is None:
        return None
    return check_positive_int(hidden_channels, "hidden_channels")


def check_units(units, input_pooling_levels=0, name="units"):
    """Normalises `units` to a list of `(layers, direction)` and checks that they balance.

    Returns `(units, deepest_level)`, where `deepest_level` counts the pooling
    steps (those applied up front included) at the coarsest point of the
    network: spatial sizes must be divisible by `2**deepest_level`.
    """
    if isinstance(units, (str, bytes)) or not isinstance(units, (list, tuple)) or not units:
        raise invalid(name, units, "a non-empty list of (layers, direction) pairs, "
                      "direction one of 'down', 'up', None")
    normalised = []
    for unit in units:
        if (
            not isinstance(unit, (list, tuple))
            or len(unit) != 2
            or isinstance(unit[0], bool)
            or not isinstance(unit[0], int)
            or unit[0] < 0
            or unit[1] not in DIRECTIONS
        ):
            raise invalid(name, units, "a non-empty list of (layers, direction) pairs with "
                          "layers an integer >= 0 and direction one of 'down', 'up', None; "
                          f"got the unit {unit!r}")
        normalised.append((int(unit[0]), unit[1]))
    level = deepest = input_pooling_levels
    for _, direction in normalised:
        level += {"down": 1, "up": -1, None: 0}[direction]
        if level < 0:
            raise invalid(name, units, "units that never go up more often than they went "
                          f"down (with input_pooling_levels={input_pooling_levels})")
        deepest = max(deepest, level)
    if level != 0:
        downs = sum(d == "down" for _, d in normalised) + input_pooling_levels
        ups = sum(d == "up" for _, d in normalised)
        raise invalid(name, units, f"as many 'up' steps as 'down' steps (including "
                      f"input_pooling_levels={input_pooling_levels}) so the output returns to "
                      f"the input's resolution; got {downs} down and {ups} up")
    if sum(layers for layers, _ in normalised) == 0:
        raise invalid(name, units, "at least one hyperbolic layer in total")
    return normalised, deepest


def check_model_inputs(inputs, rank, multiple, steps, channels=None, name="inputs"):
    """Checks a model's input tensor before any work: a floating dtype, rank, divisibility, channels.

    `inputs` is anything with `.shape` and `.dtype` (tensor, KerasTensor, array).
    `channels=None` skips the channel check (not known before build). Integer
    or boolean inputs are rejected, not converted: casting them is the caller's choice.
    """
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    if not (dtype.startswith("float") or dtype == "bfloat16"):
        raise TypeError(
            f"Invalid dtype for argument `{name}`: expected a floating-point tensor "
            f"(cast it first, e.g. tf.cast({name}, 'float32')). Received: {name}.dtype={dtype}"
        )
    shape = check_divisible_input(tuple(inputs.shape), rank, multiple, steps, name=name)
    if channels is not None and shape[-1] != channels:
        raise ValueError(
            f"Invalid shape for argument `{name}`: expected {channels} channels (the channel "
            f"count the model was built with). Received: {name}.shape={shape}"
        )
    return shape


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class HyperbolicSegmenter(PresetMixin, SegmentationServing, keras.Model):
    """Fully hyperbolic encoder-decoder for dense prediction (segmentation), 1D/2D/3D.

    The network of Lensink, Peters & Haber: an opening convolution maps the
    input to `width` channels; the hyperbolic pair state starts as
    `Y_0 = Y_1 =` the opened input (`[Y | Y]`, `2 * width` channels); units of
    `HyperbolicBlock`s (leapfrog steps `Y_next = 2 Y_cur - Y_prev + h**2 f(Y_cur)`)
    are separated by invertible pair pooling (paper eqs. 3.6 and 3.7: the same
    wavelet or orthogonal transform `W` applied to both halves of the pair,
    down by 2 along every spatial axis with `2**rank` times the channels, or
    back up); a closing convolution maps the final pair state to class logits.

    The whole hyperbolic part is one `ReversibleSequence`: with
    `memory_efficient=True` (default) training stores only its output and
    rebuilds every state by inversion, so memory does not grow with the number
    of layers or coarsening levels. The opening convolution is linear and
    stores nothing beyond the model input; the closing one stores nothing
    beyond the stack output, or, with `head_channels`, one hidden activation
    at full resolution, freed before the stack's backward pass, where the
    step's peak lies (on the main job's video the step's peak grew 0.3 MB).

    Args:
        num_classes: number of output channels (class logits), >= 1.
        rank: number of spatial axes, 1, 2 or 3.
        width: channels of one state at full resolution (after the opening
            convolution).
        units: list of `(layers, direction)`: `layers` hyperbolic blocks, then
            pooling `"down"`, `"up"` or nothing (`None`). Downs (with
            `input_pooling_levels`) and ups must balance.
        h: leapfrog step size of every block.
        pooling: "haar", "db2", "learnable" (wavelet pooling, the paper's
            section 3.3) or "orthogonal" (iUNet's learnable orthogonal pooling).
        kernel_size: kernel size of the blocks and of the opening convolution.
        hidden_channels: channels of each block's `K`: an integer for every
            block, or a list with one entry per unit (an integer or `None`);
            `None` uses the state's channels at that level.
        normalization: normalisation inside each block: "instance" (the
            segmenter's default: it trained best and across the widest range
            of learning rates, docs/guides/networks.md), "layer", "weight"
            (`HyperbolicBlock`'s default, which keeps `f'` symmetric negative
            semi-definite), "batch" or "none".
        activation: activation inside each block.
        input_pooling_levels: fixed Haar transforms applied to the opened input
            before the hyperbolic part (the paper applies two 3D Haar steps to
            the data up front); they count as down steps.
        head_channels: `None` (the paper's closing: one linear 1x1 convolution
            from the pair state to the logits) or the channels of a nonlinear
            closing head: a 1x1 convolution to `head_channels`, `activation`,
            a 1x1 convolution to the logits. The `video_cpu` preset uses 32
            (the recipe table, docs/guides/networks.md).
        memory_efficient: train the hyperbolic part by inversion (True) or by
            plain autodiff (False, the reference).
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, *spatial, channels)`, `rank` spatial axes, each divisible by
        `2**(deepest pooling level)`.

    Output shape:
        `(batch, *spatial, num_classes)`: logits.

    Raises:
        ValueError: `num_classes < 1`, unknown `pooling`, `units` that do not
            balance, or (at build or call time) a spatial size not divisible by
            the multiple the poolings need, or (at call time) inputs of another
            rank or channel count than the model was built with.
        TypeError: (at call time) non-floating inputs (e.g. int32): they are
            not converted.

    Example:
    >>> model = HyperbolicSegmenter(num_classes=2, rank=2, width=4,
    ...                             units=[(2, "down"), (2, "up"), (1, None)])
    >>> model(np.zeros((1, 16, 16, 3), "float32")).shape
    TensorShape([1, 16, 16, 2])

    Reference:
        Lensink, Peters, Haber, "Fully Hyperbolic Convolutional Neural
        Networks" (2022), sections 3 and 5, Table 2.
    """

    def __init__(
        self,
        num_classes,
        rank=3,
        width=8,
        units=((2, "down"), (2, "up"), (2, None)),
        h=0.1,
        pooling="haar",
        kernel_size=3,
        hidden_channels=None,
        normalization="instance",
        activation="relu",
        input_pooling_levels=0,
        head_channels=None,
        memory_efficient=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.rank = check_rank(rank)
        self.width = check_positive_int(width, "width")
        self.h = check_positive_float(h, "h")
        self.pooling = check_choice(pooling, POOLINGS, "pooling")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.normalization = normalization
        self.activation = activation
        self.input_pooling_levels = check_positive_int(
            input_pooling_levels, "input_pooling_levels", minimum=0
        )
        if not isinstance(memory_efficient, bool):
            raise invalid("memory_efficient", memory_efficient, "True or False")
        self.memory_efficient = memory_efficient
        self.head_channels = (None if head_channels is None
                              else check_positive_int(head_channels, "head_channels"))
        self.units, self.deepest_level = check_units(units, self.input_pooling_levels)
        self.hidden_channels = check_hidden_channels(hidden_channels, len(self.units))
        hidden_of_unit = (self.hidden_channels if isinstance(self.hidden_channels, list)
                          else [self.hidden_channels] * len(self.units))

        # === Layers ===
        conv = conv_class(self.rank)
        self.opening = conv(self.width, self.kernel_size, padding="same", name="opening")
        self.input_pooling = [
            make_pooling("haar", self.rank, up=False, name=f"input_haar_{i}")
            for i in range(self.input_pooling_levels)
        ]
        blocks = []
        for u, (count, direction) in enumerate(self.units):
            for j in range(count):
                blocks.append(
                    khl.HyperbolicBlock(
                        rank=self.rank,
                        kernel_size=self.kernel_size,
                        h=self.h,
                        hidden_channels=hidden_of_unit[u],
                        normalization=normalization,
                        activation=activation,
                        name=f"unit{u}_block{j}",
                    )
                )
            if direction is not None:
                inner = make_pooling(self.pooling, self.rank, up=direction == "up",
                                     name=f"unit{u}_{direction}_inner")
                blocks.append(khl.PairPooling(inner, name=f"unit{u}_{direction}"))
        self.hyperbolic = ReversibleSequence(
            blocks, memory_efficient=memory_efficient, name="hyperbolic"
        )
        if self.head_channels is None:
            self.closing = conv(self.num_classes, 1, name="closing")
        else:
            self.closing = keras.Sequential(
                [conv(self.head_channels, 1, activation=activation, name="closing_hidden"),
                 conv(self.num_classes, 1, name="closing_logits")],
                name="closing",
            )

    # === Building ===

    @property
    def input_multiple(self):
        """Every spatial size must be a multiple of this."""
        return 2**self.deepest_level

    def build(self, input_shape):
        shape = check_divisible_input(
            input_shape, self.rank, self.input_multiple, self.deepest_level
        )
        self.opening.build(shape)
        shape = tuple(self.opening.compute_output_shape(shape))
        for layer in self.input_pooling:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        pair_shape = shape[:-1] + (2 * shape[-1],)
        self.hyperbolic.build(pair_shape)
        out_shape = tuple(self.hyperbolic.compute_output_shape(pair_shape))
        self.closing.build(out_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.num_classes,)

    def compute_output_spec(self, inputs, training=None):
        self._check_inputs(inputs)  # symbolic calls skip `call`
        return super().compute_output_spec(inputs, training=training)

    def _check_inputs(self, inputs):
        channels = self.opening.kernel.shape[-2] if self.opening.built else None
        check_model_inputs(inputs, self.rank, self.input_multiple, self.deepest_level, channels)

    # === Maps ===

    def opened_pair(self, inputs):
        """The initial pair state `[Y_0 | Y_1]` with `Y_0 = Y_1 =` the opened input."""
        y = self.opening(inputs)
        for layer in self.input_pooling:
            y = layer(y)
        return tf.concat([y, y], axis=-1)

    def call(self, inputs, training=None):
        self._check_inputs(inputs)
        pair = self.opened_pair(inputs)
        pair = self.hyperbolic(pair, training=training)
        return self.closing(pair)

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "rank": self.rank,
                "width": self.width,
                "units": [list(unit) for unit in self.units],
                "h": self.h,
                "pooling": self.pooling,
                "kernel_size": self.kernel_size,
                "hidden_channels": self.hidden_channels,
                "normalization": self.normalization,
                "activation": self.activation,
                "input_pooling_levels": self.input_pooling_levels,
                "head_channels": self.head_channels,
                "memory_efficient": self.memory_efficient,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["units"] = [tuple(unit) for unit in config["units"]]
        return cls(**config)
