"""TFLite/LiteRT: builtin ops only (kernels folded), runs in ai_edge_litert, matches Keras."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from keras_hyperbolic import layers as khl
from keras_hyperbolic.export import export_tflite, tflite_ops
from keras_hyperbolic.layers.pooling import constant_kernels
from keras_hyperbolic.models import HyperbolicSegmenter
from keras_hyperbolic.models.hyperbolic_vae import HyperbolicVAE
from keras_hyperbolic.ops import wavelets as wavelet_ops

#: Float32 export: the folded graph is the same maths in another order.
TOLERANCE = 1e-4
#: Dynamic-range quantisation stores weights in int8 (relative error of the
#: weights ~ 1/254): outputs are compared with a looser, relative bound.
QUANTIZED_RELATIVE_TOLERANCE = 5e-2


def _perturb(model, scale, seed=0):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        variable.assign(value + scale * rng.standard_normal(value.shape).astype(value.dtype))


def _no_flex(ops):
    assert ops, "empty op list"
    assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")], ops


def _runner(path, signature):
    interpreter = Interpreter(model_path=path)
    return interpreter.get_signature_runner(signature)


@pytest.mark.parametrize(
    "rank,pooling,shape,head",
    # The 3D case with the nonlinear closing head of the `video_cpu` preset.
    [(2, "orthogonal", (16, 16, 3), None), (3, "learnable", (8, 8, 8, 2), 6)],
)
def test_segmenter_tflite_builtins_only_and_matches_keras(tmp_path, rank, pooling, shape, head):
    model = HyperbolicSegmenter(num_classes=3, rank=rank, width=4, pooling=pooling,
                                units=[(1, "down"), (1, "down"), (1, "up"), (1, "up")],
                                h=0.5, hidden_channels=4, head_channels=head)
    model.build((None,) + shape)
    _perturb(model, 0.3)
    path = export_tflite(model, str(tmp_path / "seg.tflite"))
    ops = tflite_ops(path)
    _no_flex(ops)
    # The learned kernels were folded: no matrix exponential or FFT survived.
    assert not {"MATRIX_EXP", "RFFT2D", "COMPLEX_ABS"} & set(ops)
    assert ("CONV_3D" if rank == 3 else "CONV_2D") in ops
    x = np.random.default_rng(1).random((1,) + shape, dtype=np.float32)
    out = _runner(path, "serving_default")(images=x)
    expected = tf.nn.softmax(model(x)).numpy()
    np.testing.assert_allclose(out["probabilities"], expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_array_equal(out["labels"], np.argmax(expected, axis=-1))
    # The model's own layers are back after export.
    assert model.hyperbolic.memory_efficient
    np.testing.assert_allclose(tf.nn.softmax(model(x)).numpy(), expected, atol=0)


@pytest.fixture(scope="module")
def vae():
    keras.utils.set_random_seed(5)
    model = HyperbolicVAE((16, 16, 1), levels=2, depth=1, hidden_channels=4, latent_dim=24)
    _perturb(model, 0.05)
    return model


def test_vae_decoder_tflite_matches_keras(vae, tmp_path):
    path = export_tflite(vae, str(tmp_path / "vae.tflite"), batch_size=2)
    _no_flex(tflite_ops(path))
    signatures = Interpreter(model_path=path).get_signature_list()
    assert signatures["decode"] == {"inputs": ["latent"], "outputs": ["images"]}
    assert set(signatures) == {"decode", "encode", "reconstruct"}
    z = np.random.default_rng(2).standard_normal((2, 24)).astype(np.float32)
    images = _runner(path, "decode")(latent=z)["images"]
    np.testing.assert_allclose(images, vae.decode(z).numpy(), atol=TOLERANCE, rtol=0)
    x = np.random.default_rng(3).random((2, 16, 16, 1), dtype=np.float32)
    latent = _runner(path, "encode")(images=x)["latent"]
    np.testing.assert_allclose(latent, vae.encode(x).numpy(), atol=TOLERANCE, rtol=0)


def test_vae_decoder_quantized_within_stated_tolerance(vae, tmp_path):
    float_path = export_tflite(vae, str(tmp_path / "f.tflite"), signatures=["decode"])
    path = export_tflite(vae, str(tmp_path / "q.tflite"), signatures=["decode"],
                         quantize="dynamic")
    _no_flex(tflite_ops(path))
    assert os.path.getsize(path) < os.path.getsize(float_path)
    z = np.random.default_rng(4).standard_normal((1, 24)).astype(np.float32)
    images = _runner(path, "decode")(latent=z)["images"]
    expected = vae.decode(z).numpy()
    error = np.linalg.norm(images - expected) / np.linalg.norm(expected)
    assert error < QUANTIZED_RELATIVE_TOLERANCE


@pytest.mark.parametrize(
    "layer,rank",
    [
        (khl.OrthogonalPooling1D(parametrization="cayley"), 1),
        (khl.OrthogonalUnpooling2D(), 2),
        (khl.WaveletPooling3D("learnable"), 3),
        (khl.WaveletUnpooling1D("db2"), 1),
        (khl.WaveletPooling2D("db2"), 2),
        (khl.PixelShufflePooling3D(), 3),
        (khl.WaveletPooling2D("haar"), 2),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, int) else str(v),
)
def test_constant_kernels_equal_layer_both_ways(layer, rank):
    fine = (2,) + (8,) * rank + (3,)
    coarse = (2,) + (4,) * rank + (3 * 2**rank,)
    layer.build(coarse if layer.upsample else fine)
    _perturb(layer, 0.4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(fine).astype(np.float32)
    y = rng.standard_normal(coarse).astype(np.float32)
    inputs, outputs = (y, x) if layer.upsample else (x, y)
    reference, reference_inverse = layer(inputs).numpy(), layer.inverse(outputs).numpy()
    kernel = layer.constant_kernel()
    taps = 4 if getattr(layer, "wavelet", "haar") != "haar" else 2
    assert kernel.shape == (taps,) * rank + (3, 3 * 2**rank) and kernel.dtype == np.float64
    # The pooling is the periodic strided convolution with that kernel.
    pooled = wavelet_ops.periodic_conv(tf.constant(x, tf.float64), kernel, rank)
    expected = layer.inverse(x) if layer.upsample else layer(x)
    np.testing.assert_allclose(pooled.numpy(), expected.numpy(), atol=1e-5)
    with constant_kernels():
        np.testing.assert_allclose(layer(inputs).numpy(), reference, atol=1e-5)
        np.testing.assert_allclose(layer.inverse(outputs).numpy(), reference_inverse, atol=1e-5)
        traced = tf.function(lambda t: layer(t), autograph=False)
        graph = traced.get_concrete_function(tf.TensorSpec(inputs.shape)).graph
    ops = {op.type for op in graph.get_operations()}
    # Folded: the weights are not read, no roll / expm / solve / transpose is left.
    assert not {"ReadVariableOp", "Roll", "MatrixExponential", "MatrixSolve", "Transpose"} & ops
    assert {"Conv2D", "Conv3D", "Conv2DBackpropInput", "Conv3DBackpropInputV2"} & ops
    # Outside the context the layer runs its own maps again.
    traced = tf.function(lambda t: layer(t), autograph=False)
    plain_ops = {op.type for op in traced.get_concrete_function(tf.TensorSpec(inputs.shape))
                 .graph.get_operations()}
    assert ("ReadVariableOp" in plain_ops) == bool(layer.weights)


def test_constant_kernel_needs_a_built_layer():
    with pytest.raises(ValueError, match="not built"):
        khl.OrthogonalPooling2D().constant_kernel()


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_periodic_conv_is_the_dwt_in_float64(rank):
    x = tf.constant(np.random.default_rng(rank).standard_normal((2,) + (6,) * rank + (3,)))
    lo = tf.constant(wavelet_ops.DB2)
    hi = wavelet_ops.high_pass(lo)
    kernel = wavelet_ops.filter_bank_kernel(lo, hi, 3, rank)
    y = wavelet_ops.periodic_conv(x, kernel, rank)
    np.testing.assert_allclose(y.numpy(), wavelet_ops.dwt(x, lo, hi, rank).numpy(), atol=1e-12)
    np.testing.assert_allclose(wavelet_ops.periodic_conv_transpose(y, kernel, rank).numpy(),
                               x.numpy(), atol=1e-12)


def test_tflite_bad_input(tmp_path, vae):
    unbuilt = HyperbolicSegmenter.from_preset("tiny_2d", num_classes=2)
    with pytest.raises(ValueError, match="not built"):
        export_tflite(unbuilt, str(tmp_path / "a.tflite"))
    with pytest.raises(ValueError, match="quantize"):
        export_tflite(vae, str(tmp_path / "a.tflite"), quantize="int4")
    with pytest.raises(ValueError, match="signatures"):
        export_tflite(vae, str(tmp_path / "a.tflite"), signatures=["serving_default"])
    with pytest.raises(ValueError, match="does not exist"):
        export_tflite(vae, str(tmp_path / "missing" / "a.tflite"))
    assert os.listdir(tmp_path) == []


def test_dynamic_quantization_of_3d_convolutions_says_it_did_nothing(tmp_path):
    model = HyperbolicSegmenter.from_preset("tiny_3d", num_classes=2, width=8, hidden_channels=32)
    model.build((None, 8, 8, 8, 2))
    with pytest.warns(UserWarning, match="float16"):
        export_tflite(model, str(tmp_path / "q.tflite"), quantize="dynamic")
