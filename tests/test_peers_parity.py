"""Parity with the PyTorch peers on one set of weights: memcnn, revlib and iunets' pieces.

The networks come from `benchmarks/peer_networks.py`, the ones
`benchmarks/peers.py` times. The peers are optional (`pip install -e ".[peers]"`);
without them every test here is skipped with the reason. All comparisons run
in float64, where both frameworks agree to round-off (measured: 2e-15
relative at most), checked at 1e-10 as the engine's own float64 tests.
"""

import importlib.util
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

torch = pytest.importorskip("torch", reason="the PyTorch peers are optional: pip install -e '.[peers]'")

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "peer_networks.py"
_SPEC = importlib.util.spec_from_file_location("peer_networks", _PATH)
pn = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(pn)

RTOL = 1e-10
PEER_OF = {"additive": "memcnn", "affine": "memcnn", "revlib": "revlib"}


def relative_error(reference, candidate):
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    assert reference.shape == candidate.shape
    return np.linalg.norm(reference - candidate) / (np.linalg.norm(reference) + 1e-300)


def assert_all_close(named_pairs, rtol=RTOL):
    for name, reference, candidate in named_pairs:
        error = relative_error(reference, candidate)
        assert error <= rtol, f"{name}: relative error {error:.3g} > {rtol}"


def _loss_weights(shape):
    return np.random.default_rng(5).standard_normal(shape)


def keras_outputs_and_gradients(layer, x, variables, loss_weights=None):
    """`layer(x)` and the gradients of `sum(w * y)` for `x` and `variables` (float64).

    `loss_weights`: `w` (default: drawn for `y`'s shape).
    """
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        w = _loss_weights(y.shape) if loss_weights is None else loss_weights
        loss = tf.reduce_sum(y * w)
    gradients = tape.gradient(loss, [x] + list(variables))
    return y.numpy(), [g.numpy() for g in gradients]


def torch_outputs_and_gradients(module, x, parameters, loss_weights=None):
    """The same for a torch module; `x`, `y` and `w` channels last here, channels first inside."""
    leaf = torch.tensor(pn.to_torch_layout(x).copy(), requires_grad=True)
    # Through one op: memcnn sets `.grad` on its inputs by hand, which a leaf would add twice.
    y = module(leaf * 1.0)
    y_last = pn.from_torch_layout(y.detach().numpy())
    w = _loss_weights(y_last.shape) if loss_weights is None else loss_weights
    (y * torch.tensor(pn.to_torch_layout(w).copy())).sum().backward()
    return y_last, [pn.from_torch_layout(leaf.grad.numpy())] + [p.grad.numpy() for p in parameters]


def _to_keras_layout(gradient, variable):
    return gradient if len(variable.shape) < 3 else np.transpose(
        gradient, tuple(range(2, gradient.ndim)) + (1, 0))  # (out, in, *taps) -> (*taps, in, out)


@pytest.mark.parametrize("saving", [True, False], ids=["memory_saving", "plain"])
@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("kind", ["additive", "affine", "revlib"])
def test_coupling_stack_equals_the_peer(kind, rank, saving):
    """Ours (memory-efficient or plain) equals memcnn's / revlib's stack (saving on or off)."""
    pytest.importorskip(PEER_OF[kind])
    spec = {"kind": kind, "rank": rank, "depth": 3, "shape": (2,) + (6,) * (rank - 1) + (8, 8),
            "dtype": "float64"}
    weights = pn.coupling_weights(spec, seed=3)
    ours = pn.keras_network(spec, memory_efficient=saving, weights=weights)
    peer = pn.torch_network(spec, memory_saving=saving, weights=weights)
    pairs = pn.paired_parameters(ours, peer, kind)
    assert len(pairs) == 4 * 2 * spec["depth"]
    x = np.random.default_rng(4).standard_normal(spec["shape"])
    y, grads = keras_outputs_and_gradients(ours, x, [v for v, _ in pairs])
    y_peer, grads_peer = torch_outputs_and_gradients(peer, x, [p for _, p in pairs])
    assert relative_error(y, x) > 1e-2  # the stack does something
    checks = [("output", y_peer, y), ("input gradient", grads_peer[0], grads[0])]
    checks += [(f"gradient of {v.path}", _to_keras_layout(gp, v), g)
               for (v, _), g, gp in zip(pairs, grads[1:], grads_peer[1:])]
    assert_all_close(checks)


# === iunets ===


def peer_to_ours(y, rank):
    """iunets' pooled channel order `c * s + t` -> ours `t * C + c` (`s = 2**rank` subbands)."""
    s = 2**rank
    return y.reshape(y.shape[:-1] + (-1, s)).swapaxes(-1, -2).reshape(y.shape)


def ours_to_peer(y, rank):
    s = 2**rank
    return y.reshape(y.shape[:-1] + (s, -1)).swapaxes(-1, -2).reshape(y.shape)


def _poolings(rank, channels, theta, up):
    from iunets import layers as iunets_layers

    from keras_hyperbolic import layers

    s = 2**rank
    kind = "Unpooling" if up else "Pooling"
    # init="squeeze": no fixed sign diagonal, so the matrix is expm(theta - theta^T), as iunets'.
    ours = getattr(layers, f"Orthogonal{kind}{rank}D")(parametrization="expm", init="squeeze",
                                                          dtype="float64")
    peer_class = getattr(iunets_layers, f"Invertible{'Upsampling' if up else 'Downsampling'}{rank}D")
    peer = peer_class(channels * s if up else channels, method="exp",
                      init=torch.tensor(theta)).double()
    return ours, peer


@pytest.mark.parametrize("rank", [2, 3])
def test_orthogonal_pooling_equals_iunets(rank):
    """`OrthogonalPooling`/`Unpooling` (expm) equal iunets' learnable resampling, with gradients.

    Same maps up to the order of the pooled channels (iunets: per input channel,
    ours: per subband). Each `theta - theta^T` has 1-norm 3: the one band
    where iunets' float64 expm gradient is right (its Pade order 13 without
    squaring, 1-norms 1.78 to 4.74). Outside it iunets' gradient of `theta`
    is wrong: measured against central finite differences of scipy's expm,
    0.33 relative error at 1-norm 0.05 and 1.2 at 11.5 (8 x 8), while ours
    is within 3e-9 at every norm; in float32 its orders 3-7 are always off
    (0.44 at the 3D Haar start).
    """
    pytest.importorskip("iunets")
    channels, s, rng = 3, 2**rank, np.random.default_rng(6)
    theta = rng.standard_normal((channels, s, s))
    theta *= 3.0 / np.abs(theta - theta.swapaxes(1, 2)).sum(axis=1).max(axis=1)[:, None, None]
    # Down: x (C channels) -> y (s*C); up: z (s*C) -> x.
    for up, shape in ((False, (2,) + (4,) * rank + (channels,)),
                      (True, (2,) + (2,) * rank + (s * channels,))):
        ours, peer = _poolings(rank, channels, theta, up)
        ours.build(shape)
        ours.theta.assign(theta)
        x = rng.standard_normal(shape)
        w = rng.standard_normal(ours.compute_output_shape(shape))
        y, grads = keras_outputs_and_gradients(ours, x, [ours.theta], w)
        if up:
            y_peer, grads_peer = torch_outputs_and_gradients(peer, ours_to_peer(x, rank),
                                                             [peer.weight], w)
            grads_peer[0] = peer_to_ours(grads_peer[0], rank)
        else:
            y_peer, grads_peer = torch_outputs_and_gradients(peer, x, [peer.weight],
                                                             ours_to_peer(w, rank))
            y_peer = peer_to_ours(y_peer, rank)
        assert_all_close([("output", y_peer, y), ("input gradient", grads_peer[0], grads[0]),
                          ("theta gradient", grads_peer[1], grads[1])])


class StandardBlock(keras.layers.Layer):
    """iunets' default coupling function in Keras: conv3x3 (no bias) - leaky ReLU - layer norm."""

    def __init__(self, rank, channels, **kwargs):
        super().__init__(dtype="float64", **kwargs)
        conv = [keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D][rank - 1]
        self.conv = conv(channels, 3, padding="same", use_bias=False, dtype="float64")
        self.norm = keras.layers.GroupNormalization(groups=1, epsilon=1e-3, dtype="float64")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build(tuple(input_shape[:-1]) + (self.conv.filters,))

    def call(self, x):
        h = self.conv(x)
        # Written out: TensorFlow's LeakyRelu holds its slope as a float32 attribute (0.01 -> 2e-10 off).
        return self.norm(tf.where(h > 0, h, 0.01 * h))  # torch's default slope


@pytest.mark.parametrize("memory_efficient", [True, False])
@pytest.mark.parametrize("rank", [2, 3])
def test_additive_coupling_equals_two_iunets_couplings(rank, memory_efficient):
    """Two iunets couplings `[x1 | x2] -> [x2 | x1 + F(x2)]` are our `AdditiveCoupling(f, g)`."""
    iunets_layers = pytest.importorskip("iunets.layers")
    from keras_hyperbolic import layers
    from keras_hyperbolic.reversible import ReversibleSequence

    channels, rng = 8, np.random.default_rng(8)
    half = channels // 2
    shape = (2,) + (6,) * rank + (channels,)
    peer = torch.nn.Sequential(*[
        iunets_layers.create_standard_module(channels, dim=rank, module_index=j) for j in range(2)
    ]).double()
    f, g = StandardBlock(rank, half), StandardBlock(rank, half)
    ours = ReversibleSequence([layers.AdditiveCoupling(rank, f=f, g=g, dtype="float64")],
                              memory_efficient=memory_efficient, dtype="float64")
    ours.build(shape)
    pairs = []
    for function, coupling in zip((f, g), peer):
        conv, norm = function.conv, function.norm
        torch_conv, torch_norm = coupling.F.seq[0], coupling.F.seq[2]
        values = [rng.standard_normal(conv.kernel.shape) * 0.3, 1 + 0.1 * rng.standard_normal(half),
                  0.1 * rng.standard_normal(half)]  # iunets starts the norm at zero: not here
        with torch.no_grad():
            for variable, parameter, value in zip(
                (conv.kernel, norm.gamma, norm.beta),
                (torch_conv.weight, torch_norm.weight, torch_norm.bias), values,
            ):
                variable.assign(value)
                parameter.copy_(torch.tensor(pn.kernel_to_torch(value) if value.ndim > 1 else value))
                pairs.append((variable, parameter))
    x = rng.standard_normal(shape)
    y, grads = keras_outputs_and_gradients(ours, x, [v for v, _ in pairs])
    y_peer, grads_peer = torch_outputs_and_gradients(peer, x, [p for _, p in pairs])
    checks = [("output", y_peer, y), ("input gradient", grads_peer[0], grads[0])]
    checks += [(f"gradient of {v.path}", _to_keras_layout(gp, v), g)
               for (v, _), g, gp in zip(pairs, grads[1:], grads_peer[1:])]
    assert_all_close(checks)


@pytest.mark.parametrize("levels", [2, 3])
def test_iunet_matches_iunets_in_parameters_and_starts_as_the_identity(levels):
    """The benchmark's two iUNets: as many parameters, and both the identity at initialisation.

    Not equal as functions beyond that: iunets splits off the skip channels
    first and orders pooled channels per input channel, ours the other way.
    """
    pytest.importorskip("iunets")
    spec = {"kind": "iunet", "rank": 3, "depth": 1, "levels": levels, "shape": (1, 8, 8, 8, 16)}
    ours = pn.keras_network(spec, memory_efficient=True)
    peer = pn.torch_network(spec, memory_saving=True)
    assert (sum(int(np.prod(v.shape)) for v in ours.trainable_variables)
            == sum(p.numel() for p in peer.parameters() if p.requires_grad))
    x = np.random.default_rng(9).standard_normal(spec["shape"]).astype("float32")
    y = ours(tf.constant(x)).numpy()
    with torch.no_grad():
        y_peer = pn.from_torch_layout(peer(torch.tensor(pn.to_torch_layout(x).copy())).numpy())
    # float32 (our InvertibleUNet computes in float32): the orthogonal poolings' round-off.
    assert relative_error(x, y) < 1e-6
    assert relative_error(x, y_peer) < 1e-6
