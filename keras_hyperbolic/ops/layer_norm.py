"""Layer and instance normalisation with a written-out gradient: fewer full-size tensors
in the backward pass.

The same maps as `keras.layers.GroupNormalization(groups=1)` (layer: each
example normalised over all its axes but the batch) and `groups=-1`
(instance: each channel of each example over its spatial axes), then a
per-channel scale `gamma` and offset `beta`. Autodiff through `tf.nn.moments`
keeps the input and, in the backward pass, broadcasts the gradients of the
mean and of the variance back to full size (two more input-sized tensors,
measured with TensorFlow's memory profiler). The gradient written out keeps
only the normalised input `n` and uses the closed form

    dx = inv * (g - mean(g) - n * mean(g * n)),   g = dy * gamma,

`inv = 1 / sqrt(var + epsilon)`, the means over the same axes as the moments.
"""

import tensorflow as tf


def layer_norm(x, gamma, beta, epsilon, per_channel=False):
    """`gamma * (x - mean) / sqrt(var + epsilon) + beta`, statistics per example.

    Args:
        x: `(batch, ..., channels)`; computed in float32 (float64 for a float64
            `x`) and returned in `x`'s dtype, as Keras does for half precision.
        gamma, beta: `(channels,)` scale and offset.
        epsilon: added to the variance.
        per_channel: statistics per example and channel (instance
            normalisation) instead of per example (layer normalisation).
    """
    axes = list(range(1, x.shape.rank - 1 if per_channel else x.shape.rank))
    sum_axes = list(range(x.shape.rank - 1))  # all but the channels: gamma's and beta's gradients
    compute = tf.float64 if x.dtype == tf.float64 else tf.float32

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        wide = tf.cast(x, compute)
        mean, variance = tf.nn.moments(wide, axes, keepdims=True)
        inv = tf.math.rsqrt(variance + epsilon)
        normalized = (wide - mean) * inv
        outputs = normalized * tf.cast(gamma, compute) + tf.cast(beta, compute)

        def grad(grad_outputs):
            d = tf.cast(grad_outputs, compute)
            grad_gamma = tf.reduce_sum(d * normalized, axis=sum_axes)
            grad_beta = tf.reduce_sum(d, axis=sum_axes)
            g = d * tf.cast(gamma, compute)
            centered = g - tf.reduce_mean(g, axes, keepdims=True)
            projection = tf.reduce_mean(g * normalized, axes, keepdims=True)
            grad_x = inv * (centered - normalized * projection)
            return (tf.cast(grad_x, x.dtype), tf.cast(grad_gamma, gamma.dtype),
                    tf.cast(grad_beta, beta.dtype))

        return tf.cast(outputs, x.dtype), grad

    return normalize(x, tf.convert_to_tensor(gamma), tf.convert_to_tensor(beta))
