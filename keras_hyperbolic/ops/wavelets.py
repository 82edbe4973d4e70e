"""Orthogonal wavelet filter banks with periodic boundaries, rank-generic.

Conventions (equal to `pywt.dwtn(x, wavelet, mode="periodization")`):
- 2-tap (Haar): `cA[n] = (x[2n] + x[2n+1]) / sqrt2`, `cD[n] = (x[2n] - x[2n+1]) / sqrt2`,
  computed as a block transform (`ops.orthogonal`).
- 4-tap low-pass `c` (PyWavelets' `rec_lo`), high-pass `g[k] = (-1)**k c[3-k]`:
  `cA[n] = sum_k c[k] x[2n-1+k]`, `cD[n] = sum_k g[k] x[2n-1+k]`, indices modulo N.
- Multi-dimensional transforms apply the 1D transform along each spatial axis;
  output channel `subband * C + c`, subbands ordered like PyWavelets' sorted keys
  (`"aa", "ad", "da", "dd"`: the first letter is spatial axis 0).

The learnable 4-tap wavelet of Lensink, Peters and Haber (eq. 3.8a: unit norm
and `c0 c2 + c1 c3 = 0`) is parametrised by two angles,
`c = [cos a cos b, cos a sin b, -sin a sin b, sin a cos b]`, which satisfies
eq. 3.8a for every `(a, b)` and covers all of its solutions.

`filter_bank_kernel` writes a transform with constant filters as ONE dense
stride-2 convolution kernel, run by `periodic_conv` / `periodic_conv_transpose`
(wrap-around padding by slices and a concat): TFLite's builtins have no
`tf.roll`, so this is how the transforms are exported (`constant_kernel()` of
the pooling layers). A 2-tap kernel (Haar, `ops.orthogonal.block_kernel`) needs
no padding.
"""

import numpy as np
import tensorflow as tf

from keras_hyperbolic.ops.orthogonal import strided_conv, strided_conv_transpose

#: PyWavelets' db2 `rec_lo` (the low-pass applied as `sum_k c[k] x[2n-1+k]`).
DB2 = np.array(
    [
        (1.0 + np.sqrt(3.0)) / (4.0 * np.sqrt(2.0)),
        (3.0 + np.sqrt(3.0)) / (4.0 * np.sqrt(2.0)),
        (3.0 - np.sqrt(3.0)) / (4.0 * np.sqrt(2.0)),
        (1.0 - np.sqrt(3.0)) / (4.0 * np.sqrt(2.0)),
    ]
)
#: Haar as a 4-tap filter at offset -1 (its low-pass equals the 2-tap Haar's).
HAAR_4TAP = np.array([0.0, 1.0, 1.0, 0.0]) / np.sqrt(2.0)


def coefficients_from_angles(a, b):
    """The 4 low-pass coefficients `c` of angles `(a, b)` (tensors or floats)."""
    ca, sa, cb, sb = tf.cos(a), tf.sin(a), tf.cos(b), tf.sin(b)
    return tf.stack([ca * cb, ca * sb, -sa * sb, sa * cb])


def angles_from_coefficients(c):
    """Angles `(a, b)` of 4 coefficients satisfying eq. 3.8a (numpy floats).

    `(c0, c3) = cos b (cos a, sin a)` and `(c1, -c2) = sin b (cos a, sin a)`:
    take the direction `(cos a, sin a)` from the longer of the two pairs.
    """
    c = np.asarray(c, dtype=np.float64)
    u = np.array([c[0], c[3]])
    v = np.array([c[1], -c[2]])
    direction = u if np.linalg.norm(u) >= np.linalg.norm(v) else v
    a = float(np.arctan2(direction[1], direction[0]))
    unit = np.array([np.cos(a), np.sin(a)])
    b = float(np.arctan2(v @ unit, u @ unit))
    return a, b


def orthogonality_residual(c):
    """Largest violation of eq. 3.8a (`sum c_k^2 = 1`, `c0 c2 + c1 c3 = 0`)."""
    c = np.asarray(c, dtype=np.float64)
    return max(abs(float(np.sum(c**2)) - 1.0), abs(float(c[0] * c[2] + c[1] * c[3])))


def high_pass(c):
    """`g[k] = (-1)**k c[3-k]` (quadrature mirror of a 4-tap low-pass `c`)."""
    return tf.stack([c[3], -c[2], c[1], -c[0]])


def _split_axis(x, axis):
    """Even and odd samples of `x` along `axis` (static or dynamic sizes)."""
    dims = [s if s is not None else tf.shape(x)[i] for i, s in enumerate(x.shape)]
    shape = dims[:axis] + [dims[axis] // 2, 2] + dims[axis + 1 :]
    even, odd = tf.unstack(tf.reshape(x, shape), num=2, axis=axis + 1)
    return even, odd


def _merge_axis(even, odd, axis):
    dims = [s if s is not None else tf.shape(even)[i] for i, s in enumerate(even.shape)]
    stacked = tf.stack([even, odd], axis=axis + 1)
    return tf.reshape(stacked, dims[:axis] + [2 * dims[axis]] + dims[axis + 1 :])


def _analysis_axis(x, lo, hi, axis):
    """One-axis periodic 4-tap analysis; returns `(cA, cD)` (polyphase form)."""
    even, odd = _split_axis(x, axis)
    prev_odd = tf.roll(odd, 1, axis=axis)  # x[2n-1]
    next_even = tf.roll(even, -1, axis=axis)  # x[2n+2]
    approx = lo[0] * prev_odd + lo[1] * even + lo[2] * odd + lo[3] * next_even
    detail = hi[0] * prev_odd + hi[1] * even + hi[2] * odd + hi[3] * next_even
    return approx, detail


def _synthesis_axis(approx, detail, lo, hi, axis):
    """Transpose (= inverse) of `_analysis_axis`."""
    even = lo[1] * approx + hi[1] * detail + tf.roll(lo[3] * approx + hi[3] * detail, 1, axis=axis)
    odd = lo[2] * approx + hi[2] * detail + tf.roll(lo[0] * approx + hi[0] * detail, -1, axis=axis)
    return _merge_axis(even, odd, axis)


def dwt(x, lo, hi, rank):
    """Periodic one-level 4-tap DWT of `(B, *spatial, C)` -> `(B, *spatial/2, 2**rank * C)`.

    `lo`, `hi`: 4 filter taps each (tensors in `x.dtype`).
    """
    # Last axis first: each step puts [cA | cD] in front of the channels done so
    # far, so spatial axis 0 ends as the most significant subband digit.
    for axis in range(rank, 0, -1):
        approx, detail = _analysis_axis(x, lo, hi, axis)
        x = tf.concat([approx, detail], axis=-1)
    return x


def idwt(y, lo, hi, rank):
    """Inverse of `dwt`."""
    for axis in range(1, rank + 1):
        approx, detail = tf.split(y, 2, axis=-1)
        y = _synthesis_axis(approx, detail, lo, hi, axis)
    return y


# === The transform as one strided convolution (constant filters, TFLite) ===


def filter_bank_kernel(lo, hi, channels, rank):
    """Dense kernel `(L,)*rank + (C, s*C)` of `dwt` with `L`-tap filters `lo`, `hi` (tensors).

    `kernel[k_1, .., k_rank, c, t*C + d] = delta(c, d) * prod_i f_{bit_i(t)}[k_i]`,
    where `bit_i(t)` is digit `i` of subband `t` (spatial axis 0 most
    significant, `f_0 = lo`, `f_1 = hi`): the subband order of `dwt`. Run with
    `periodic_conv`, which applies tap `k` to `x[2n - (L-2)/2 + k]`.
    """
    filters = tf.stack([lo, hi])  # (2, L)
    taps = int(filters.shape[-1])
    bands = tf.ones((1, 1), dtype=filters.dtype)  # (subbands so far, taps so far)
    for _ in range(rank):
        # Each new axis is the least significant subband digit and the last tap axis.
        bands = bands[:, None, :, None] * filters[None, :, None, :]
        bands = tf.reshape(bands, (2 * bands.shape[0], bands.shape[2] * taps))
    eye = tf.eye(channels, dtype=filters.dtype)
    kernel = tf.einsum("tk,cd->kctd", bands, eye)
    return tf.reshape(kernel, [taps] * rank + [channels, (2**rank) * channels])


def _overhang(kernel):
    taps = int(kernel.shape[0])
    if taps % 2 or taps < 2:
        raise ValueError(
            f"Invalid value for argument `kernel`: expected an even number of taps >= 2 "
            f"along each spatial axis. Received: kernel.shape={tuple(kernel.shape)}"
        )
    return (taps - 2) // 2


def _take(x, axis, start, stop):
    return x[(slice(None),) * axis + (slice(start, stop),)]


def periodic_conv(x, kernel, rank):
    """`x` `(B, *spatial, C)` -> `(B, *spatial/2, C')`: stride-2 periodic convolution.

    Tap `k` of an `L`-tap `kernel` reads `x[2n - p + k]`, `p = (L - 2) / 2`,
    indices modulo the size: each spatial axis is wrapped by `p` samples on
    both sides (slices and a concat), then `ops.orthogonal.strided_conv`.
    """
    p = _overhang(kernel)
    for axis in range(1, rank + 1) if p else ():
        x = tf.concat([_take(x, axis, -p, None), x, _take(x, axis, 0, p)], axis=axis)
    return strided_conv(x, kernel, rank)


def periodic_conv_transpose(y, kernel, rank):
    """Transpose of `periodic_conv` (its inverse when the transform is orthogonal).

    The transposed convolution writes `p` samples past each end of every axis;
    they are added back at the opposite end (periodic boundary). Spatial sizes
    of the result must be >= 2p (always true for `p = 1`: they are even).
    """
    p = _overhang(kernel)
    x = strided_conv_transpose(y, kernel, rank)
    for axis in range(1, rank + 1) if p else ():
        before, after = _take(x, axis, 0, p), _take(x, axis, -p, None)
        inside = _take(x, axis, p, -p)
        x = tf.concat(
            [
                _take(inside, axis, 0, p) + after,  # positions n .. n+p-1 wrap to 0 .. p-1
                _take(inside, axis, p, -p),
                _take(inside, axis, -p, None) + before,  # positions -p .. -1 wrap to n-p .. n-1
            ],
            axis=axis,
        )
    return x
