"""`GenerativeModel`: what `HyperbolicVAE` and `ConvFlow` share.

Both are `keras.Model`s over a fixed data shape whose spatial axes are divided
by `2**levels`, trained with `model.fit(x)` (no targets) by Keras's own
`train_step`: they only define `compute_loss`. Here live, once, the data-shape
checks, the loss's scaling for `tf.distribute` replicas, `sample`, the inputs
of the serving signatures, and the config round trip.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.validation import (
    check_data_shape,
    check_positive_int,
    check_rank,
    invalid,
)


def check_levels_shape(input_shape, levels):
    """`input_shape` as a tuple of ints, with spatial sizes divisible by `2**levels`."""
    input_shape = check_data_shape(input_shape)
    check_rank(len(input_shape) - 1, name="len(input_shape) - 1")
    for axis, size in enumerate(input_shape[:-1]):
        if size % (2**levels) != 0:
            raise invalid(
                "input_shape",
                input_shape,
                f"spatial sizes divisible by 2**levels = {2**levels} (axis {axis} has size {size})",
            )
    return tuple(int(s) for s in input_shape)


def scale_for_replicas(loss):
    """`loss / num_replicas` under a `tf.distribute` strategy (a no-op on one device).

    What Keras does to its compiled losses (`keras.losses.Loss.__call__`), so
    that the sum of the replicas' gradients, which Keras's `train_step` and
    optimizers form, is the gradient of the global batch's mean loss; Keras
    undoes it for the `loss` metric. Losses a model computes itself in
    `compute_loss` must do the same.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * tf.cast(1.0 / replicas, loss.dtype)


class GenerativeModel(keras.Model):
    """Base of the self-supervised models: data checks, `compute_loss`, `sample`, config.

    Subclasses set `self.data_shape` (via `_set_data_shape`), implement
    `objective(x, y_pred, training)` (the mean loss of this replica's batch,
    before replica scaling), `latent_sample_shape`, `latent_sample_std` and
    `generate(z)`, their signatures in `_serving_endpoints`, and list their
    constructor arguments in `get_config`.
    """

    def _set_data_shape(self, input_shape, levels):
        self.data_shape = check_levels_shape(input_shape, levels)
        self.rank = len(self.data_shape) - 1
        self.data_dim = int(np.prod(self.data_shape))

    def build(self, input_shape):
        self.built = True

    def _check_data(self, x, name="x"):
        x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
        shape = tuple(x.shape)
        if len(shape) != len(self.data_shape) + 1 or tuple(shape[1:]) != self.data_shape:
            raise ValueError(
                f"Invalid shape for argument `{name}`: expected (batch, "
                f"{', '.join(map(str, self.data_shape))}) for this model "
                f"(input_shape={self.data_shape}). Received: {name}.shape={shape}"
            )
        return x

    # === Training: Keras's train_step and test_step call this ===

    def objective(self, x, y_pred, training):
        raise NotImplementedError

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = tf.cast(self.objective(x, y_pred, training), "float32")
        for loss in self.losses:  # add_loss terms of `call`
            total = total + tf.cast(loss, total.dtype)
        total = scale_for_replicas(total)
        if y is not None and getattr(self, "loss", None) is not None:
            # Compiled losses (when targets and a loss were given) are scaled by Keras.
            total = total + tf.cast(
                super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                     training=training),
                total.dtype,
            )
        return total

    # === Generation ===

    @property
    def latent_sample_shape(self):
        raise NotImplementedError

    @property
    def latent_sample_std(self):
        return 1.0

    def generate(self, z):
        raise NotImplementedError

    def sample(self, n, seed=None):
        """`n` data samples decoded from `z ~ N(0, latent_std^2 I)` (numpy)."""
        n = check_positive_int(n, "n")
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n,) + tuple(self.latent_sample_shape)).astype("float32")
        return keras.ops.convert_to_numpy(self.generate(z * self.latent_sample_std))

    # === Serving ===

    def serving_endpoints(self, input_shape=None, dynamic_spatial=True, batch_size=None):
        """The SavedModel / TFLite signatures (see `keras_hyperbolic.models.serving`).

        Each model's `_serving_endpoints` lists them, over the data input
        `images` at the model's fixed shape and the `seeds` `(batch,)` int64 of
        sampling (one latent code per seed, `serving.sample_latent`; random ops
        are not TFLite builtins, so sampling is left out of TFLite by default).

        Args:
            input_shape: overrides the image input's shape (batch axis included).
            dynamic_spatial: ignored (the input shape is fixed).
            batch_size: a fixed batch size (TFLite); `None` leaves it free.
        """
        from keras_hyperbolic.models import serving

        images, image_examples = serving.image_input(
            self, input_shape, False, batch_size, multiple=2**self.levels
        )
        seeds, seed_examples = serving.seed_input(batch_size)
        return self._serving_endpoints(images, image_examples, seeds, seed_examples, batch_size)

    def _serving_endpoints(self, images, image_examples, seeds, seed_examples, batch_size):
        """`{name: Endpoint}` over the input specs `images` and `seeds` (with their examples)."""
        raise NotImplementedError

    # === Config ===

    def get_config(self):
        return {"name": self.name, "input_shape": self.data_shape}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["input_shape"] = tuple(config["input_shape"])
        return cls(**config)
