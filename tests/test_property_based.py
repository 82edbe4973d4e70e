"""Property-based fuzzing (Hypothesis) of every public layer and model.

Random ranks, shapes (odd sizes, wrong tensor ranks, zero-size axes), dtypes, constructor
arguments, and NaN/inf values. Each call must either return a correct result (right shape,
finite for finite input, `inverse(call(x)) == x` where the layer is invertible) or raise
`ValueError`/`TypeError` with a message; any other exception type fails the property.
A NaN/inf in one sample must not leak into the other samples of the batch (inference mode).

Fixed budget and seed: `derandomize=True` (examples derived from the test's source, so CI
always tries the same cases), `max_examples` 15-30 per property, no deadline.

NaN/inf behaviour (documented here and in docs/guides/scale-and-reliability.md): nothing in the package
checks for or replaces non-finite values. They propagate through every layer into the output of
their own sample (a circular/FFT convolution spreads one NaN over the whole sample), and in
inference mode they never reach other samples of the batch. In training mode, batch
normalisation mixes samples, so one NaN sample makes the whole batch NaN (layer/instance norm
do not). Detecting them is the job of `keras.callbacks.TerminateOnNaN` / `InversionMonitor`.

Closing note (the fixed budget, run with `pytest -v tests/test_property_based.py`, which prints
the counts and every distinct error message): 5 properties x 30 examples = 150 examples, 153
checked calls (78 returned a result that passed its checks - shape, finiteness, round trip to
1e-4 (float32) / 1e-9 (float64), NaN containment - and 75 raised ValueError/TypeError with a
message). No crash with another exception type, no hang, no wrong round trip, no NaN leaking
between samples. Weak spots seen in the messages (allowed types, but not the package's
"argument + value" style): HyperbolicSegmenter.call does not check its input, so a wrong channel
count surfaces as Keras's "Input 0 ... of layer 'opening' is incompatible" and an int32 input
as "Incompatible type conversion requested to type int32 for tf.Variable ... opening/kernel";
HyperbolicVAE/ConvFlow given int32 data raise "Tensor conversion requested dtype float32 for
Tensor with dtype int32" instead of naming `x`.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_hyperbolic import layers as khl
from keras_hyperbolic.models import (
    BaselineUNet,
    ConvFlow,
    HyperbolicSegmenter,
    HyperbolicVAE,
    InvertibleUNet,
    IRevNet,
)
from keras_hyperbolic.reversible import ReversibleSequence

FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
ALLOWED = (ValueError, TypeError)
_REPORT = {"cases": 0, "raised_value_or_type_error": 0, "returned": 0}
_ERRORS = []  # (error type, first line of the message) of every allowed error


@pytest.fixture(scope="module", autouse=True)
def _closing_note(request):
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    lines = [f"property-based suite: {_REPORT['cases']} cases tried, "
             f"{_REPORT['returned']} returned a checked result, "
             f"{_REPORT['raised_value_or_type_error']} raised ValueError/TypeError with a message"]
    if request.config.getoption("verbose") > 0:
        lines += [f"  {kind}: {message}" for kind, message in sorted(set(_ERRORS))]
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(lines))


def _count(outcome):
    _REPORT["cases"] += 1
    _REPORT[outcome] += 1


def _call_or_raise(fn):
    """Runs `fn`; returns its result, or None after an allowed error with a message."""
    try:
        result = fn()
    except ALLOWED as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        # Keras wraps errors raised inside call(): keep the wrapped message too.
        _ERRORS.append((type(error).__name__, " | ".join(lines[:2])[:220]))
        _count("raised_value_or_type_error")
        return None
    _count("returned")
    return result


# === The public invertible layers: name -> (make(rank, channels, dtype), needs even C, pooled) ===

def _pair_pool(rank, dtype):
    return khl.PairPooling(getattr(khl, f"WaveletPooling{rank}D")(wavelet="haar"), dtype=dtype)


INVERTIBLE = {
    "AdditiveCoupling": (lambda r, d: khl.AdditiveCoupling(rank=r, hidden_channels=4,
                                                          normalization="layer", dtype=d), True),
    "AffineCoupling": (lambda r, d: khl.AffineCoupling(rank=r, hidden_channels=4,
                                                      normalization="layer", dtype=d), True),
    "HyperbolicBlock": (lambda r, d: khl.HyperbolicBlock(rank=r, hidden_channels=4, h=0.3,
                                                        dtype=d), True),
    "InvertibleConv": (lambda r, d: getattr(khl, f"InvertibleConv{r}D")(dtype=d), False),
    "Invertible1x1Conv": (lambda r, d: khl.Invertible1x1Conv(seed=1, dtype=d), False),
    "SneakyReLU": (lambda r, d: khl.SneakyReLU(slope=0.3, dtype=d), False),
    "WaveletPooling_haar": (lambda r, d: getattr(khl, f"WaveletPooling{r}D")(dtype=d), False),
    "WaveletPooling_db2": (lambda r, d: getattr(khl, f"WaveletPooling{r}D")(wavelet="db2",
                                                                          dtype=d), False),
    "WaveletPooling_learnable": (lambda r, d: getattr(khl, f"WaveletPooling{r}D")(
        wavelet="learnable", dtype=d), False),
    "OrthogonalPooling_expm": (lambda r, d: getattr(khl, f"OrthogonalPooling{r}D")(dtype=d),
                               False),
    "OrthogonalPooling_cayley": (lambda r, d: getattr(khl, f"OrthogonalPooling{r}D")(
        parametrization="cayley", dtype=d), False),
    "PixelShufflePooling": (lambda r, d: getattr(khl, f"PixelShufflePooling{r}D")(dtype=d),
                            False),
    "PairPooling": (lambda r, d: _pair_pool(r, d), True),
    "ReversibleSequence": (lambda r, d: ReversibleSequence(
        [khl.AdditiveCoupling(rank=r, hidden_channels=4, normalization="layer", dtype=d),
         getattr(khl, f"WaveletPooling{r}D")(dtype=d)], dtype=d), True),
}
UNPOOLING = {
    "WaveletUnpooling": lambda r, d: getattr(khl, f"WaveletUnpooling{r}D")(dtype=d),
    "OrthogonalUnpooling": lambda r, d: getattr(khl, f"OrthogonalUnpooling{r}D")(dtype=d),
    "PixelShuffleUnpooling": lambda r, d: getattr(khl, f"PixelShuffleUnpooling{r}D")(dtype=d),
}
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}


def _perturb(layer, scale=0.1):
    rng = np.random.default_rng(0)
    for v in layer.trainable_variables:
        v.assign(v.numpy() + scale * rng.standard_normal(v.shape).astype(v.dtype))


@st.composite
def valid_case(draw, names=sorted(INVERTIBLE)):
    name = draw(st.sampled_from(names))
    rank = draw(st.integers(1, 3))
    even = INVERTIBLE[name][1]
    channels = draw(st.sampled_from([2, 4] if even else [1, 2, 3, 4]))
    max_size = {1: 8, 2: 6, 3: 4}[rank]
    spatial = tuple(draw(st.sampled_from([s for s in (2, 4, 6, 8) if s <= max_size]))
                    for _ in range(rank))
    batch = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return name, rank, (batch,) + spatial + (channels,), dtype


@FUZZ
@given(valid_case(), st.integers(0, 2**31 - 1))
def test_invertible_layers_round_trip_on_random_valid_inputs(case, seed):
    name, rank, shape, dtype = case
    layer = INVERTIBLE[name][0](rank, dtype)
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    y = _call_or_raise(lambda: layer(x))
    if y is None:
        return
    _perturb(layer)
    y = layer(x)
    assert tuple(y.shape) == tuple(layer.compute_output_shape(shape))
    assert np.isfinite(y).all()
    rebuilt = layer.inverse(y)
    error = np.linalg.norm(rebuilt - x) / np.linalg.norm(x)
    assert error <= TOLERANCE[dtype], (name, shape, dtype, error)


@st.composite
def random_shape(draw, rank):
    """Half the time the right tensor rank (odd, zero or small sizes), else any rank."""
    if draw(st.booleans()):
        return draw(st.lists(st.integers(0, 7), min_size=rank + 2, max_size=rank + 2))
    return draw(st.lists(st.integers(0, 7), min_size=1, max_size=6))


@FUZZ
@given(st.sampled_from(sorted(INVERTIBLE) + sorted(UNPOOLING)), st.integers(1, 3), st.data(),
       st.sampled_from(["float32", "float64", "float16", "int32", "bool"]))
def test_layers_on_random_shapes_and_dtypes_work_or_raise(name, rank, data, dtype):
    shape = data.draw(random_shape(rank), label="shape")
    make = INVERTIBLE[name][0] if name in INVERTIBLE else UNPOOLING[name]
    layer = make(rank, "float32")
    x = np.ones(shape, dtype=dtype)
    y = _call_or_raise(lambda: layer(x))
    if y is not None:
        expected = tuple(layer.compute_output_shape(tuple(shape)))
        assert tuple(y.shape) == expected, (name, shape, dtype)
        rebuilt = _call_or_raise(lambda: layer.inverse(y))
        if rebuilt is not None and x.size and dtype in ("float32", "float64"):
            np.testing.assert_allclose(np.asarray(rebuilt, dtype="float64"),
                                       x.astype("float64"), atol=1e-3)


@FUZZ
@given(valid_case(), st.sampled_from([math.nan, math.inf, -math.inf]), st.data())
def test_nan_and_inf_stay_in_their_sample(case, bad, data):
    name, rank, shape, dtype = case
    shape = (2,) + shape[1:]
    layer = INVERTIBLE[name][0](rank, dtype)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    index = tuple(data.draw(st.integers(0, s - 1)) for s in shape[1:])
    x[(0,) + index] = bad
    y = _call_or_raise(lambda: layer(x))  # inference mode
    if y is None:
        return
    clean = layer(x[1:])
    # Non-finite values propagate (nothing checks or replaces them) ...
    assert not np.isfinite(y[0]).all() or name in ("SneakyReLU",) and np.isinf(bad)
    # ... but only within their own sample.
    np.testing.assert_allclose(y[1:], clean, rtol=1e-5, atol=1e-6)


# === Constructor arguments ===

_ANY = st.one_of(st.none(), st.booleans(), st.integers(-3, 9),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                 st.lists(st.integers(-1, 3), max_size=3))

CONSTRUCTORS = {
    "AdditiveCoupling": (khl.AdditiveCoupling, ["rank", "hidden_channels", "kernel_size",
                                                "normalization", "init_scale"]),
    "AffineCoupling": (khl.AffineCoupling, ["rank", "hidden_channels", "kernel_size",
                                            "scale_bound"]),
    "HyperbolicBlock": (khl.HyperbolicBlock, ["rank", "kernel_size", "h", "hidden_channels",
                                              "normalization"]),
    "InvertibleConv2D": (khl.InvertibleConv2D, ["kernel_size", "init_noise", "seed"]),
    "Invertible1x1Conv": (khl.Invertible1x1Conv, ["seed"]),
    "SneakyReLU": (khl.SneakyReLU, ["slope"]),
    "WaveletPooling2D": (khl.WaveletPooling2D, ["wavelet", "init"]),
    "OrthogonalPooling2D": (khl.OrthogonalPooling2D, ["parametrization", "init"]),
    "HyperbolicSegmenter": (HyperbolicSegmenter, ["num_classes", "rank", "width", "h",
                                                  "pooling", "units"]),
    "InvertibleUNet": (InvertibleUNet, ["rank", "channels", "levels", "blocks_per_level",
                                        "split_fraction"]),
    "IRevNet": (IRevNet, ["num_classes", "input_shape", "stages"]),
    "HyperbolicVAE": (HyperbolicVAE, ["input_shape", "levels", "depth", "alpha", "latent_dim"]),
    "ConvFlow": (ConvFlow, ["input_shape", "levels", "depth", "kernel_size", "num_bins"]),
    "BaselineUNet": (BaselineUNet, ["num_classes", "rank", "filters", "levels"]),
}


@settings(FUZZ, max_examples=30)
@given(st.sampled_from(sorted(CONSTRUCTORS)), st.data())
def test_constructors_accept_or_raise_on_random_arguments(name, data):
    cls, arguments = CONSTRUCTORS[name]
    chosen = data.draw(st.lists(st.sampled_from(arguments), min_size=1, max_size=2, unique=True))
    kwargs = {arg: data.draw(_ANY, label=arg) for arg in chosen}
    # Required arguments nobody drew get a valid value.
    defaults = {"rank": 2, "num_classes": 2, "channels": 4, "levels": 1,
                "input_shape": (8, 8, 1), "width": 4,
                "units": [(1, "down"), (1, "up")]}
    for arg in ("rank", "num_classes", "channels", "levels", "input_shape"):
        if arg in arguments and arg not in kwargs and not (
                name in ("IRevNet",) and arg == "levels"):
            kwargs[arg] = defaults[arg]
    if name == "HyperbolicSegmenter":
        kwargs.setdefault("units", defaults["units"])
    _call_or_raise(lambda: cls(**kwargs))


# === Whole models: built once, fed random shapes, dtypes and NaN ===

@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    return {
        "HyperbolicSegmenter": (HyperbolicSegmenter(num_classes=2, rank=2, width=4, h=0.3,
                                                    units=[(1, "down"), (1, "up")]), (4, 4, 3)),
        "InvertibleUNet": (InvertibleUNet(rank=2, channels=4, levels=2, blocks_per_level=1),
                           (4, 4, 4)),
        "IRevNet": (IRevNet(num_classes=3, input_shape=(4, 4, 1), stages=(1,),
                            normalization="layer"), (4, 4, 1)),
        "HyperbolicVAE": (HyperbolicVAE((4, 4, 1), levels=1, depth=1, gaussianity="none"),
                          (4, 4, 1)),
        "ConvFlow": (ConvFlow((4, 4, 1), levels=1, depth=1, num_bins=17), (4, 4, 1)),
        "BaselineUNet": (BaselineUNet(num_classes=2, rank=2, filters=2, levels=1), (4, 4, 3)),
    }


@settings(FUZZ, max_examples=30)
@given(st.sampled_from(["HyperbolicSegmenter", "InvertibleUNet", "IRevNet", "HyperbolicVAE",
                        "ConvFlow", "BaselineUNet"]),
       st.one_of(st.none(), st.lists(st.integers(0, 9), min_size=1, max_size=5)),
       st.sampled_from(["float32", "float64", "int32"]),
       st.sampled_from([None, math.nan, math.inf]))
def test_models_on_random_inputs_work_or_raise(models, name, shape, dtype, bad):
    model, valid_shape = models[name]
    shape = (2,) + valid_shape if shape is None else tuple(shape)
    x = np.random.default_rng(0).random(shape).astype(dtype)
    if bad is not None and x.size and dtype != "int32":
        x.flat[0] = bad
    y = _call_or_raise(lambda: model(x))
    if y is None:
        return
    y = np.asarray(y)
    assert y.shape[0] == shape[0]
    if shape[0] > 1:
        # Sample 1 onwards are finite inputs: finite outputs (non-finite stays in sample 0).
        assert np.isfinite(y[1:]).all(), name
