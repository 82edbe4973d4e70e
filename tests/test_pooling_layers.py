"""Invertible pooling layers: standard battery, PyWavelets parity, equivalences, errors."""

import keras
import numpy as np
import pytest
import pywt
import tensorflow as tf

from keras_hyperbolic import layers
from keras_hyperbolic.ops import wavelets as wavelet_ops
from layer_testing import assert_backward_matches_autodiff, relative_error, run_invertible_layer_test

# Non-square fine-resolution shapes with an odd channel count, per rank.
SHAPES = {1: (2, 8, 3), 2: (2, 8, 6, 3), 3: (1, 4, 6, 2, 3)}


def coarse_shape(shape):
    rank = len(shape) - 2
    return (shape[0],) + tuple(n // 2 for n in shape[1:-1]) + (shape[-1] * 2**rank,)


def pywt_reference(x, wavelet):
    """`pywt.dwtn` of every channel, stacked subband-major (sorted keys)."""
    out = []
    for example in x:
        per_channel = []
        for c in range(x.shape[-1]):
            coeffs = pywt.dwtn(example[..., c], wavelet, mode="periodization")
            per_channel.append(np.stack([coeffs[k] for k in sorted(coeffs)], axis=-1))
        stacked = np.stack(per_channel, axis=-1)  # (..., subband, C)
        out.append(stacked.reshape(stacked.shape[:-2] + (-1,)))
    return np.stack(out)


FAMILIES = {
    "wavelet": ({1: layers.WaveletPooling1D, 2: layers.WaveletPooling2D, 3: layers.WaveletPooling3D},
                {1: layers.WaveletUnpooling1D, 2: layers.WaveletUnpooling2D, 3: layers.WaveletUnpooling3D}),
    "orthogonal": ({1: layers.OrthogonalPooling1D, 2: layers.OrthogonalPooling2D, 3: layers.OrthogonalPooling3D},
                   {1: layers.OrthogonalUnpooling1D, 2: layers.OrthogonalUnpooling2D,
                    3: layers.OrthogonalUnpooling3D}),
    "pixel_shuffle": ({1: layers.PixelShufflePooling1D, 2: layers.PixelShufflePooling2D,
                       3: layers.PixelShufflePooling3D},
                      {1: layers.PixelShuffleUnpooling1D, 2: layers.PixelShuffleUnpooling2D,
                       3: layers.PixelShuffleUnpooling3D}),
}

# Every public class once through the full battery (ranks 1-3, both directions),
# with the learnable/4-tap variants spread over the ranks to keep the suite fast.
BATTERY = [
    ("wavelet", 0, 1, {"wavelet": "db2"}),
    ("wavelet", 0, 2, {"wavelet": "learnable"}),
    ("wavelet", 0, 3, {"wavelet": "haar"}),
    ("wavelet", 1, 1, {"wavelet": "learnable", "init": "db2"}),
    ("wavelet", 1, 2, {"wavelet": "db2"}),
    ("wavelet", 1, 3, {"wavelet": "learnable", "init": [0.3, -1.1]}),
    ("orthogonal", 0, 1, {"parametrization": "cayley"}),
    ("orthogonal", 0, 2, {"parametrization": "expm", "init": "random"}),
    ("orthogonal", 0, 3, {"parametrization": "expm"}),
    ("orthogonal", 1, 1, {"init": "squeeze"}),
    ("orthogonal", 1, 2, {"parametrization": "cayley", "init": "random"}),
    ("orthogonal", 1, 3, {"parametrization": "cayley"}),
    ("pixel_shuffle", 0, 1, {}),
    ("pixel_shuffle", 0, 2, {}),
    ("pixel_shuffle", 0, 3, {}),
    ("pixel_shuffle", 1, 1, {}),
    ("pixel_shuffle", 1, 2, {}),
    ("pixel_shuffle", 1, 3, {}),
]


@pytest.mark.parametrize("family,up,rank,kwargs", BATTERY)
def test_standard_battery(family, up, rank, kwargs):
    cls = FAMILIES[family][up][rank]
    shape = coarse_shape(SHAPES[rank]) if up else SHAPES[rank]
    run_invertible_layer_test(cls, kwargs, shape)


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (layers.WaveletPooling2D, {"wavelet": "db2"}),
        (layers.WaveletPooling3D, {"wavelet": "learnable", "init": "db2"}),
        (layers.OrthogonalPooling2D, {"parametrization": "expm", "init": "random"}),
        (layers.OrthogonalPooling1D, {"parametrization": "cayley", "init": "random"}),
        (layers.WaveletUnpooling1D, {"wavelet": "haar"}),
        (layers.PixelShufflePooling3D, {}),
    ],
)
def test_round_trip_float64(cls, kwargs):
    rank = int(cls.__name__[-2])
    x = np.random.default_rng(1).standard_normal(SHAPES[rank])
    if cls.upsample:
        x = x.reshape(coarse_shape(SHAPES[rank]))
    layer = cls(dtype="float64", **kwargs)
    y = layer(x)
    assert y.dtype == tf.float64
    assert relative_error(layer.inverse(y), x) <= 1e-12
    assert relative_error(layer(layer.inverse(y)), y) <= 1e-12
    # Orthogonal: the norm is preserved and the log-determinant is zero.
    assert abs(float(tf.norm(y)) / np.linalg.norm(x) - 1.0) <= 1e-12
    np.testing.assert_array_equal(layer.log_det_jacobian(x).numpy(), np.zeros(x.shape[0]))


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_pywavelets_parity(rank, wavelet):
    x = np.random.default_rng(rank).standard_normal(SHAPES[rank])
    pool = FAMILIES["wavelet"][0][rank](wavelet=wavelet, dtype="float64")
    np.testing.assert_allclose(pool(x).numpy(), pywt_reference(x, wavelet), atol=1e-12)
    # Wide channel count: Haar then takes the squeeze + einsum path, not the dense conv.
    wide = np.random.default_rng(7).standard_normal(SHAPES[rank][:-1] + (37,))
    np.testing.assert_allclose(pool.__class__(wavelet=wavelet, dtype="float64")(wide).numpy(),
                               pywt_reference(wide, wavelet), atol=1e-12)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("parametrization", ["expm", "cayley"])
def test_orthogonal_haar_equals_wavelet_haar(rank, parametrization):
    x = np.random.default_rng(2).standard_normal(SHAPES[rank]).astype("float32")
    haar = FAMILIES["wavelet"][0][rank](wavelet="haar")(x)
    ortho = FAMILIES["orthogonal"][0][rank](parametrization=parametrization, init="haar")(x)
    np.testing.assert_allclose(ortho.numpy(), haar.numpy(), atol=2e-6)
    squeeze = FAMILIES["orthogonal"][0][rank](parametrization=parametrization, init="squeeze")(x)
    shuffle = FAMILIES["pixel_shuffle"][0][rank]()(x)
    np.testing.assert_allclose(squeeze.numpy(), shuffle.numpy(), atol=1e-6)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_learnable_wavelet_starts_at_db2_and_haar(rank):
    x = np.random.default_rng(3).standard_normal(SHAPES[rank])
    cls = FAMILIES["wavelet"][0][rank]
    learn_db2 = cls(wavelet="learnable", init="db2", dtype="float64")(x).numpy()
    np.testing.assert_allclose(learn_db2, pywt_reference(x, "db2"), atol=1e-12)
    # init="haar" equals PyWavelets' Haar exactly: the fixed detail sign undoes the
    # sign flip of the 4-tap (offset -1) form of Haar's detail filter.
    learn_haar = cls(wavelet="learnable", init="haar", dtype="float64")(x).numpy()
    np.testing.assert_allclose(learn_haar, pywt_reference(x, "haar"), atol=1e-12)


def test_learnable_wavelet_haar_as_given_coefficients_flips_detail_sign():
    # Given coefficients use g[k] = (-1)^k c[3-k] as is: the 4-tap Haar then gives
    # Haar's approximation and the detail subband with the opposite sign.
    x = np.random.default_rng(4).standard_normal((2, 8, 3))
    layer = layers.WaveletPooling1D("learnable", init=wavelet_ops.HAAR_4TAP.tolist(), dtype="float64")
    ref = pywt_reference(x, "haar")
    np.testing.assert_allclose(layer(x).numpy()[..., :3], ref[..., :3], atol=1e-12)
    np.testing.assert_allclose(layer(x).numpy()[..., 3:], -ref[..., 3:], atol=1e-12)


def test_learnable_wavelet_coefficients_and_angles_agree():
    a, b = 0.4, -0.9
    coeffs = wavelet_ops.coefficients_from_angles(tf.constant(a, tf.float64), tf.constant(b, tf.float64))
    x = np.random.default_rng(5).standard_normal((2, 8, 6, 2))
    by_angles = layers.WaveletPooling2D("learnable", init=[a, b], dtype="float64")(x)
    by_coeffs = layers.WaveletPooling2D("learnable", init=coeffs.numpy().tolist(), dtype="float64")(x)
    np.testing.assert_allclose(by_angles.numpy(), by_coeffs.numpy(), atol=1e-12)


def test_pixel_shuffle_2d_equals_space_to_depth():
    x = np.random.default_rng(6).standard_normal((2, 8, 6, 3)).astype("float32")
    np.testing.assert_array_equal(layers.PixelShufflePooling2D()(x).numpy(), tf.nn.space_to_depth(x, 2).numpy())
    y = tf.nn.space_to_depth(x, 2)
    np.testing.assert_array_equal(layers.PixelShuffleUnpooling2D()(y).numpy(), x)


@pytest.mark.parametrize(
    "pool,unpool",
    [
        (layers.WaveletPooling3D("db2"), layers.WaveletUnpooling3D("db2")),
        (layers.OrthogonalPooling2D("cayley", init="random"), layers.OrthogonalUnpooling2D("cayley", init="random")),
        (layers.PixelShufflePooling1D(), layers.PixelShuffleUnpooling1D()),
    ],
)
def test_unpooling_is_the_inverse_of_pooling(pool, unpool):
    rank = pool.rank
    x = np.random.default_rng(8).standard_normal(SHAPES[rank]).astype("float32")
    y = pool(x)
    unpool.build(tuple(y.shape))
    for src, dst in zip(pool.weights, unpool.weights):
        dst.assign(src)
    np.testing.assert_allclose(unpool(y).numpy(), pool.inverse(y).numpy(), atol=1e-6)
    np.testing.assert_allclose(unpool.inverse(unpool(y)).numpy(), y.numpy(), atol=1e-5)
    assert unpool.compute_output_shape(y.shape) == tuple(x.shape)


def test_inverse_before_call_builds_the_layer():
    layer = layers.OrthogonalPooling2D()
    y = np.random.default_rng(9).standard_normal((2, 4, 3, 12)).astype("float32")
    x = layer.inverse(y)
    assert x.shape == (2, 8, 6, 3) and layer.built
    np.testing.assert_allclose(layer(x).numpy(), y, atol=1e-5)


@pytest.mark.parametrize(
    "family,kwargs,rank",
    [
        ("wavelet", {"wavelet": "haar"}, 2),
        ("wavelet", {"wavelet": "db2"}, 2),
        ("wavelet", {"wavelet": "learnable"}, 3),
        ("orthogonal", {"parametrization": "cayley"}, 1),
        ("orthogonal", {"parametrization": "expm"}, 3),
        ("pixel_shuffle", {}, 1),
    ],
)
def test_unknown_spatial_sizes_in_a_functional_model(family, kwargs, rank):
    pool_cls, unpool_cls = FAMILIES[family][0][rank], FAMILIES[family][1][rank]
    inputs = keras.Input(shape=(None,) * rank + (3,))
    pool = pool_cls(**kwargs)
    coarse = pool(inputs)
    assert tuple(coarse.shape) == (None,) * (rank + 1) + (3 * 2**rank,)
    model = keras.Model(inputs, unpool_cls(**kwargs)(coarse))
    for sizes in [(8, 6, 4), (4, 10, 2)]:
        shape = (2,) + sizes[:rank] + (3,)
        x = np.random.default_rng(0).standard_normal(shape).astype("float32")
        assert model(x).shape == shape
    traced = tf.function(pool, input_signature=[tf.TensorSpec((None,) * (rank + 1) + (3,), tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="divisible by 2"):
        traced(tf.zeros((1,) + (7, 6, 4)[:rank] + (3,)))
    inverse = tf.function(pool.inverse, input_signature=[tf.TensorSpec((None,) * (rank + 1) + (3 * 2**rank,))])
    y = pool(np.ones((1,) + (4, 6, 2)[:rank] + (3,), "float32"))
    np.testing.assert_allclose(inverse(y).numpy(), 1.0, atol=1e-5)


def test_pair_pooling_applies_the_same_operator_to_both_halves(tmp_path):
    rng = np.random.default_rng(10)
    prev, cur = rng.standard_normal((2, 2, 8, 6, 3)).astype("float32")
    inner = layers.WaveletPooling2D("learnable", init=[0.2, 0.7])
    pair = layers.PairPooling(inner)
    y = pair(np.concatenate([prev, cur], axis=-1))
    np.testing.assert_allclose(y.numpy(), np.concatenate([inner(prev), inner(cur)], axis=-1), atol=1e-6)
    assert len(pair.trainable_weights) == 1  # one shared pair of angles
    assert pair.compute_output_shape((None, 8, 6, 6)) == (None, 4, 3, 24)
    assert pair.compute_input_shape((None, 4, 3, 24)) == (None, 8, 6, 6)
    run_invertible_layer_test(
        layers.PairPooling, {"layer": layers.OrthogonalPooling3D("cayley", init="random")}, (1, 4, 2, 6, 4)
    )
    run_invertible_layer_test(layers.PairPooling, {"layer": layers.WaveletUnpooling1D("db2")}, (2, 4, 8))
    with pytest.raises(ValueError, match="even"):
        layers.PairPooling(layers.WaveletPooling2D())(np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(TypeError, match="`layer`"):
        layers.PairPooling(keras.layers.Dense(3))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: layers.WaveletPooling2D("db3"), "`wavelet`"),
        (lambda: layers.WaveletPooling2D("haar", init="db2"), "`init`"),
        (lambda: layers.WaveletPooling2D("learnable", init="sym4"), "`init`"),
        (lambda: layers.WaveletPooling2D("learnable", init=[0.1, 0.2, 0.3]), "`init`"),
        (lambda: layers.WaveletPooling2D("learnable", init=["a", "b"]), "`init`"),
        (lambda: layers.WaveletPooling2D("learnable", init=0.5), "`init`"),
        (lambda: layers.WaveletPooling2D("learnable", init=[0.5, 0.5, 0.5, 0.5001]), "eq. 3.8a"),
        (lambda: layers.WaveletPooling2D("learnable", init=[1.0, 0.0, 0.1, 0.0]), "eq. 3.8a"),
        (lambda: layers.OrthogonalPooling2D(parametrization="svd"), "`parametrization`"),
        (lambda: layers.OrthogonalPooling2D(init="identity"), "`init`"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "layer,shape,match",
    [
        (layers.WaveletPooling2D(), (2, 7, 6, 3), "not divisible by 2"),
        (layers.WaveletPooling2D("db2"), (2, 8, 6), "rank 4"),
        (layers.OrthogonalPooling3D(), (2, 4, 4, 4, None), "channel axis"),
        (layers.WaveletUnpooling2D(), (2, 4, 4, 6), "not divisible by 2\\*\\*rank"),
        (layers.PixelShuffleUnpooling3D(), (2, 4, 4, 4, 12), "not divisible by 2\\*\\*rank"),
    ],
)
def test_bad_shapes_raise_at_build(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer.build(shape)
    with pytest.raises(ValueError, match=match):
        layer.compute_output_shape(shape)


def test_bad_runtime_shapes_raise_before_work():
    layer = layers.OrthogonalPooling2D()
    layer(np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="not divisible by 2"):
        layer(np.zeros((1, 5, 4, 3), "float32"))
    with pytest.raises(ValueError, match="built for 3 channels"):
        layer(np.zeros((1, 4, 4, 5), "float32"))
    with pytest.raises(ValueError, match="built for 12 channels"):
        layer.inverse(np.zeros((1, 2, 2, 8), "float32"))
    with pytest.raises(ValueError, match="spatial axis 2"):
        keras.Model(*(lambda i: (i, layers.WaveletPooling2D()(i)))(keras.Input((None, 5, 3))))


@pytest.mark.parametrize("rank", [1, 3])
def test_wide_orthogonal_pooling_uses_the_channelwise_path_correctly(rank):
    # Above ops.orthogonal.DENSE_CONV_MAX_CHANNELS the block transform is a squeeze
    # plus a per-channel einsum instead of one dense strided convolution.
    from keras_hyperbolic.ops.orthogonal import DENSE_CONV_MAX_CHANNELS

    channels = DENSE_CONV_MAX_CHANNELS + 5
    x = np.random.default_rng(12).standard_normal(SHAPES[rank][:-1] + (channels,))
    cls = FAMILIES["orthogonal"][0][rank]
    np.testing.assert_allclose(cls(init="haar", dtype="float64")(x).numpy(), pywt_reference(x, "haar"), atol=1e-12)
    layer = cls("cayley", init="random", dtype="float64")
    y = layer(x)
    coarse = tuple(y.shape[:-1])
    # Channel c of the output subbands only depends on input channel c.
    narrow = cls("cayley", init="random", dtype="float64")
    narrow.build(x[..., :3].shape)
    narrow.theta.assign(layer.theta[:3])
    np.testing.assert_allclose(
        narrow(x[..., :3]).numpy(),
        y.numpy().reshape(coarse + (2**rank, channels))[..., :3].reshape(coarse + (-1,)),
        atol=1e-12,
    )
    assert relative_error(layer.inverse(y), x) <= 1e-12


# --- ops.orthogonal.expm_skew: the XLA-compilable expm of the "expm" parametrization ---

def _random_skew(s, norm, count, seed):
    m = np.random.default_rng(seed).standard_normal((count, s, s))
    a = m - np.swapaxes(m, -1, -2)
    return a * (norm / np.linalg.norm(a, axis=(-2, -1), keepdims=True))


@pytest.mark.parametrize(
    "family,up,rank,kwargs,pair",
    [entry + (False,) for entry in BATTERY]
    + [("wavelet", 0, 3, {"wavelet": "haar"}, True), ("wavelet", 1, 2, {"wavelet": "learnable"}, True),
       ("orthogonal", 0, 2, {"parametrization": "expm", "init": "random"}, True)],
)
def test_engine_backward_matches_autodiff_float64(family, up, rank, kwargs, pair):
    # The engine's hook: without weights, dx = W^-1 dy (an orthogonal map's
    # transpose is its inverse); with weights, the generic rebuild and VJP.
    # `PairPooling` runs it on each half. Round-off only, in float64.
    layer = FAMILIES[family][up][rank](dtype="float64", **kwargs)
    shape = coarse_shape(SHAPES[rank]) if up else SHAPES[rank]
    if pair:
        layer = layers.PairPooling(layer, dtype="float64")
        shape = shape[:-1] + (2 * shape[-1],)
    x = np.random.default_rng(3).standard_normal(shape)
    assert_backward_matches_autodiff(layer, x, tolerance=1e-10)


@pytest.mark.parametrize("dtype, orth_tol, rel_tol", [("float32", 1e-6, 1e-6),
                                                      ("float64", 1e-12, 1e-12)])
@pytest.mark.parametrize("s", [2, 4, 8])
def test_expm_skew_is_orthogonal_and_matches_expm(dtype, orth_tol, rel_tol, s):
    import scipy.linalg
    from keras_hyperbolic.ops.orthogonal import expm_skew

    # Frobenius norms from 1e-6 to 50 (squaring counts 0 to 4). The reference is
    # scipy's float64 expm of the same (rounded) input: tf.linalg.expm is itself off
    # by up to 7e-6 (float32) and 6e-10 (float64) on 2x2 matrices of norm 50.
    for seed, norm in enumerate([1e-6, 0.1, 1.0, 3.0, 10.0, 50.0]):
        a = _random_skew(s, norm, 8, seed).astype(dtype)
        q = expm_skew(tf.constant(a))
        assert q.dtype == dtype
        q = q.numpy().astype(np.float64)
        orth = np.linalg.norm(np.swapaxes(q, -1, -2) @ q - np.eye(s), axis=(-2, -1))
        assert orth.max() <= orth_tol, (norm, orth.max())
        want = np.stack([scipy.linalg.expm(m) for m in a.astype(np.float64)])
        rel = np.linalg.norm(q - want, axis=(-2, -1)) / np.linalg.norm(want, axis=(-2, -1))
        assert rel.max() <= rel_tol, (norm, rel.max())


def test_expm_skew_stays_orthogonal_for_huge_norms():
    from keras_hyperbolic.ops.orthogonal import expm_skew

    # ||A||_F = 1e3 needs 8 of the 12 static squarings; still exact to float32.
    a = _random_skew(8, 1e3, 4, seed=7).astype("float32")
    q = expm_skew(tf.constant(a)).numpy().astype(np.float64)
    assert np.abs(np.swapaxes(q, -1, -2) @ q - np.eye(8)).max() <= 1e-6


def test_expm_orthogonal_gradient_compiles_under_xla_and_matches_tf_expm():
    from keras_hyperbolic.ops.orthogonal import expm_orthogonal

    rng = np.random.default_rng(3)
    theta = tf.Variable(2.0 * rng.standard_normal((3, 8, 8)))  # float64, ||skew|| ~ 30
    weights = tf.constant(rng.standard_normal((3, 8, 8)))

    def gradient(orthogonal):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(weights * orthogonal(theta))
        return tape.gradient(loss, theta)

    want = gradient(lambda t: tf.linalg.expm(t - tf.linalg.matrix_transpose(t))).numpy()
    got = tf.function(lambda: gradient(expm_orthogonal), jit_compile=True)().numpy()
    assert np.abs(want).max() > 1.0
    assert relative_error(got, want) <= 1e-10
