"""Writes the legacy `.keras` fixtures: tiny models saved by the code of their time, with outputs.

`tests/test_legacy_models.py` loads each `<name>.keras` with the current code
and checks that it reproduces `<name>.npz` (`inputs`, `outputs`). The files in
the repository were written before the models' layers moved to
`keras_hyperbolic/layers/` (issue 23); rerunning this script overwrites them
with files of the current code, which no longer tests that move.

The weights are perturbed away from their initialisation (several networks
start as the identity, whose outputs would not show whether weights loaded)
and batch-norm statistics are updated by one training-mode call.

Run from the repository root:

    PYTHONPATH=$PWD python tests/data/legacy/make_fixtures.py [NAME ...]

(all fixtures without names). `network_layers` was written later than the
others, by the code of commit e91d440 (before the move) with this script.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_hyperbolic.models import (  # noqa: E402
    ConvFlow,
    HyperbolicSegmenter,
    HyperbolicVAE,
    InvertibleUNet,
    IRevNet,
)

HERE = os.path.dirname(os.path.abspath(__file__))


def _irevnet():
    return IRevNet(num_classes=3, input_shape=(8, 8, 1), stages=(1, 1), init_squeeze=2,
                   injective=True), (8, 8, 1)


def _invertible_unet():
    return InvertibleUNet(rank=2, channels=4, levels=2, blocks_per_level=1, hidden_channels=4,
                          project_input=True, output_channels=2), (8, 8, 3)


def _hyperbolic_segmenter():
    return HyperbolicSegmenter(num_classes=2, rank=2, width=2, hidden_channels=4,
                               units=[(1, "down"), (1, "up"), (1, None)], h=0.5,
                               normalization="weight"), (8, 8, 3)


def _hyperbolic_vae():
    return HyperbolicVAE((8, 8, 1), levels=2, depth=1, block="hyperbolic",
                         hidden_channels=4), (8, 8, 1)


def _conv_flow():
    return ConvFlow((4, 4, 1), levels=1, depth=1, num_bins=17), (4, 4, 1)


def _network_layers():
    # The networks' own layers in a functional model: the file names each layer's
    # class and module (the model modules that defined them before issue 23).
    from keras_hyperbolic import layers as khl
    from keras_hyperbolic.models.conv_flow import ElementwiseAffine
    from keras_hyperbolic.models.invertible_unet import (
        ActiveChannels,
        SplitDownsample,
        UpsampleConcat,
    )
    from keras_hyperbolic.models.irevnet import ChannelZeroPadding, IRevNetBlock

    inputs = keras.Input((4, 4, 2))
    x = ElementwiseAffine()(inputs)
    x = ChannelZeroPadding(4)(x)
    x = IRevNetBlock(rank=2, normalization="layer")(x)
    x = ActiveChannels(khl.AdditiveCoupling(rank=2, hidden_channels=4), active=4)(x)
    x = SplitDownsample(2, 4, 2, khl.OrthogonalPooling2D())(x)
    x = UpsampleConcat(2, 8, 2, khl.OrthogonalUnpooling2D())(x)
    return keras.Model(inputs, x), (4, 4, 2)


FIXTURES = {
    "irevnet": _irevnet,
    "invertible_unet": _invertible_unet,
    "hyperbolic_segmenter": _hyperbolic_segmenter,
    "hyperbolic_vae": _hyperbolic_vae,
    "conv_flow": _conv_flow,
    "network_layers": _network_layers,
}


def fixture_inputs(name, shape):
    """The fixed input of fixture `name`: two examples in [0, 1) (stored with the outputs)."""
    seed = sorted(FIXTURES).index(name)
    return np.random.default_rng(seed).random((2,) + shape).astype("float32")


def _perturb(model, seed):
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        value = keras.ops.convert_to_numpy(variable)
        variable.assign(value + 0.1 * rng.standard_normal(value.shape).astype(value.dtype))


def write(name):
    keras.utils.set_random_seed(0)
    model, shape = FIXTURES[name]()
    x = fixture_inputs(name, shape)
    model(x)  # builds
    _perturb(model, seed=1)
    if name == "irevnet":
        model(x, training=True)  # moves the batch-norm statistics
    if name == "hyperbolic_vae":
        # A pruned P (rectangular, `latent_dim` in the config): zero 8 columns, drop them.
        kernel = keras.ops.convert_to_numpy(model.projection)
        kernel[:, -8:] = 0.0
        model.projection.assign(kernel)
        model.prune(1e-3)
    outputs = keras.ops.convert_to_numpy(model(x, training=False))
    model.save(os.path.join(HERE, f"{name}.keras"))
    np.savez(os.path.join(HERE, f"{name}.npz"), inputs=x, outputs=outputs)


if __name__ == "__main__":
    import sys

    for fixture in sys.argv[1:] or FIXTURES:
        write(fixture)
        print(fixture, os.path.getsize(os.path.join(HERE, f"{fixture}.keras")), "bytes")
