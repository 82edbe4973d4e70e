"""Every model of the package trains with `model.fit` under `tf.distribute.MirroredStrategy`
(two logical CPU devices, set up in conftest.py) with the memory-efficient engine on, and ends
with the weights of a one-device run with the same global batch.

Stated tolerance: 1e-5 absolute + 1e-4 relative after two SGD steps. The two replicas each see
half of the global batch and their gradients are summed, so only the order of float32
additions differs from one device (measured differences ~1e-7).

Batch normalisation computes statistics per replica under MirroredStrategy unless the layer is
built with `synchronized=True` (Keras all-reduces the moments then; on one device it is plain
batch normalisation). The package's BN layers (IRevNet's head, the coupling blocks' residual
functions, BaselineUNet) are synchronized, so the models as shipped match one device,
memory-efficient engine included (the *_synchronized_bn cases force it on every BN layer).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic.distribute import fit_distributed
from keras_hyperbolic.models import (
    BaselineUNet,
    ConvFlow,
    HyperbolicVAE,
    HyperbolicSegmenter,
    InvertibleUNet,
    IRevNet,
)

BATCH = 8  # global batch: 4 samples per replica
_SCE = dict(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def _labels_per_pixel(x, classes=2):
    return (x.mean(axis=-1) * classes).astype("int32").clip(0, classes - 1)


def _labels_per_image(x, classes=3):
    return (x.reshape(len(x), -1).mean(axis=1) * classes).astype("int32").clip(0, classes - 1)


def _synchronized(model):
    """Switches every BatchNormalization of `model` to cross-replica statistics."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
    return model


# name: (make model, input shape without batch, make targets (None: self-supervised), compile)
MODELS = {
    "hyperbolic_segmenter": (
        lambda: HyperbolicSegmenter(num_classes=2, rank=2, width=4, h=0.5, hidden_channels=4,
                                    units=[(1, "down"), (1, "up"), (1, None)]),
        (8, 8, 3), _labels_per_pixel, _SCE),
    "hyperbolic_segmenter_3d_learnable": (
        lambda: HyperbolicSegmenter(num_classes=2, rank=3, width=2, h=0.5, hidden_channels=2,
                                    pooling="learnable", units=[(1, "down"), (1, "up")]),
        (4, 4, 4, 2), _labels_per_pixel, _SCE),
    "invertible_unet": (
        lambda: InvertibleUNet(rank=2, channels=4, levels=2, blocks_per_level=1,
                               project_input=True, output_channels=2),
        (8, 8, 3), _labels_per_pixel, _SCE),
    "irevnet_synchronized_bn": (
        lambda: _synchronized(IRevNet(num_classes=3, input_shape=(8, 8, 1), stages=(1, 1))),
        (8, 8, 1), _labels_per_image, _SCE),
    "baseline_unet_synchronized_bn": (
        lambda: _synchronized(BaselineUNet(num_classes=2, rank=2, filters=4, levels=1)),
        (8, 8, 3), _labels_per_pixel, _SCE),
    "hyperbolic_vae": (
        # latent_dim < data dimension: with P = I the reconstruction is exact
        # and the network's gradients vanish, which would hide the bug.
        lambda: HyperbolicVAE((8, 8, 1), levels=2, depth=1, hidden_channels=4,
                              gaussianity="none", latent_dim=32),
        (8, 8, 1), None, {}),
    "conv_flow": (
        lambda: ConvFlow((8, 8, 1), levels=1, depth=1, num_bins=17),
        (8, 8, 1), None, {}),
}

AS_SHIPPED_BN = {
    "irevnet": (lambda: IRevNet(num_classes=3, input_shape=(8, 8, 1), stages=(1, 1)),
                (8, 8, 1), _labels_per_image, _SCE),
    "baseline_unet": (lambda: BaselineUNet(num_classes=2, rank=2, filters=4, levels=1),
                      (8, 8, 3), _labels_per_pixel, _SCE),
}


def _data(shape, make_targets, samples=2 * BATCH):
    x = np.random.default_rng(0).random((samples,) + shape).astype("float32")
    return x, (None if make_targets is None else make_targets(x))


def _train(name, strategy, use_fit=True, models=MODELS):
    make, shape, make_targets, compile_kwargs = models[name]
    x, y = _data(shape, make_targets)
    with strategy.scope():
        keras.utils.set_random_seed(3)
        model = make()
        if not model.built:
            model.build((None,) + shape)
        model.compile(optimizer=keras.optimizers.SGD(0.05), **compile_kwargs)
    if use_fit:
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    else:
        data = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y)).batch(BATCH)
        fit_distributed(model, data, epochs=1, strategy=strategy, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2
    return model


def _assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb) > 0
    for name, u, v in zip([w.path for w in a.weights], wa, wb):
        np.testing.assert_allclose(u, v, atol=1e-5, rtol=1e-4, err_msg=name)


def _assert_trained(model, name):
    # The check is not trivial: training moved the weights away from the start.
    keras.utils.set_random_seed(3)
    fresh = MODELS[name][0]()
    if not fresh.built:
        fresh.build((None,) + MODELS[name][1])
    start = fresh.get_weights()
    assert any(np.abs(w - s).max() > 1e-4 for w, s in zip(model.get_weights(), start))


@pytest.fixture(scope="module")
def mirrored():
    return two_device_strategy()


def two_device_strategy():
    # Reduce-and-broadcast instead of the default collective all-reduce: every
    # MirroredStrategy in a process numbers its collective instances from the
    # same start, so a second strategy's ops can collide with a first one's
    # ("Shape mismatch in the collective instance 100") when one pytest process
    # runs several test files that each create strategies. Same sums, no keys.
    return tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fit_mirrored_equals_one_device(name, mirrored):
    one = _train(name, tf.distribute.get_strategy())
    two = _train(name, mirrored)
    assert two.trainable_variables[0].value.__class__.__name__ != "ResourceVariable"
    _assert_trained(two, name)
    _assert_same_weights(one, two)


def test_fit_distributed_mirrored_equals_one_device(mirrored):
    # The custom loop gives what model.fit gives, on one device and on two.
    one = _train("hyperbolic_segmenter", tf.distribute.get_strategy())
    two = _train("hyperbolic_segmenter", mirrored, use_fit=False)
    _assert_same_weights(one, two)


@pytest.mark.parametrize("name", sorted(AS_SHIPPED_BN))
def test_batch_norm_models_as_shipped_equal_one_device(name, mirrored):
    one = _train(name, tf.distribute.get_strategy(), models=AS_SHIPPED_BN)
    two = _train(name, mirrored, models=AS_SHIPPED_BN)
    assert all(np.isfinite(w).all() for w in two.get_weights())
    _assert_same_weights(one, two)
