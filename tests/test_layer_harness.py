"""Keras's own layer harness (`run_layer_test`) on every public layer configuration.

`keras.src.testing.TestCase.run_layer_test` checks what every Keras layer must
do: config and serialisation round trips, symbolic (`compute_output_spec`) and
eager calls with the same shapes and dtypes, the weight counts, one `fit`
step, and a `mixed_float16` step in which the symbolic and eager output dtypes
must agree and the weights stay float32. The invertible layers keep their
stream in float32 under that policy, so the dtype they report must be float32
too (a functional model built under the policy is told the output dtype).
Small shapes, run with Keras's defaults. What is specific to invertible layers
(inversion, log-determinants, the engine) is in layer_testing.py.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing

from keras_hyperbolic import layers as khl
from keras_hyperbolic.reversible import ReversibleSequence
from layer_testing import relative_error

# Fine-resolution shapes per rank (batch 2, 2 channels).
FINE = {1: (2, 4, 2), 2: (2, 4, 4, 2), 3: (2, 2, 4, 2, 2)}
# Shapes for channel-preserving layers (4 channels: couplings split them in halves).
SAME = {1: (2, 5, 4), 2: (2, 4, 3, 4), 3: (2, 2, 3, 2, 4)}


def coarse(shape):
    """The pooled shape, written out by hand: half the sizes, 2**rank times the channels."""
    rank = len(shape) - 2
    return (shape[0],) + tuple(n // 2 for n in shape[1:-1]) + (shape[-1] * 2**rank,)


POOLING_KINDS = {
    "wavelet_haar": ("Wavelet", {"wavelet": "haar"}),
    "wavelet_db2": ("Wavelet", {"wavelet": "db2"}),
    "wavelet_learnable": ("Wavelet", {"wavelet": "learnable"}),
    "orthogonal_expm": ("Orthogonal", {"parametrization": "expm"}),
    "orthogonal_cayley": ("Orthogonal", {"parametrization": "cayley"}),
    "pixel_shuffle": ("PixelShuffle", {}),
}


def _configurations():
    """(id, layer class, init kwargs, input shape, expected output shape)."""
    configs = []
    for kind, (family, kwargs) in POOLING_KINDS.items():
        for rank in (1, 2, 3):
            for direction in ("Pooling", "Unpooling"):
                cls = getattr(khl, f"{family}{direction}{rank}D")
                fine, pooled = FINE[rank], coarse(FINE[rank])
                shapes = (fine, pooled) if direction == "Pooling" else (pooled, fine)
                configs.append((f"{kind}_{direction.lower()}_{rank}d", cls, kwargs) + shapes)
    for rank in (1, 2, 3):
        shape = SAME[rank]
        configs += [
            (f"additive_coupling_{rank}d", khl.AdditiveCoupling, {"rank": rank}, shape, shape),
            (f"affine_coupling_{rank}d", khl.AffineCoupling, {"rank": rank}, shape, shape),
            (f"hyperbolic_block_{rank}d", khl.HyperbolicBlock, {"rank": rank}, shape, shape),
            (f"invertible_conv_{rank}d", getattr(khl, f"InvertibleConv{rank}D"), {}, shape, shape),
        ]
    pair_input = (2, 4, 4, 4)  # [Y_prev | Y_cur], 2 channels each
    configs += [
        ("pair_pooling", khl.PairPooling,
         {"layer": keras.saving.serialize_keras_object(khl.WaveletPooling2D("db2"))},
         pair_input, (2, 2, 2, 16)),
        ("invertible_1x1_conv", khl.Invertible1x1Conv, {}, SAME[2], SAME[2]),
        ("sneaky_relu", khl.SneakyReLU, {}, SAME[1], SAME[1]),
        ("leapfrog_velocity_to_pair", khl.LeapfrogVelocity, {"h": 0.1, "rank": 2},
         SAME[2], SAME[2]),
        ("leapfrog_velocity_to_velocity", khl.LeapfrogVelocity,
         {"h": 0.1, "direction": "to_velocity", "rank": 2}, SAME[2], SAME[2]),
        ("elementwise_affine", khl.ElementwiseAffine, {}, SAME[2], SAME[2]),
        # The layers of one network each (i-RevNet; iUNet's flat U).
        ("irevnet_block", khl.IRevNetBlock, {"rank": 2}, SAME[2], SAME[2]),
        ("irevnet_block_stride_2", khl.IRevNetBlock, {"rank": 2, "stride": 2},
         pair_input, (2, 2, 2, 16)),
        ("channel_zero_padding", khl.ChannelZeroPadding, {"channels": 6},
         FINE[2], FINE[2][:-1] + (6,)),
        ("active_channels", khl.ActiveChannels,
         {"layer": keras.saving.serialize_keras_object(khl.Invertible1x1Conv()), "active": 2},
         SAME[2], SAME[2]),
        ("split_downsample", khl.SplitDownsample,
         {"rank": 2, "channels": 4, "keep": 2,
          "down": keras.saving.serialize_keras_object(khl.OrthogonalPooling2D())},
         pair_input, (2, 2, 2, 16)),
        ("upsample_concat", khl.UpsampleConcat,
         {"rank": 2, "active": 8, "skip": 2,
          "up": keras.saving.serialize_keras_object(khl.OrthogonalUnpooling2D())},
         (2, 2, 2, 16), pair_input),
    ]
    return configs


CONFIGURATIONS = _configurations()


class _Harness(testing.TestCase):
    def runTest(self):  # unittest needs one test method to instantiate the case
        pass


@pytest.mark.parametrize(
    "cls, init_kwargs, input_shape, output_shape",
    [config[1:] for config in CONFIGURATIONS],
    ids=[config[0] for config in CONFIGURATIONS],
)
def test_keras_layer_harness(cls, init_kwargs, input_shape, output_shape):
    _Harness().run_layer_test(
        cls,
        init_kwargs=init_kwargs,
        input_shape=input_shape,
        expected_output_shape=output_shape,
        expected_output_dtype="float32",
    )


@pytest.mark.parametrize(
    "cls, init_kwargs, input_shape, output_shape",
    [config[1:] for config in CONFIGURATIONS],
    ids=[config[0] for config in CONFIGURATIONS],
)
def test_mixed_float16_stream_stays_float32_and_inverts(cls, init_kwargs, input_shape, output_shape):
    # What the harness's mixed-precision step does not check for an invertible
    # layer: the stream is float32, the residual functions still compute in
    # float16 (not everything cast to float32), and the inverse, which
    # re-evaluates them on the same inputs, is exact to float32 rounding.
    keras.config.set_dtype_policy("mixed_float16")
    layer = cls(**init_kwargs)
    x = np.random.default_rng(0).standard_normal(input_shape).astype("float32")
    y = layer(x)
    assert y.dtype == tf.float32
    assert all(w.dtype == "float32" for w in layer.weights)
    for sub in layer._flatten_layers(include_self=False):
        if isinstance(sub, khl.ResidualFunction):
            assert sub.compute_dtype == "float16"
    assert relative_error(layer.inverse(y), x) <= 1e-5
    assert relative_error(layer(layer.inverse(y)), y) <= 1e-5
    # A float16 input is cast onto the float32 stream by both maps.
    assert layer(tf.cast(x, "float16")).dtype == tf.float32
    assert layer.inverse(tf.cast(y, "float16")).dtype == tf.float32


def test_reversible_sequence_harness():
    # The blocks are objects, shared by the stacks the harness makes from init_kwargs.
    _Harness().run_layer_test(
        ReversibleSequence,
        init_kwargs={"layers": [khl.AdditiveCoupling(rank=2), khl.WaveletPooling2D("haar")]},
        input_shape=SAME[2][:1] + (4, 4, 4),
        expected_output_shape=(2, 2, 2, 16),
        expected_output_dtype="float32",
    )


def test_functional_model_under_mixed_precision_is_told_float32():
    # The bug the harness found: compute_output_spec said float16 while the
    # layer returned its float32 stream.
    keras.config.set_dtype_policy("mixed_float16")
    inputs = keras.Input(SAME[2][1:])
    outputs = khl.AdditiveCoupling(rank=2)(inputs)
    model = keras.Model(inputs, outputs)
    assert outputs.dtype == "float32"
    assert model(keras.random.normal(SAME[2])).dtype == "float32"


def test_configurations_cover_every_public_layer():
    public = {name for name in dir(khl) if isinstance(getattr(khl, name), type)
              and issubclass(getattr(khl, name), khl.InvertibleLayer)
              and name != "InvertibleLayer"}
    covered = {config[1].__name__ for config in CONFIGURATIONS}
    assert public - covered == set()
    # + LeapfrogVelocity both directions, ElementwiseAffine, the i-RevNet and iUNet layers
    assert len(CONFIGURATIONS) == 36 + 12 + 3 + 2 + 1 + 3 + 3
