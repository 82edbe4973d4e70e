"""`Projection`: the learnable projection `P` of the hyperbolic VAE, with pruning."""

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.ops import statistics
from keras_hyperbolic.validation import check_choice, check_positive_float, check_positive_int, invalid

PRUNE_BY = ("norm", "entries")


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class Projection(keras.layers.Layer):
    """The projection `P` (data_dim x latent_dim) of a nonlinear truncated SVD.

    `call(features)` (and `encode`) returns the codes `z = P^T y` for flattened
    features `y` (batch, data_dim); `decode(z)` returns `P z`. `P` starts as the
    first `latent_dim` columns of the identity, so with `latent_dim = data_dim`
    `decode(encode(y)) == y`. `prune` removes columns and makes `P` rectangular;
    the kept size is `latent_dim` in the config, so a pruned layer saves and
    loads as such.

    `P` continues the float32 reversible stream: it is never autocast to a
    float16 compute dtype, and codes come out in the variable dtype.

    Args:
        data_dim: number of rows of `P` (the dimension of the features).
        latent_dim: number of columns (default `data_dim`), at most `data_dim`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, data_dim)`.

    Output shape:
        `(batch, latent_dim)`.

    Raises:
        ValueError: `latent_dim` larger than `data_dim`, or a prune threshold
            that would remove every column.

    Example:

    >>> p = Projection(data_dim=64, latent_dim=64)
    >>> z = p(features)           # (batch, 64)
    >>> p.prune(1e-2)             # columns with norm < 1e-2 removed

    Reference:
        Lensink, Peters, Haber, "Fully Hyperbolic Convolutional Neural
        Networks" (2022), eq. 4.1 and 4.2.
    """

    def __init__(self, data_dim, latent_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.data_dim = check_positive_int(data_dim, "data_dim")
        latent_dim = self.data_dim if latent_dim is None else check_positive_int(latent_dim, "latent_dim")
        if latent_dim > self.data_dim:
            raise invalid(
                "latent_dim",
                latent_dim,
                f"at most the data dimension {self.data_dim}",
            )
        self.latent_dim = latent_dim
        # The config fixes P's shape, so P is made here rather than in `build`:
        # Keras locks a layer's state after `build`, and `prune` must be able
        # to replace the variable.
        self.kernel = self._make_kernel(np.eye(self.data_dim, self.latent_dim))
        self.built = True

    def _make_kernel(self, value):
        value = np.asarray(value, dtype="float32")
        return self.add_weight(
            shape=value.shape,
            initializer=keras.initializers.Constant(value),
            trainable=True,
            # No float16 copy under mixed precision: P multiplies float32 features.
            autocast=False,
            name="kernel",
        )

    def call(self, features):
        return self.encode(features)

    def encode(self, features, kernel=None):
        """Codes `P^T y`, shape `(batch, latent_dim)` (`kernel`: a tensor standing for `P`)."""
        kernel = self.kernel if kernel is None else kernel
        return tf.matmul(tf.cast(features, kernel.dtype), kernel)

    def decode(self, z, kernel=None):
        """Features `P z`, shape `(batch, data_dim)` (`kernel`: a tensor standing for `P`)."""
        kernel = self.kernel if kernel is None else kernel
        return tf.matmul(tf.cast(z, kernel.dtype), kernel, transpose_b=True)

    def group_norm(self, kernel=None):
        """`||P||_{1,2}`: the sum of the Euclidean norms of the columns of `P`."""
        return statistics.group_norm(self.kernel if kernel is None else kernel, axis=0)

    def column_norms(self):
        """Euclidean norm of every column of `P` (numpy, length latent_dim)."""
        return np.linalg.norm(keras.ops.convert_to_numpy(self.kernel), axis=0)

    def prune(self, threshold, by="norm"):
        """Removes columns of `P`, making it `(data_dim, k)`; returns the kept indices.

        Args:
            threshold: positive number.
            by: "norm" removes the columns whose Euclidean norm is below
                `threshold`; "entries" (the paper's rule) removes the columns
                all of whose entries are below `threshold` in magnitude.

        Returns:
            The indices (into the previous columns, in order) that were kept.

        Raises:
            ValueError: if every column would be removed (nothing is changed).
        """
        threshold = check_positive_float(threshold, "threshold")
        by = check_choice(by, PRUNE_BY, "by")
        value = keras.ops.convert_to_numpy(self.kernel)
        sizes = np.linalg.norm(value, axis=0) if by == "norm" else np.abs(value).max(axis=0)
        keep = np.flatnonzero(sizes >= threshold)
        if keep.size == 0:
            what = "column norm" if by == "norm" else "entry"
            raise ValueError(
                f"Invalid value for argument `threshold`: it would remove every column of "
                f"the projection P (latent_dim={self.latent_dim}; largest {what} "
                f"{sizes.max():.6g}). Expected threshold <= {sizes.max():.6g}. "
                f"Received: threshold={threshold!r}"
            )
        # Deleting the attribute untracks the old variable. The layer is never
        # locked (see __init__), so the new one can be added.
        del self.kernel
        self.kernel = self._make_kernel(value[:, keep])
        self.latent_dim = int(keep.size)
        return keep

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.latent_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"data_dim": self.data_dim, "latent_dim": self.latent_dim})
        return config
