"""Wavelet pooling: one level of a periodic orthogonal DWT (fixed or learnable).

Reference: K. Lensink, B. Peters, E. Haber, "Fully Hyperbolic Convolutional
Neural Networks", Sec. 3.2-3.3 (the DWT as invertible coarsening; the learnable
4-tap wavelet of eq. 3.8a).
"""

import math
import numbers

import numpy as np
import tensorflow as tf

from keras_hyperbolic.layers.pooling.base import BaseInvertiblePooling, pooling_doc
from keras_hyperbolic.layers.rank_classes import rank_classes
from keras_hyperbolic.ops import orthogonal as orthogonal_ops
from keras_hyperbolic.ops import wavelets as wavelet_ops
from keras_hyperbolic.validation import check_choice, invalid

WAVELETS = ("haar", "db2", "learnable")
NAMED_INITS = ("haar", "db2")
#: Largest accepted violation of eq. 3.8a by initial coefficients.
COEFFICIENT_TOLERANCE = 1e-6


def _normalise_init(wavelet, init):
    """`init` as a name or a tuple of 2 angles / 4 coefficients (validated)."""
    if wavelet != "learnable":
        if init is not None:
            raise invalid("init", init, f"None: `init` only applies to wavelet='learnable' (got wavelet={wavelet!r})")
        return None
    if init is None:
        return "haar"
    if isinstance(init, str):
        return check_choice(init, NAMED_INITS, "init")
    expected = (
        "'haar', 'db2', 2 angles (a, b) in radians, or 4 low-pass coefficients "
        "satisfying eq. 3.8a (sum c_k^2 = 1, c0*c2 + c1*c3 = 0)"
    )
    try:
        values = list(init)
    except TypeError:
        raise invalid("init", init, expected) from None
    if len(values) not in (2, 4) or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        for v in values
    ):
        raise invalid("init", init, expected)
    values = tuple(float(v) for v in values)
    if len(values) == 4:
        residual = wavelet_ops.orthogonality_residual(values)
        if residual > COEFFICIENT_TOLERANCE:
            raise invalid(
                "init",
                init,
                f"{expected}; these coefficients violate eq. 3.8a by {residual:.3g} "
                f"(tolerance {COEFFICIENT_TOLERANCE:g})",
            )
    return values


class BaseWaveletPooling(BaseInvertiblePooling):
    """Periodic one-level DWT pooling of any rank (see `WaveletPooling2D`)."""

    def __init__(self, rank, wavelet="haar", init=None, **kwargs):
        super().__init__(rank, **kwargs)
        self.wavelet = check_choice(wavelet, WAVELETS, "wavelet")
        self.init = _normalise_init(self.wavelet, init)
        if self.wavelet == "learnable":
            if self.init == "haar":
                angles = wavelet_ops.angles_from_coefficients(wavelet_ops.HAAR_4TAP)
            elif self.init == "db2":
                angles = wavelet_ops.angles_from_coefficients(wavelet_ops.DB2)
            elif len(self.init) == 4:
                angles = wavelet_ops.angles_from_coefficients(self.init)
            else:
                angles = self.init
            self._initial_angles = np.asarray(angles, dtype=np.float64)
            # Haar written as a 4-tap filter at offset -1 is Haar shifted by one
            # sample, which negates its detail filter (g[k] = (-1)^k c[3-k]). A fixed
            # sign, chosen by `init` and never trained, restores PyWavelets' Haar
            # exactly; the transform stays orthogonal for every angle either way.
            self.detail_sign = -1.0 if self.init == "haar" else 1.0

    def _build_parameters(self, channels):
        if self.wavelet == "learnable":
            a, b = self._initial_angles
            # Stored as (a + b, a - b): the detail filter has a vanishing moment
            # iff a + b = pi/4, and the l1 of detail coefficients has a sharp
            # valley there. In these coordinates per-coordinate optimizers (Adam)
            # move along the valley at full speed instead of zig-zagging across it.
            rotated = np.array([a + b, a - b])

            def initializer(shape, dtype=None):
                return tf.constant(rotated, dtype=dtype)

            self.angles = self.add_weight(
                name="angles",
                shape=(2,),
                initializer=initializer,
                trainable=True,
                autocast=False,  # keep float32 under mixed precision; cast in call
            )

    def wavelet_angles(self, dtype=tf.float32):
        """The current angles `(a, b)` of the learnable wavelet (scalar tensors)."""
        rotated = tf.cast(self.angles, dtype)
        return (rotated[0] + rotated[1]) / 2, (rotated[0] - rotated[1]) / 2

    def filters(self, dtype=tf.float32):
        """`(lo, hi)` 4-tap filters of the 4-tap wavelets, as tensors of `dtype`."""
        if self.wavelet == "db2":
            lo = tf.constant(wavelet_ops.DB2, dtype=dtype)
            return lo, wavelet_ops.high_pass(lo)
        if self.wavelet == "learnable":
            a, b = self.wavelet_angles(dtype)
            lo = wavelet_ops.coefficients_from_angles(a, b)
            return lo, self.detail_sign * wavelet_ops.high_pass(lo)
        raise ValueError("Haar is a 2-tap block transform; it has no 4-tap filters.")

    def _haar_matrix(self, dtype):
        return tf.constant(orthogonal_ops.haar_matrix(self.rank), dtype=dtype)

    def _down(self, x):
        if self.wavelet == "haar":
            return orthogonal_ops.block_transform(x, self._haar_matrix(x.dtype), self.rank)
        return wavelet_ops.dwt(x, *self.filters(x.dtype), self.rank)

    def _up(self, y):
        if self.wavelet == "haar":
            return orthogonal_ops.inverse_block_transform(y, self._haar_matrix(y.dtype), self.rank)
        return wavelet_ops.idwt(y, *self.filters(y.dtype), self.rank)

    def _constant_kernel(self, channels):
        if self.wavelet == "haar":
            return orthogonal_ops.block_kernel(self._haar_matrix(tf.float64), channels, self.rank)
        return wavelet_ops.filter_bank_kernel(*self.filters(tf.float64), channels, self.rank)

    def get_config(self):
        config = super().get_config()
        init = list(self.init) if isinstance(self.init, tuple) else self.init
        config.update({"wavelet": self.wavelet, "init": init})
        return config


class BaseWaveletUnpooling(BaseWaveletPooling):
    """Inverse DWT as a layer of any rank (see `WaveletUnpooling2D`)."""

    upsample = True


_POOLING_DOC = """One level of a periodic orthogonal wavelet transform as an invertible pooling ({rank}D).

Halves every spatial size and multiplies the channels by {s}. Output channel
`subband * C + c` holds subband `subband` of input channel `c`; subbands are in
the sorted order of the keys of `pywt.dwtn` ({keys}), the first letter being
spatial axis 0. For `"haar"` and `"db2"` the coefficients equal
`pywt.dwtn(x_c, wavelet, mode="periodization")` for every channel `x_c`.

`"learnable"` is the 4-tap orthogonal wavelet of Lensink et al. (eq. 3.8a)
with two trainable angles `(a, b)` per layer (the weight `angles` stores
`(a + b, a - b)`: the detail filter has a vanishing moment iff `a + b = pi/4`,
which these coordinates decouple from the rest of the family),
`c = [cos a cos b, cos a sin b, -sin a sin b, sin a cos b]` (low-pass) and
`g[k] = sign * (-1)**k c[3-k]` (high-pass), applied at offset -1 like db2; it is
orthogonal for every value of the angles. `sign` is fixed (not trained): -1 for
`init="haar"` (so that the layer starts as exactly PyWavelets' Haar, whose 2-tap
detail filter is the 4-tap one shifted by one sample, which flips its sign),
+1 otherwise (`init="db2"` starts as exactly PyWavelets' db2).

Args:
    wavelet: `"haar"` (default), `"db2"` or `"learnable"`.
    init: only for `wavelet="learnable"`: `"haar"` (default), `"db2"`, two
        angles `(a, b)` in radians, or four low-pass coefficients satisfying
        eq. 3.8a (`sum c_k^2 = 1`, `c0 c2 + c1 c3 = 0`) within 1e-6.
    **kwargs: base layer arguments (`name`, `dtype`, `trainable`, ...).

Input shape:
    `(batch, {spatial}, C)`; every spatial size even (unknown sizes are checked when the graph runs).

Output shape:
    `(batch, {half}, {s} * C)`.

Raises:
    ValueError: unknown `wavelet` or `init`, bad initial values, or an input of
        the wrong rank, unknown channel count or odd spatial size.

Example:

>>> layer = keras_hyperbolic.layers.WaveletPooling{rank}D(wavelet="db2")
>>> y = layer(x)                   # coarse, {s}x channels
>>> x_again = layer.inverse(y)     # exact up to rounding

Reference: Lensink, Peters, Haber, "Fully Hyperbolic Convolutional Neural Networks", Sec. 3.2-3.3.
"""

_UNPOOLING_DOC = """Inverse periodic wavelet transform as an invertible unpooling ({rank}D).

`call` is `WaveletPooling{rank}D.inverse` with this layer's own parameters and
`inverse` is the pooling: it doubles every spatial size and divides the
channels by {s} (channel `subband * C + c` is subband `subband` of output
channel `c`; subbands in `pywt.dwtn` sorted key order). See
`WaveletPooling{rank}D` for `wavelet` and `init`.

Args:
    wavelet: `"haar"` (default), `"db2"` or `"learnable"`.
    init: only for `wavelet="learnable"`; as in `WaveletPooling{rank}D`.
    **kwargs: base layer arguments.

{unpooling_shapes}

Raises:
    ValueError: as `WaveletPooling{rank}D`, or channels not divisible by {s}.

Example:

>>> up = keras_hyperbolic.layers.WaveletUnpooling{rank}D(wavelet="haar")
>>> x = up(y)  # == WaveletPooling{rank}D("haar").inverse(y)

Reference: Lensink, Peters, Haber, "Fully Hyperbolic Convolutional Neural Networks", Sec. 3.2-3.3.
"""


_KEYS = {1: "a, d", 2: "aa, ad, da, dd", 3: "aaa, aad, ..., ddd"}


def _doc(template):
    return lambda rank: pooling_doc(template, rank, keys=_KEYS[rank])


WaveletPooling1D, WaveletPooling2D, WaveletPooling3D = rank_classes(
    BaseWaveletPooling, "WaveletPooling", _doc(_POOLING_DOC)
)
WaveletUnpooling1D, WaveletUnpooling2D, WaveletUnpooling3D = rank_classes(
    BaseWaveletUnpooling, "WaveletUnpooling", _doc(_UNPOOLING_DOC)
)
