"""Distribution penalties for latent codes: energy distance, Gaussian KL, group norm.

Used by `HyperbolicVAE` (Lensink, Peters, Haber, eq. 4.2): a 1-2 group norm over the
columns of the projection `P` and a Gaussianity penalty of the latent codes, by
default the energy distance of Szekely and Rizzo ("Energy statistics: a class of
statistics based on distances", 2013) between the codes and a Gaussian sample.
"""

import math

import tensorflow as tf


def pairwise_distances(a, b, same=False):
    """Euclidean distances between the rows of `a` (n, d) and `b` (m, d).

    Computed from the Gram matrix; the square root is made safe at 0 (its
    derivative is infinite there), which happens on the diagonal when `same`.
    """
    sq_a = tf.reduce_sum(tf.square(a), axis=-1)
    sq_b = tf.reduce_sum(tf.square(b), axis=-1)
    squared = sq_a[:, None] + sq_b[None, :] - 2.0 * tf.matmul(a, b, transpose_b=True)
    squared = tf.maximum(squared, 0.0)
    if same:
        n = tf.shape(a)[0]
        diagonal = tf.cast(tf.eye(n), tf.bool)
        safe = tf.where(diagonal, tf.ones_like(squared), squared)
        return tf.where(diagonal, tf.zeros_like(squared), tf.sqrt(safe + 1e-8))
    return tf.sqrt(squared + 1e-8)


def _mean_off_diagonal(distances):
    n = tf.cast(tf.shape(distances)[0], distances.dtype)
    return tf.reduce_sum(distances) / tf.maximum(n * (n - 1.0), 1.0)


def energy_distance(x, y):
    """Energy distance `2 E|X-Y| - E|X-X'| - E|Y-Y'|` between two samples (rows).

    Szekely and Rizzo's statistic: zero in expectation when the two samples come
    from the same distribution, positive otherwise. The within-sample means skip
    the diagonal (U-statistics), so the estimate is unbiased.

    Args:
        x: `(n, d)` sample.
        y: `(m, d)` sample.

    Returns:
        A scalar tensor.
    """
    x = tf.convert_to_tensor(x)
    y = tf.cast(tf.convert_to_tensor(y), x.dtype)
    cross = tf.reduce_mean(pairwise_distances(x, y))
    within_x = _mean_off_diagonal(pairwise_distances(x, x, same=True))
    within_y = _mean_off_diagonal(pairwise_distances(y, y, same=True))
    return 2.0 * cross - within_x - within_y


def gaussian_energy_distance(z, std=1.0, seed=None):
    """Energy distance between codes `z` (n, d) and a fresh `N(0, std^2 I)` sample of n rows.

    Args:
        z: `(n, d)` latent codes.
        std: standard deviation of the target Gaussian.
        seed: a `keras.random.SeedGenerator`, an int, or None.
    """
    import keras

    z = tf.convert_to_tensor(z)
    target = keras.random.normal(tf.shape(z), stddev=std, dtype=z.dtype, seed=seed)
    return energy_distance(z, target)


def diagonal_gaussian_kl(z, std=1.0, epsilon=1e-6):
    """KL( N(mean, diag var) || N(0, std^2 I) ) with mean and variance fitted to `z` (n, d).

    The moment-matched KL of a VAE's Gaussianity term, summed over the d
    dimensions. `epsilon` keeps it finite for a dimension with zero variance.
    """
    z = tf.convert_to_tensor(z)
    mean = tf.reduce_mean(z, axis=0)
    var = tf.math.reduce_variance(z, axis=0) + epsilon
    target = std**2
    return 0.5 * tf.reduce_sum(var / target + tf.square(mean) / target - 1.0 - tf.math.log(var / target))


def group_norm(matrix, axis=0):
    """The 1-2 group norm: sum over columns (`axis=0`) of each column's Euclidean norm.

    `||P||_{1,2} = sum_j ||P[:, j]||_2`. It drives whole columns to zero (group
    lasso), which is what lets `HyperbolicVAE.prune` drop latent dimensions.
    A tiny floor keeps its gradient finite at a zero column.
    """
    matrix = tf.convert_to_tensor(matrix)
    return tf.reduce_sum(tf.sqrt(tf.reduce_sum(tf.square(matrix), axis=axis) + 1e-12))


def normality_statistics(samples):
    """Mean, std, skewness, excess kurtosis and the Kolmogorov-Smirnov distance to the fitted normal.

    Args:
        samples: `(n, k)` array: k one-dimensional samples (e.g. projections of the
            latent codes on k random directions, the paper's Fig. 9).

    Returns:
        A dict of numpy arrays of length k.
    """
    import numpy as np

    x = np.asarray(samples, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    centred = (x - mean) / np.where(std > 0, std, 1.0)
    skew = (centred**3).mean(axis=0)
    kurtosis = (centred**4).mean(axis=0) - 3.0
    n = x.shape[0]
    ordered = np.sort(centred, axis=0)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(ordered / math.sqrt(2.0)))
    upper = np.arange(1, n + 1)[:, None] / n
    lower = np.arange(0, n)[:, None] / n
    ks = np.maximum(np.abs(upper - cdf), np.abs(cdf - lower)).max(axis=0)
    return {"mean": mean, "std": std, "skewness": skew, "excess_kurtosis": kurtosis, "ks": ks}
