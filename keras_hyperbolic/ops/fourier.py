"""Circular convolution in the Fourier domain: inverse and log-determinant.

A circular ("wrap"-padded, stride 1) multi-channel convolution is block
diagonal in the Fourier basis: for each spatial frequency `w` it is one
`C x C` complex matrix `A(w)` acting on the channels (Finzi et al., "Invertible
Convolutional Networks"). Hence

    log|det conv| = sum_w log|det A(w)|,    conv^-1(y) = F^-1( A(w)^-1 F(y)(w) ).

Conventions: channels_last tensors `(batch, *spatial, C)`, Keras kernels
`(*k, C_in, C_out)` applied as a cross-correlation centred on tap `k // 2`
(what `tf.nn.convolution` computes after circular padding by `k // 2`).
Real FFTs are used throughout: the last spatial axis keeps `n // 2 + 1`
frequencies, and the log-determinant weights the others twice (their
conjugate twins have the same `|det|`). Complex matrices are solved and
their determinants taken through the real lifting `phi` of the paper, which
XLA compiles.
"""

import itertools

import numpy as np
import tensorflow as tf

_RFFT = {1: tf.signal.rfft, 2: tf.signal.rfft2d, 3: tf.signal.rfft3d}
_IRFFT = {1: tf.signal.irfft, 2: tf.signal.irfft2d, 3: tf.signal.irfft3d}

_COMPLEX = {tf.float32: tf.complex64, tf.float64: tf.complex128}


def _complex_dtype(dtype):
    dtype = tf.as_dtype(dtype)
    if dtype not in _COMPLEX:
        raise TypeError(
            f"Invalid dtype for the Fourier-domain convolution: expected float32 or "
            f"float64. Received: dtype={dtype.name}"
        )
    return _COMPLEX[dtype]


def circular_pad(x, pad, spatial_axes):
    """Wrap-pads `x` by `pad` on both sides of each axis in `spatial_axes`."""
    for axis in spatial_axes:
        n = x.shape[axis]
        if pad == 0:
            continue
        if n is not None and pad <= n:
            # Plain slices and a concat (TFLite builtins).
            lead = (slice(None),) * axis
            begin = x[lead + (slice(n - pad, n),)]
            end = x[lead + (slice(0, pad),)]
            x = tf.concat([begin, x, end], axis=axis)
        else:
            # Kernel wider than the signal: indices wrap several times.
            if n is None:
                n = tf.shape(x)[axis]
            x = tf.gather(x, tf.math.floormod(tf.range(-pad, n + pad), n), axis=axis)
    return x


def circular_conv(x, kernel):
    """Circular cross-correlation of `x` `(batch, *spatial, C_in)` with `kernel` `(*k, C_in, C_out)`."""
    rank = len(kernel.shape) - 2
    pads = [k // 2 for k in kernel.shape[:rank]]
    if len(set(pads)) != 1 or any(k % 2 == 0 for k in kernel.shape[:rank]):
        raise ValueError(
            f"Invalid shape for argument `kernel`: expected equal odd sizes on every "
            f"spatial axis. Received: kernel.shape={tuple(kernel.shape)}"
        )
    padded = circular_pad(x, pads[0], range(1, rank + 1))
    # An explicit format: Conv3D gradients fail when the attribute is left implicit.
    data_format = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[rank]
    return tf.nn.convolution(padded, kernel, padding="VALID", data_format=data_format)


def kernel_grid(kernel, spatial_shape):
    """Embeds `kernel` `(*k, C_in, C_out)` into a periodic grid `(*spatial_shape, C_in, C_out)`.

    Tap `m` goes to position `(m - k // 2) mod n`; taps landing on the same
    position (kernel larger than the grid) are summed, as the circular
    convolution sums them.
    """
    rank = len(spatial_shape)
    ksize = tuple(int(k) for k in kernel.shape[:rank])
    taps = np.array(list(itertools.product(*[range(k) for k in ksize])), dtype=np.int64)
    centre = np.array([k // 2 for k in ksize])
    positions = np.mod(taps - centre, np.array(spatial_shape))
    flat = tf.reshape(kernel, (-1,) + tuple(kernel.shape[rank:]))
    return tf.scatter_nd(
        tf.constant(positions, dtype=tf.int64),
        flat,
        tf.constant(tuple(spatial_shape) + tuple(kernel.shape[rank:]), dtype=tf.int64),
    )


def frequency_matrices(kernel, spatial_shape):
    """The per-frequency channel matrices `A(w)`, shape `(*freq, C_out, C_in)`, complex.

    `freq` is `spatial_shape` with the last axis reduced to `n // 2 + 1` (real FFT).
    `y_hat(w) = A(w) x_hat(w)` for `y = circular_conv(x, kernel)`.
    """
    rank = len(spatial_shape)
    grid = kernel_grid(kernel, spatial_shape)  # (*n, C_in, C_out)
    perm = [rank, rank + 1] + list(range(rank))
    grid_hat = _RFFT[rank](tf.transpose(grid, perm))  # (C_in, C_out, *freq)
    # Cross-correlation: y_hat = conj(k_hat) x_hat, with (out, in) indexing.
    perm = list(range(2, rank + 2)) + [1, 0]
    return tf.math.conj(tf.transpose(grid_hat, perm))


def lift(matrices):
    """The real lifting `phi(A + iB) = [[A, -B], [B, A]]` of complex matrices `(..., n, n)`.

    `phi` is an injective ring homomorphism and `log|det C| = log|det phi(C)| / 2`
    (Finzi et al.); real solves and determinants also compile with XLA, where
    complex `MatrixSolve` does not.
    """
    real, imag = tf.math.real(matrices), tf.math.imag(matrices)
    return tf.concat(
        [tf.concat([real, -imag], axis=-1), tf.concat([imag, real], axis=-1)], axis=-2
    )


def _frequency_weights(spatial_shape, dtype):
    """How many frequencies of the full spectrum each real-FFT frequency stands for."""
    n = spatial_shape[-1]
    weights = np.full(n // 2 + 1, 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    shape = [1] * (len(spatial_shape) - 1) + [n // 2 + 1]
    return tf.constant(weights.reshape(shape), dtype=dtype)


def circular_conv_log_det(kernel, spatial_shape):
    """`log|det|` of the circular convolution with `kernel` on a grid `spatial_shape` (a scalar)."""
    real_dtype = kernel.dtype
    _complex_dtype(real_dtype)
    matrices = frequency_matrices(kernel, spatial_shape)
    _, log_abs_det = tf.linalg.slogdet(lift(matrices))
    log_abs_det = 0.5 * log_abs_det  # log|det C| = log|det phi(C)| / 2
    return tf.reduce_sum(_frequency_weights(spatial_shape, real_dtype) * log_abs_det)


def circular_conv_fft(x, kernel):
    """`circular_conv(x, kernel)` computed in the Fourier domain (the reference for the maths)."""
    rank = len(kernel.shape) - 2
    spatial_shape = tuple(int(n) for n in x.shape[1 : rank + 1])
    matrices = frequency_matrices(kernel, spatial_shape)  # (*freq, C_out, C_in)
    x_hat = _RFFT[rank](tf.transpose(x, [0, rank + 1] + list(range(1, rank + 1))))
    y_hat = tf.einsum("...oi,bi...->bo...", matrices, x_hat)
    y = _IRFFT[rank](y_hat, fft_length=spatial_shape)
    return tf.transpose(y, [0] + list(range(2, rank + 2)) + [1])


def circular_conv_inverse(y, kernel):
    """Solves `circular_conv(x, kernel) = y` for `x`, frequency by frequency."""
    rank = len(kernel.shape) - 2
    spatial_shape = tuple(int(n) for n in y.shape[1 : rank + 1])
    matrices = frequency_matrices(kernel, spatial_shape)  # (*freq, C, C)
    # (batch, C, *n) -> (batch, C, *freq) -> (*freq, C, batch): the batch is the rhs columns.
    y_hat = _RFFT[rank](tf.transpose(y, [0, rank + 1] + list(range(1, rank + 1))))
    rhs = tf.transpose(y_hat, list(range(2, rank + 2)) + [1, 0])
    channels = rhs.shape[-2]
    solution = tf.linalg.solve(
        lift(matrices), tf.concat([tf.math.real(rhs), tf.math.imag(rhs)], axis=-2)
    )
    x_hat = tf.complex(solution[..., :channels, :], solution[..., channels:, :])
    x_hat = tf.transpose(x_hat, [rank + 1, rank] + list(range(rank)))
    x = _IRFFT[rank](x_hat, fft_length=spatial_shape)
    return tf.transpose(x, [0] + list(range(2, rank + 2)) + [1])
