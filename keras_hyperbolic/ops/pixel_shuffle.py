"""Rank-generic invertible squeeze (pixel shuffle) for channels_last tensors.

`squeeze(x, rank)` maps `(batch, *spatial, C)` to `(batch, *spatial / 2, 2**rank * C)`.
Output channel `p * C + c` holds channel `c` at block position `p`, where `p`
enumerates the 2x..x2 block row-major over the spatial axes. In 2D this is
exactly `tf.nn.space_to_depth(x, 2)`.
"""

import tensorflow as tf


def _dims(x):
    """`(batch, spatial, channels)`: static sizes where known, dynamic scalars otherwise."""
    static = list(x.shape)
    dynamic = tf.shape(x)
    dims = [s if s is not None else dynamic[i] for i, s in enumerate(static)]
    return dims[0], dims[1:-1], dims[-1]


def squeeze(x, rank):
    """`(batch, *spatial, C)` -> `(batch, *spatial / 2, 2**rank * C)` (channel order: module docstring)."""
    x = tf.convert_to_tensor(x)
    if rank == 2:
        return tf.nn.space_to_depth(x, 2)
    batch, spatial, channels = _dims(x)
    split = [batch]
    for size in spatial:
        split += [size // 2, 2]
    x = tf.reshape(x, split + [channels])
    coarse_axes = [1 + 2 * i for i in range(rank)]
    block_axes = [2 + 2 * i for i in range(rank)]
    x = tf.transpose(x, [0] + coarse_axes + block_axes + [2 * rank + 1])
    return tf.reshape(x, [batch] + [s // 2 for s in spatial] + [(2**rank) * channels])


def unsqueeze(y, rank):
    """The inverse of `squeeze`: `(batch, *spatial, 2**rank * C)` -> `(batch, *spatial * 2, C)`."""
    y = tf.convert_to_tensor(y)
    if rank == 2:
        return tf.nn.depth_to_space(y, 2)
    batch, coarse, channels = _dims(y)
    base_channels = channels // (2**rank)
    y = tf.reshape(y, [batch] + list(coarse) + [2] * rank + [base_channels])
    perm = [0]
    for i in range(rank):
        perm += [1 + i, 1 + rank + i]
    y = tf.transpose(y, perm + [2 * rank + 1])
    return tf.reshape(y, [batch] + [s * 2 for s in coarse] + [base_channels])


def squeezed_shape(shape, rank):
    """The static shape `squeeze` maps `shape` to, `(B, *spatial / 2, 2**rank * C)`.

    Unknown spatial sizes stay unknown. Every invertible down-sampling by 2
    (the poolings, i-RevNet's and iUNet's) has this shape.
    """
    shape = tuple(shape)
    spatial = tuple(None if n is None else n // 2 for n in shape[1:-1])
    return (shape[0],) + spatial + (shape[-1] * 2**rank,)


def unsqueezed_shape(shape, rank):
    """The static shape `unsqueeze` maps `shape` to, `(B, *spatial * 2, C / 2**rank)`."""
    shape = tuple(shape)
    spatial = tuple(None if n is None else 2 * n for n in shape[1:-1])
    return (shape[0],) + spatial + (shape[-1] // 2**rank,)
