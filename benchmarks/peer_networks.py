"""The same networks in keras_hyperbolic and in its PyTorch peers (memcnn, iunets, revlib).

Shared by `benchmarks/peers.py` (each side built alone, in its own process)
and `tests/test_peers_parity.py` (both sides in one process, on one set of
weights). Neither framework is imported at module level: a torch worker never
loads TensorFlow and the other way round.

A *spec* is a dict: `kind`, `rank`, `depth`, `shape` (channels last,
`(batch, *spatial, channels)`), for "iunet" also `levels`; `dtype` optional
("float32"; our `InvertibleUNet` computes in float32 whatever it is given).

- "additive": memcnn's `AdditiveCoupling(F, G)` blocks, each in memcnn's
  `InvertibleModuleWrapper` (memory saving) or with `disable=True` (plain
  autograd), against a `ReversibleSequence` of `AdditiveCoupling`s
  (normalisation "none"): `y1 = x1 + F(x2)`, `y2 = x2 + G(y1)` in both.
- "affine": memcnn's `AffineCoupling(F, G)` updates both halves,
  `y1 = x1 s(x2) + t(x2)`, `y2 = x2 s'(y1) + t'(y1)`; our `AffineCoupling`
  updates one half, so one memcnn block is `AffineCoupling(F,
  updated_half="first")`, `AffineCoupling(G)` here. The adapter
  `ScaleShift` gives memcnn our scale `exp(2 tanh(raw / 2))` from F's
  `[raw | t]` outputs.
- "revlib": revlib's `ReversibleSequential(F1, G1, ..., Fn, Gn)`: each module
  maps `(x0, x1)` to `(x1, x0 + m(x1))`, so two modules are one additive
  coupling and the network is the function of "additive".
  In all three, F and G are conv3x3 - ReLU - conv3x3 with biases, one half's
  channels in and hidden (twice that out for "affine"), no normalisation;
  the weights are `coupling_weights`' (He normal, the last convolution
  scaled by 0.1, our `ResidualFunction`'s default scale), loaded into both.
- "iunet": iunets' `iUNet(dim=rank, architecture=[2 * depth] * levels,
  resampling_method="exp")` against `InvertibleUNet(rank, channels, levels,
  blocks_per_level=depth)`: two iunets couplings `[x1 | x2] -> [x2 | x1 + F(x2)]`
  are one of our additive couplings; the coupling function is ours in both
  (conv3x3 without bias - layer norm - ReLU - conv3x3 initialised at zero);
  learnable orthogonal pooling (expm) starting at Haar; split fraction 1/4 in
  3D (iunets' `slice_mode="double"`). What differs: iunets' invertible channel
  mixing is switched off (ours has none), iunets splits off the skip channels
  first and orders the pooled channels per input channel (ours: the
  down-going channels first, pooled channels per subband), iunets stores its
  poolings' inputs (its learnable resampling is never memory-saved), and each
  side draws its own weights (same distributions).
"""

import functools
import types

import numpy as np

KINDS = ("additive", "affine", "revlib", "iunet")
#: Bound of the affine couplings' log-scale (our `AffineCoupling`'s default).
SCALE_BOUND = 2.0
#: Scale of the last convolution of F and G (our `ResidualFunction`'s `init_scale`).
LAST_CONV_SCALE = 0.1


def _check_spec(spec):
    if spec.get("kind") not in KINDS:
        raise ValueError(f"Invalid value for argument `spec`: `kind` must be one of {KINDS}. "
                         f"Received: kind={spec.get('kind')!r}")
    shape = tuple(spec["shape"])
    if len(shape) != spec["rank"] + 2 or shape[-1] % 2:
        raise ValueError("Invalid value for argument `spec`: `shape` must be (batch, *spatial, "
                         f"channels) with rank {spec['rank']} and even channels. "
                         f"Received: shape={shape}")
    return shape


# === Weights ===


def _he_kernel(rng, rank, c_in, c_out, scale=1.0):
    fan_in = 3**rank * c_in
    return rng.standard_normal((3,) * rank + (c_in, c_out)) * np.sqrt(2.0 / fan_in) * scale


def coupling_weights(spec, seed=0):
    """F's and G's weights of every block, in Keras layout, float64.

    Returns a list (one entry per block) of `{"f": [k1, b1, k2, b2], "g": [...]}`
    with kernels `(3,)*rank + (in, out)`. Biases start at zero in both
    frameworks' defaults, so they are drawn small here, to be checked too.
    """
    shape = _check_spec(spec)
    if spec["kind"] == "iunet":
        raise ValueError("Invalid value for argument `spec`: the iUNet's weights are each side's own")
    rng = np.random.default_rng(seed)
    half, rank = shape[-1] // 2, spec["rank"]
    out = 2 * half if spec["kind"] == "affine" else half

    def function():
        return [_he_kernel(rng, rank, half, half), 0.01 * rng.standard_normal(half),
                _he_kernel(rng, rank, half, out, LAST_CONV_SCALE), 0.01 * rng.standard_normal(out)]

    return [{"f": function(), "g": function()} for _ in range(spec["depth"])]


# === keras_hyperbolic ===


def _coupling_functions(block):
    """Our block's F and G `ResidualFunction`s (G None for an affine block)."""
    return (block.network, None) if hasattr(block, "network") else (block.f, block.g)


def _assign_function(function, weights):
    for variable, value in zip(
        (function.conv1.kernel, function.conv1.bias, function.conv2.kernel, function.conv2.bias),
        weights,
    ):
        variable.assign(np.asarray(value, dtype=variable.dtype))


def coupling_blocks(sequence):
    """The coupling blocks of one of our stacks, in order."""
    return list(sequence.blocks)


def keras_network(spec, memory_efficient, weights=None):
    """Our network of `spec`, built for `spec["shape"]`; `weights` from `coupling_weights`."""
    from keras_hyperbolic import layers
    from keras_hyperbolic.models import InvertibleUNet
    from keras_hyperbolic.reversible import ReversibleSequence

    shape = _check_spec(spec)
    rank, dtype = spec["rank"], spec.get("dtype", "float32")
    if spec["kind"] == "iunet":
        network = InvertibleUNet(rank=rank, channels=shape[-1], levels=spec["levels"],
                                 blocks_per_level=spec["depth"], normalization="layer",
                                 parametrization="expm", memory_efficient=memory_efficient)
        network.build(shape)
        return network
    blocks = []
    for _ in range(spec["depth"]):
        if spec["kind"] == "affine":
            blocks += [layers.AffineCoupling(rank, scale_bound=SCALE_BOUND, updated_half=half,
                                             normalization="none", dtype=dtype)
                       for half in ("first", "second")]
        else:
            blocks.append(layers.AdditiveCoupling(rank, normalization="none", dtype=dtype))
    network = ReversibleSequence(blocks, memory_efficient=memory_efficient, dtype=dtype)
    network.build(shape)
    if weights is not None:
        functions = [f for block in coupling_blocks(network) for f in _coupling_functions(block)
                     if f is not None]
        values = [w for block in weights for w in (block["f"], block["g"])]
        for function, value in zip(functions, values, strict=True):
            _assign_function(function, value)
    return network


# === The PyTorch peers ===


@functools.lru_cache(maxsize=None)
def _torch_modules():
    import torch
    from torch import nn

    def conv(rank, c_in, c_out, bias=True):
        return [nn.Conv1d, nn.Conv2d, nn.Conv3d][rank - 1](c_in, c_out, 3, padding=1, bias=bias)

    class ConvReluConv(nn.Module):
        """F and G of the coupling stacks: conv3x3 - ReLU - conv3x3."""

        def __init__(self, rank, c_in, c_out):
            super().__init__()
            self.conv1, self.conv2 = conv(rank, c_in, c_in), conv(rank, c_in, c_out)

        def forward(self, x):
            return self.conv2(torch.relu(self.conv1(x)))

    class ConvNormReluConv(nn.Module):
        """Our iUNet's coupling function: conv3x3 (no bias) - layer norm - ReLU - conv3x3 (zero)."""

        def __init__(self, rank, channels):
            super().__init__()
            self.conv1 = conv(rank, channels, channels, bias=False)
            self.norm = nn.GroupNorm(1, channels, eps=1e-3)  # Keras GroupNormalization's epsilon
            self.conv2 = conv(rank, channels, channels)
            nn.init.kaiming_normal_(self.conv1.weight, nonlinearity="relu")  # He normal
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

        def forward(self, x):
            return self.conv2(torch.relu(self.norm(self.conv1(x))))

    class ScaleShift(nn.Module):
        """memcnn affine adapter: F's `[raw | t]` -> `(exp(b tanh(raw / b)), t)`, as ours."""

        def __init__(self, module):
            super().__init__()
            self.f = module

        def forward(self, x):
            raw, shift = torch.chunk(self.f(x), 2, dim=1)
            return torch.exp(SCALE_BOUND * torch.tanh(raw / SCALE_BOUND)), shift

    return types.SimpleNamespace(torch=torch, nn=nn, ConvReluConv=ConvReluConv,
                                 ConvNormReluConv=ConvNormReluConv, ScaleShift=ScaleShift)


def _torch_function(rank, weights, dtype):
    t = _torch_modules()
    k1, b1, k2, b2 = weights
    module = t.ConvReluConv(rank, k1.shape[-2], k2.shape[-1]).to(dtype)
    with t.torch.no_grad():
        for parameter, value in zip(
            (module.conv1.weight, module.conv1.bias, module.conv2.weight, module.conv2.bias),
            (kernel_to_torch(k1), b1, kernel_to_torch(k2), b2),
        ):
            parameter.copy_(t.torch.as_tensor(np.ascontiguousarray(value), dtype=dtype))
    return module


def kernel_to_torch(kernel):
    """A Keras conv kernel `(*taps, in, out)` in torch's layout `(out, in, *taps)`."""
    rank = kernel.ndim - 2
    return np.transpose(kernel, (rank + 1, rank) + tuple(range(rank)))


def to_torch_layout(x):
    """`(batch, *spatial, channels)` -> `(batch, channels, *spatial)`."""
    return np.moveaxis(np.asarray(x), -1, 1)


def from_torch_layout(x):
    return np.moveaxis(np.asarray(x), 1, -1)


def torch_network(spec, memory_saving, weights=None):
    """The peer's network of `spec` (memcnn, revlib or iunets), memory saving on or off."""
    shape = _check_spec(spec)
    t = _torch_modules()
    torch, nn, rank = t.torch, t.nn, spec["rank"]
    dtype = getattr(torch, spec.get("dtype", "float32"))
    if spec["kind"] == "iunet":
        return _iunet(spec, shape, memory_saving).to(dtype)
    if weights is None:
        raise ValueError("Invalid value for argument `weights`: the coupling stacks need "
                         "`coupling_weights(spec)`. Received: weights=None")
    functions = [(_torch_function(rank, b["f"], dtype), _torch_function(rank, b["g"], dtype))
                 for b in weights]
    if spec["kind"] == "revlib":
        import revlib

        mode = revlib.MemoryModes.autograd_function if memory_saving else revlib.MemoryModes.no_savings
        return revlib.ReversibleSequential(*[m for pair in functions for m in pair],
                                           split_dim=1, memory_mode=mode)
    import memcnn

    def coupling(f, g):
        if spec["kind"] == "affine":
            return memcnn.AffineCoupling(Fm=f, Gm=g, adapter=t.ScaleShift)
        return memcnn.AdditiveCoupling(Fm=f, Gm=g)

    return nn.Sequential(*[
        memcnn.InvertibleModuleWrapper(coupling(f, g), keep_input=False, keep_input_inverse=False,
                                       disable=not memory_saving)
        for f, g in functions
    ])


def _torch_functions(network, kind):
    """The peer stack's F and G modules (`ConvReluConv`), in the order of `coupling_weights`."""
    if kind == "revlib":
        return [module.wrapped_module.wrapped_module for module in network]
    functions = [m for wrapper in network for m in (wrapper._fn.Fm, wrapper._fn.Gm)]
    return [getattr(m, "f", m) for m in functions]  # inside memcnn's affine adapter


def paired_parameters(ours, peer, kind):
    """`(our variable, peer parameter)` pairs of two coupling stacks of `kind`.

    Kernels differ in layout: `kernel_to_torch` maps ours to the peer's.
    """
    functions = [f for block in coupling_blocks(ours) for f in _coupling_functions(block)
                 if f is not None]
    pairs = []
    for function, module in zip(functions, _torch_functions(peer, kind), strict=True):
        pairs += [(function.conv1.kernel, module.conv1.weight), (function.conv1.bias, module.conv1.bias),
                  (function.conv2.kernel, module.conv2.weight), (function.conv2.bias, module.conv2.bias)]
    return pairs


def _iunet(spec, shape, memory_saving):
    import iunets
    from iunets.layers import StandardAdditiveCoupling

    t = _torch_modules()

    def create_module(in_channels, **kwargs):
        half = in_channels // 2
        return StandardAdditiveCoupling(t.ConvNormReluConv(kwargs["dim"], half),
                                        channel_split_pos=half)

    with np.errstate(divide="ignore"):  # iunets computes `j mod channel_mixing_freq`
        return iunets.iUNet(
            in_channels=shape[-1], architecture=[2 * spec["depth"]] * spec["levels"],
            dim=spec["rank"], create_module_fn=create_module, slice_mode="double",
            learnable_resampling=True, resampling_method="exp", resampling_init="haar",
            channel_mixing_freq=0,  # no invertible channel mixing (ours has none)
            padding_mode=None, disable_custom_gradient=not memory_saving, verbose=0,
        )
