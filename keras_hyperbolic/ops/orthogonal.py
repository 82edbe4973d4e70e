"""Orthogonal matrices from unconstrained parameters, and 2x..x2 block transforms.

A 2-tap invertible pooling (Haar wavelet, iUNet's learnable orthogonal
pooling, the pixel shuffle) is a *block transform*: cut the input into
non-overlapping 2x..x2 blocks, and map the `s = 2**rank` values of each block
(per channel) to `s` output subbands with an orthogonal `s x s` matrix `M`.
Output channel `t * C + c` is `sum_p M[t, p] * x_block[p, c]`, where `p`
enumerates the block row-major over the spatial axes (as `squeeze` does).
`M = I` is the squeeze; `M = kron(H1, ..., H1)` is the Haar transform.

Parametrisations of `M` (iUNet, Etmann et al. 2020, Sec. 3):
- `expm`:   `Q = expm(theta - theta^T)`;
- `cayley`: `Q = (I - A)^-1 (I + A)`, `A = theta - theta^T`.
Both give rotations only (det +1). Matrices with det -1, or with eigenvalue -1
(not reachable by Cayley), are obtained as `M = Q @ D` with a fixed signed
diagonal `D` (`haar_signs`), so that any starting point is reachable exactly.
"""

import numpy as np
import tensorflow as tf

from keras_hyperbolic.ops.pixel_shuffle import squeeze, unsqueeze

#: Up to this many channels the block transform runs as one dense strided
#: convolution (oneDNN; measured 1.4x the cost of a bare squeeze at C=16).
#: Beyond, the dense kernel's C**2 cost dominates and a squeeze + channel-wise
#: mixing is used instead.
DENSE_CONV_MAX_CHANNELS = 32

_H1 = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2.0)
_J = np.array([[0.0, -1.0], [1.0, 0.0]])


def _kron_all(factors):
    out = np.ones((1, 1))
    for factor in factors:
        out = np.kron(out, factor)
    return out


def haar_matrix(rank):
    """`kron(H1, ..., H1)` (`rank` factors); rows are subbands, columns block positions."""
    return _kron_all([_H1] * rank)


def haar_signs(rank):
    """Diagonal of `D = diag(1, -1)^{kron rank}`: `haar_matrix(rank) = R^{kron rank} @ D`."""
    return _kron_all([np.diag([1.0, -1.0])] * rank).diagonal().copy()


def haar_rotation_log(rank):
    """Skew-symmetric `L` with `expm(L) = R^{kron rank}`, `R` the rotation by 45 degrees.

    `R = expm(pi/4 J)`, and the Kronecker product of exponentials is the
    exponential of the Kronecker sum, so `L = pi/4 * sum_i I x .. x J x .. x I`.
    """
    eye = np.eye(2)
    total = np.zeros((2**rank, 2**rank))
    for axis in range(rank):
        total += _kron_all([_J if i == axis else eye for i in range(rank)])
    return (np.pi / 4.0) * total


def cayley_parameter(q):
    """Skew `A` with `(I - A)^-1 (I + A) = q` (needs `q + I` invertible), numpy."""
    q = np.asarray(q, dtype=np.float64)
    eye = np.eye(q.shape[-1])
    return (q - eye) @ np.linalg.inv(q + eye)


def skew(theta):
    """`theta - theta^T` over the last two axes: skew, so that its `expm` is orthogonal."""
    return theta - tf.linalg.matrix_transpose(theta)


# Scaling and squaring with the [13/13] Pade approximant (Higham 2005, "The
# scaling and squaring method for the matrix exponential revisited"): below
# 1-norm THETA_13 the approximant is exp to double precision.
_PADE13 = (
    64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
    129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
    40840800.0, 960960.0, 16380.0, 182.0, 1.0,
)
_THETA_13 = 5.371920351148152

#: Static number of squaring steps of `expm_skew`: accurate for 1-norms up to
#: `THETA_13 * 2**EXPM_MAX_SQUARINGS` (~2.2e4); beyond, still exactly
#: orthogonal but no longer close to `expm`.
EXPM_MAX_SQUARINGS = 12


def expm_skew(a):
    """`expm(a)` of skew-symmetric `a` `(..., s, s)`, compiled and differentiated by XLA.

    `tf.linalg.expm` picks its squaring count with a data-dependent loop whose
    gradient XLA cannot compile. Here each matrix is scaled by `2**-j`, with
    `j = ceil(log2(||a||_1 / THETA_13))` computed per matrix (no gradient: the
    result is exp for any `j`), and `EXPM_MAX_SQUARINGS` squarings are
    unrolled, step `i` applied only where `i < j`. For skew `a` the diagonal
    Pade approximant `q(a)^-1 p(a)` is orthogonal (`p(-a) = q(a)`), and one
    Newton-Schulz step `Q (3I - Q^T Q) / 2` removes the orthogonality error the
    squarings double each time. Computed in float64 and cast back: the
    relative condition number of exp at skew `a` is ~`||a||`, so float32
    arithmetic would lose ~`||a||` ulps (measured 1.5e-6 at `||a||_F = 50`,
    and `tf.linalg.expm` 7e-6); the matrices are tiny.
    """
    dtype = a.dtype
    a = tf.cast(a, tf.float64)
    eye = tf.eye(a.shape[-1], dtype=tf.float64)
    norm = tf.stop_gradient(tf.reduce_max(tf.reduce_sum(tf.abs(a), axis=-2), axis=-1))
    squarings = tf.math.ceil(tf.math.log(tf.maximum(norm, 1e-300) / _THETA_13) / np.log(2.0))
    squarings = tf.clip_by_value(squarings, 0.0, float(EXPM_MAX_SQUARINGS))
    a = a * tf.pow(tf.constant(0.5, tf.float64), squarings)[..., None, None]
    b = _PADE13
    a2 = a @ a
    a4 = a2 @ a2
    a6 = a4 @ a2
    u = a @ (a6 @ (b[13] * a6 + b[11] * a4 + b[9] * a2) + b[7] * a6 + b[5] * a4 + b[3] * a2
             + b[1] * eye)
    v = a6 @ (b[12] * a6 + b[10] * a4 + b[8] * a2) + b[6] * a6 + b[4] * a4 + b[2] * a2 + b[0] * eye
    q = tf.linalg.solve(v - u, v + u)
    for step in range(EXPM_MAX_SQUARINGS):
        q = tf.where((squarings > step)[..., None, None], q @ q, q)
    q = q @ (1.5 * eye - 0.5 * tf.linalg.matrix_transpose(q) @ q)
    return tf.cast(q, dtype)


def expm_orthogonal(theta):
    """`expm(theta - theta^T)` for `theta` of shape `(..., s, s)` (see `expm_skew`)."""
    return expm_skew(skew(theta))


def cayley_orthogonal(theta):
    """`(I - A)^-1 (I + A)`, `A = theta - theta^T`, for `theta` of shape `(..., s, s)`."""
    a = skew(theta)
    eye = tf.eye(tf.shape(theta)[-1], batch_shape=tf.shape(theta)[:-2], dtype=theta.dtype)
    return tf.linalg.solve(eye - a, eye + a)


def _per_channel(matrix, channels):
    """`(C, s, s)` from a shared `(s, s)` or per-channel `(C, s, s)` matrix."""
    if matrix.shape.rank == 2:
        return tf.broadcast_to(matrix[None], [channels] + list(matrix.shape))
    return matrix


def block_kernel(matrix, channels, rank):
    """Dense strided-conv kernel `(2,)*rank + (C, s*C)` of a block transform.

    `kernel[p, c, t*C + d] = M_c[t, p] * delta(c, d)`.
    """
    s = 2**rank
    m = _per_channel(matrix, channels)
    eye = tf.eye(channels, dtype=m.dtype)
    kernel = tf.einsum("ctp,cd->pctd", m, eye)
    return tf.reshape(kernel, [2] * rank + [channels, s * channels])


def _dims(x):
    static = list(x.shape)
    dynamic = tf.shape(x)
    return [s if s is not None else dynamic[i] for i, s in enumerate(static)]


def strided_conv(x, kernel, rank):
    """Stride-2 VALID convolution of `x` `(B, *spatial, C)` with `kernel` `(taps,)*rank + (C, C')`.

    Per-rank ops with an explicit data_format: the eager gradient of Conv3D made
    through `tf.nn.convolution` fails in TF 2.21 (its data_format attr is None).
    All three are TFLite builtins.
    """
    if rank == 1:
        return tf.nn.conv1d(x, kernel, stride=2, padding="VALID", data_format="NWC")
    if rank == 2:
        return tf.nn.conv2d(x, kernel, strides=2, padding="VALID", data_format="NHWC")
    return tf.nn.conv3d(x, kernel, strides=[1, 2, 2, 2, 1], padding="VALID", data_format="NDHWC")


def strided_conv_transpose(y, kernel, rank):
    """Transpose of `strided_conv`: `(B, *n, C')` -> `(B, *(2n + taps - 2), C)`."""
    taps, channels = kernel.shape[0], kernel.shape[-2]
    dims = _dims(y)
    output_shape = tf.stack([dims[0]] + [2 * n + taps - 2 for n in dims[1:-1]] + [channels])
    if rank == 1:
        return tf.nn.conv1d_transpose(y, kernel, output_shape, 2, padding="VALID", data_format="NWC")
    if rank == 2:
        return tf.nn.conv2d_transpose(y, kernel, output_shape, 2, padding="VALID", data_format="NHWC")
    return tf.nn.conv3d_transpose(
        y, kernel, output_shape, [1, 2, 2, 2, 1], padding="VALID", data_format="NDHWC"
    )


def block_transform(x, matrix, rank):
    """Down-sampling block transform of `x` `(B, *spatial, C)` -> `(B, *spatial/2, s*C)`.

    `matrix`: `(s, s)` shared by all channels or `(C, s, s)` per channel, in `x.dtype`.
    """
    channels = x.shape[-1]
    if channels <= DENSE_CONV_MAX_CHANNELS:
        kernel = block_kernel(matrix, channels, rank)
        return strided_conv(x, kernel, rank)
    s = 2**rank
    y = squeeze(x, rank)
    dims = _dims(y)
    y = tf.reshape(y, dims[:-1] + [s, channels])
    if matrix.shape.rank == 2:
        y = tf.einsum("tp,...pc->...tc", matrix, y)
    else:
        y = tf.einsum("ctp,...pc->...tc", matrix, y)
    return tf.reshape(y, dims)


def inverse_block_transform(y, matrix, rank):
    """Inverse (= transpose) of `block_transform`: `(B, *n, s*C)` -> `(B, *2n, C)`."""
    s = 2**rank
    channels = y.shape[-1] // s
    dims = _dims(y)
    if channels <= DENSE_CONV_MAX_CHANNELS:
        return strided_conv_transpose(y, block_kernel(matrix, channels, rank), rank)
    z = tf.reshape(y, dims[:-1] + [s, channels])
    if matrix.shape.rank == 2:
        z = tf.einsum("tp,...tc->...pc", matrix, z)
    else:
        z = tf.einsum("ctp,...tc->...pc", matrix, z)
    return unsqueeze(tf.reshape(z, dims), rank)
