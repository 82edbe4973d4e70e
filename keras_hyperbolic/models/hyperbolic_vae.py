"""`HyperbolicVAE`: the reversible auto-encoder as a nonlinear truncated SVD.

Lensink, Peters & Haber, "Fully Hyperbolic Convolutional Neural Networks",
section 4: with `F` a reversible network (a bijection of the data space) and `P`
a learnable projection,

    encoder  z     = P^T F(x)                         (4.1a)
    decoder  x_hat = F^-1(P z)                         (4.1b)
    loss     ||F^-1(P P^T F(x)) - x||^2 + alpha ||P||_{1,2} + beta eps(P^T F(x))   (4.2)

`P` starts as the identity (the auto-encoder is then exact); the 1-2 group norm
over its columns drives whole columns to zero, and `prune(threshold)` removes
them, so `P` becomes rectangular and the latent space small. `eps` is a
Gaussianity penalty: the energy distance of Szekely and Rizzo (the paper's
choice) or a moment-matched KL.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.ops import statistics
from keras_hyperbolic.validation import (
    check_choice,
    check_data_shape,
    check_positive_float,
    check_positive_int,
    check_rank,
    invalid,
)

GAUSSIANITY = ("energy", "kl", "none")
BLOCKS = ("hyperbolic", "additive")


def _check_non_negative(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
        value >= 0 and np.isfinite(value)
    ):
        raise invalid(name, value, "a finite number >= 0")
    return float(value)


def _scale_for_replicas(loss):
    # What Keras does to its compiled losses (losses.loss.scale_loss_for_distribution):
    # under a strategy with n replicas the summed gradients of loss / n are the
    # gradients of the global batch's mean loss. A no-op on one device.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * tf.cast(1.0 / replicas, loss.dtype)


def _unscale_for_replicas(loss):
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * tf.cast(replicas, loss.dtype)


def _layer_class(prefix, rank):
    from keras_hyperbolic import layers

    return getattr(layers, f"{prefix}{rank}D")


def build_reversible_encoder(
    input_shape,
    levels=3,
    depth=2,
    block="additive",
    wavelet="haar",
    kernel_size=3,
    h=0.1,
    hidden_channels=None,
    memory_efficient=True,
    name="encoder",
):
    """The bijection `F` of `HyperbolicVAE`: wavelet pooling then `levels` units of blocks.

    `levels` wavelet poolings (the paper's Haar "W" layers) each trade a factor 2
    of resolution per spatial axis for `2**rank` channels; after every pooling
    comes a unit of `depth` reversible blocks. The first pooling turns the
    `C`-channel input into a `2**rank * C`-channel state that the hyperbolic
    blocks read as the pair `[Y_prev | Y_cur]`; later poolings pool both halves
    of the pair with the same operator (`PairPooling`). The result keeps the
    data's dimension: `prod(input_shape)` numbers in, the same out.
    """
    from keras_hyperbolic import layers as khl
    from keras_hyperbolic.reversible import ReversibleSequence

    rank = len(input_shape) - 1
    pooling = _layer_class("WaveletPooling", rank)
    stack = [pooling(wavelet=wavelet, name=f"{name}_pool_0")]
    for level in range(levels):
        if level > 0:
            stack.append(
                khl.PairPooling(pooling(wavelet=wavelet), name=f"{name}_pool_{level}")
            )
        for index in range(depth):
            block_name = f"{name}_unit{level}_block{index}"
            if block == "hyperbolic":
                stack.append(
                    khl.HyperbolicBlock(
                        rank=rank,
                        kernel_size=kernel_size,
                        h=h,
                        hidden_channels=hidden_channels,
                        name=block_name,
                    )
                )
            else:
                stack.append(
                    # No normalisation: batch norm would make training and
                    # inference different maps, and a scale-invariant norm lets
                    # F undo a uniform shrinking of P (measured), defeating the
                    # group norm. zero_init: F starts as the orthogonal wavelet
                    # transform, so P = I is an exact, well-conditioned start.
                    khl.AdditiveCoupling(
                        rank=rank,
                        kernel_size=kernel_size,
                        hidden_channels=hidden_channels,
                        normalization="none",
                        zero_init=True,
                        name=block_name,
                    )
                )
    return ReversibleSequence(stack, memory_efficient=memory_efficient, name=name)


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class HyperbolicVAE(keras.Model):
    """Reversible variational auto-encoder: a nonlinear truncated SVD.

    `F` is a memory-efficient `ReversibleSequence` of wavelet poolings and
    hyperbolic (leapfrog) or additive-coupling blocks, a bijection of the data
    space; `P` (data dimension x latent size) is learnable and starts as the
    identity. `call(x)` returns the reconstruction `F^-1(P P^T F(x))`; training
    with `model.fit(x)` (no targets) minimises eq. 4.2 of the paper:

        sum_pixels (x_hat - x)^2  (mean over the batch)
        + alpha * ||P||_{1,2}     (sum of the column norms of P)
        + beta * Gaussianity(z)   (energy distance to N(0, latent_std^2 I), or KL)

    After training, `prune(threshold)` drops the columns of `P` whose norm is
    below `threshold`, making `P` rectangular; the kept size is part of the
    config (`latent_dim`), so a pruned model saves and loads as such. Pruning
    replaces the projection variable: compile again before more training.

    `P` and the codes stay in float32 under a mixed-precision policy (they
    continue the float32 reversible stream); `P`'s own update is unscaled
    under Keras's LossScaleOptimizer and skipped with the optimizer's step
    when a gradient overflows. Under `tf.distribute` the loss is divided by
    the number of replicas and `P`'s gradient all-reduced, so training equals
    one device's, except that the Gaussianity penalty ("energy", "kl") is a
    statistic of each replica's share of the batch.

    Args:
        input_shape: data shape without batch, `(*spatial, channels)`, rank 1-3
            spatial axes, each divisible by `2**levels`.
        levels: number of wavelet poolings (units).
        depth: reversible blocks per unit.
        block: "additive" (default: additive coupling, zero-initialised, no
            normalisation) or "hyperbolic" (the paper's leapfrog blocks on the
            pair state). Additive is the default because it trains stably
            here: with P = I the leapfrog stack starts as free motion, whose
            inverse amplifies off-manifold perturbations (measured: noise of
            norm 0.26 added to F(x) came back as an error of norm 2.1 after
            six blocks at init), so small changes of P blew the reconstruction
            up: on 16x16 digits with the settings that train the additive
            version, block="hyperbolic" reached NaN within the first epoch.
            The zero-initialised coupling stack starts as the orthogonal
            wavelet transform.
        wavelet: wavelet of the poolings, "haar", "db2" or "learnable".
        kernel_size: kernel size of the blocks' convolutions.
        h: leapfrog step size of the hyperbolic blocks.
        hidden_channels: hidden width of the blocks (None: the block's default).
        alpha: weight of the group norm of `P` (>= 0).
        beta: weight of the Gaussianity penalty (>= 0).
        gaussianity: "energy" (Szekely-Rizzo energy distance, default), "kl"
            (moment-matched diagonal Gaussian KL) or "none".
        latent_std: standard deviation of the target Gaussian of the latent
            codes; `sample` draws from it.
        latent_dim: number of columns of `P` (default: the data dimension,
            `P` = identity). Must not exceed the data dimension.
        projection_learning_rate: `P` is updated by plain gradient descent
            with this step size (the paper trains `P` by SGD with 5e-3 while
            the network has its own rate); adaptive optimizers move every
            entry of the large, mostly-zero `P` by about their learning rate
            per step, which wrecks the identity start. `None`: `P` is trained
            by the compiled optimizer like every other weight.
        memory_efficient: train `F` with activations rebuilt by inversion.
        **kwargs: `keras.Model` arguments (`name`, ...).

    Input shape:
        `(batch, *input_shape)`.

    Output shape:
        `(batch, *input_shape)`: the reconstruction.

    Raises:
        ValueError: bad arguments, `latent_dim` larger than the data dimension,
            an input whose shape differs from `input_shape`, or a prune
            threshold that would remove every column.

    Example:

    >>> vae = HyperbolicVAE((32, 32, 1), levels=3, depth=2, alpha=0.1, beta=0.01)
    >>> vae.compile(optimizer="adam")
    >>> vae.fit(x_train, epochs=10, batch_size=64)
    >>> vae.prune(1e-2)
    >>> images = vae.sample(64, seed=0)

    Reference:
        Lensink, Peters, Haber, "Fully Hyperbolic Convolutional Neural
        Networks" (2022), section 4 and eq. 4.2.
    """

    def __init__(
        self,
        input_shape,
        levels=3,
        depth=2,
        block="additive",
        wavelet="haar",
        kernel_size=3,
        h=0.1,
        hidden_channels=None,
        alpha=0.1,
        beta=0.01,
        gaussianity="energy",
        latent_std=1.0,
        latent_dim=None,
        projection_learning_rate=5e-3,
        memory_efficient=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # === Config ===
        input_shape = check_data_shape(input_shape)
        rank = check_rank(len(input_shape) - 1, name="len(input_shape) - 1")
        self.levels = check_positive_int(levels, "levels")
        for axis, size in enumerate(input_shape[:-1]):
            if size % (2**self.levels) != 0:
                raise invalid(
                    "input_shape",
                    input_shape,
                    f"spatial sizes divisible by 2**levels = {2**self.levels} "
                    f"(axis {axis} has size {size})",
                )
        self.data_shape = tuple(int(s) for s in input_shape)
        self.rank = rank
        self.data_dim = int(np.prod(self.data_shape))
        self.depth = check_positive_int(depth, "depth")
        self.block = check_choice(block, BLOCKS, "block")
        self.wavelet = wavelet
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.h = check_positive_float(h, "h")
        self.hidden_channels = (
            None if hidden_channels is None else check_positive_int(hidden_channels, "hidden_channels")
        )
        # Penalty weights live in (untracked) tf.Variables so that a callback
        # can change them between steps without retracing (e.g. ramp alpha).
        self._alpha = tf.Variable(_check_non_negative(alpha, "alpha"), trainable=False, dtype="float32")
        self._beta = tf.Variable(_check_non_negative(beta, "beta"), trainable=False, dtype="float32")
        self.gaussianity = check_choice(gaussianity, GAUSSIANITY, "gaussianity")
        self.latent_std = check_positive_float(latent_std, "latent_std")
        if latent_dim is None:
            latent_dim = self.data_dim
        latent_dim = check_positive_int(latent_dim, "latent_dim")
        if latent_dim > self.data_dim:
            raise invalid(
                "latent_dim",
                latent_dim,
                f"at most the data dimension prod(input_shape) = {self.data_dim} "
                f"for input_shape={self.data_shape}",
            )
        self.latent_dim = latent_dim
        self.projection_learning_rate = (
            None
            if projection_learning_rate is None
            else check_positive_float(projection_learning_rate, "projection_learning_rate")
        )
        self.memory_efficient = bool(memory_efficient)

        # === Layers ===
        self.encoder_network = build_reversible_encoder(
            self.data_shape,
            levels=self.levels,
            depth=self.depth,
            block=self.block,
            wavelet=self.wavelet,
            kernel_size=self.kernel_size,
            h=self.h,
            hidden_channels=self.hidden_channels,
            memory_efficient=self.memory_efficient,
        )
        self.feature_shape = tuple(
            self.encoder_network.compute_output_shape((None,) + self.data_shape)
        )[1:]
        self.encoder_network.build((None,) + self.data_shape)
        self.projection = self._make_projection(np.eye(self.data_dim, self.latent_dim))
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.group_norm_tracker = keras.metrics.Mean(name="group_norm")
        self.gaussianity_tracker = keras.metrics.Mean(name="gaussianity")
        self.seed_generator = keras.random.SeedGenerator(0)
        self.build((None,) + self.data_shape)

    @property
    def alpha(self):
        """Weight of the group norm of `P`; assignable (takes effect at the next step)."""
        return float(self._alpha.numpy())

    @alpha.setter
    def alpha(self, value):
        self._alpha.assign(_check_non_negative(value, "alpha"))

    @property
    def beta(self):
        """Weight of the Gaussianity penalty; assignable (takes effect at the next step)."""
        return float(self._beta.numpy())

    @beta.setter
    def beta(self, value):
        self._beta.assign(_check_non_negative(value, "beta"))

    def _make_projection(self, value):
        value = np.asarray(value, dtype="float32")
        return self.add_weight(
            shape=value.shape,
            initializer=keras.initializers.Constant(value),
            trainable=True,
            # P continues the float32 reversible stream: no float16 copy under
            # mixed precision (a float16 P cannot multiply float32 features).
            autocast=False,
            name="projection",
        )

    def build(self, input_shape):
        self.built = True

    # === Maps ===

    def _check_data(self, x, name="x"):
        x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
        shape = tuple(x.shape)
        if len(shape) != len(self.data_shape) + 1 or tuple(
            s for s in shape[1:]
        ) != self.data_shape:
            raise ValueError(
                f"Invalid shape for argument `{name}`: expected (batch, "
                f"{', '.join(map(str, self.data_shape))}) for this model "
                f"(input_shape={self.data_shape}). Received: {name}.shape={shape}"
            )
        return x

    def _check_latent(self, z, name="z"):
        # Codes belong to the stream: variable dtype (float32 under mixed precision).
        z = tf.cast(tf.convert_to_tensor(z), self.variable_dtype)
        shape = tuple(z.shape)
        if len(shape) != 2 or shape[1] != self.latent_dim:
            raise ValueError(
                f"Invalid shape for argument `{name}`: expected (batch, {self.latent_dim}) "
                f"(latent_dim={self.latent_dim}). Received: {name}.shape={shape}"
            )
        return z

    def features(self, x, training=False):
        """`F(x)` flattened to `(batch, data_dim)`."""
        x = self._check_data(x)
        y = self.encoder_network(x, training=training)
        return tf.reshape(y, (-1, self.data_dim))

    def encode(self, x, training=False):
        """Latent codes `z = P^T F(x)`, shape `(batch, latent_dim)`."""
        # In the variable dtype, like the reversible stream it continues (P is
        # not autocast: see `_make_projection`).
        features = self.features(x, training=training)
        return tf.matmul(tf.cast(features, self.variable_dtype), self.projection)

    def decode(self, z, training=False):
        """Images `F^-1(P z)`, shape `(batch, *input_shape)`."""
        z = self._check_latent(z)
        y = tf.matmul(z, self.projection, transpose_b=True)
        y = tf.reshape(y, (-1,) + self.feature_shape)
        return self.encoder_network.inverse(y, training=training)

    def call(self, inputs, training=None):
        z = self.encode(inputs, training=training)
        if training and self.gaussianity != "none":
            # Skipped while beta == 0: codes that collapse to a point make the
            # distances' gradients blow up, and 0 * inf would still be NaN.
            penalty = tf.cond(
                self._beta > 0,
                lambda: tf.cast(self.gaussianity_penalty(z), "float32"),
                lambda: tf.constant(0.0),
            )
            self.add_loss(self._beta * penalty)
            self.gaussianity_tracker.update_state(penalty)
        return self.decode(z, training=training)

    def gaussianity_penalty(self, z):
        """The Gaussianity term `eps(z)` of eq. 4.2 for codes `z` (batch, latent_dim)."""
        if self.gaussianity == "kl":
            return statistics.diagonal_gaussian_kl(z, std=self.latent_std)
        return statistics.gaussian_energy_distance(
            z, std=self.latent_std, seed=self.seed_generator
        )

    def group_norm(self):
        """`||P||_{1,2}`: the sum of the Euclidean norms of the columns of `P`."""
        return statistics.group_norm(self.projection, axis=0)

    def column_norms(self):
        """Euclidean norm of every column of `P` (numpy, length latent_dim)."""
        return np.linalg.norm(keras.ops.convert_to_numpy(self.projection), axis=0)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        x = tf.convert_to_tensor(x, dtype=y_pred.dtype)
        squared = tf.reshape(tf.square(y_pred - x), (tf.shape(x)[0], -1))
        reconstruction = tf.reduce_mean(tf.reduce_sum(squared, axis=1))
        group = self.group_norm()
        self.reconstruction_tracker.update_state(reconstruction)
        self.group_norm_tracker.update_state(group)
        total = reconstruction + self._alpha * group
        # Compiled losses (only when targets and a loss were given) and the
        # Gaussianity term added in `call`. Like Keras's own losses, the result
        # is divided by the number of replicas under a distribution strategy
        # (the replicas' gradients are summed); Keras has already done so for
        # what `super().compute_loss` returns.
        if y is not None and self._compile_loss is not None:
            return _scale_for_replicas(total) + tf.cast(
                super().compute_loss(
                    x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
                ),
                total.dtype,
            )
        for loss in self.losses:
            total = total + tf.cast(loss, total.dtype)
        return _scale_for_replicas(total)

    def train_step(self, data):
        # Keras's TensorFlow train step, except that P may get its own plain
        # gradient-descent update (see `projection_learning_rate`).
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            # Divided by the number of replicas (see `compute_loss`).
            loss = self._compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            self._loss_tracker.update_state(
                _unscale_for_replicas(loss), sample_weight=tf.shape(x)[0]
            )
            scaled = self.optimizer.scale_loss(loss)
            loss_scale = self._loss_scale()
        variables = list(self.trainable_weights)
        gradients = tape.gradient(scaled, variables)
        if self.projection_learning_rate is None:
            self.optimizer.apply_gradients(zip(gradients, variables))
        else:
            others = [
                (g, v) for g, v in zip(gradients, variables) if v is not self.projection
            ]
            grad_p = next(g for g, v in zip(gradients, variables) if v is self.projection)
            grad_p = self._projection_gradient(grad_p, loss_scale, gradients)
            self.optimizer.apply_gradients(others)
            self.projection.assign_sub(self.projection_learning_rate * grad_p)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _loss_scale(self):
        """The factor `optimizer.scale_loss` multiplied by (None: no loss scaling)."""
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            return None
        # As LossScaleOptimizer.scale_loss reads it, before apply_gradients
        # builds the optimizer or changes the scale.
        if self.optimizer.built:
            return tf.convert_to_tensor(self.optimizer.dynamic_scale)
        return tf.constant(self.optimizer.initial_scale, "float32")

    def _projection_gradient(self, grad_p, loss_scale, gradients):
        """`grad_p` as the compiled optimizer would see it: all-reduced and unscaled.

        Under loss scaling, zero when any gradient overflowed: the
        LossScaleOptimizer skips that step for the other weights.
        """
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            # The replicas' gradients of the 1/num_replicas-scaled loss sum to
            # the one-device gradient; Keras does this for the other weights.
            grad_p = context.all_reduce("SUM", grad_p)
        if loss_scale is not None:
            grad_p = grad_p / tf.cast(loss_scale, grad_p.dtype)
            finite = tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(g)) for g in gradients + [grad_p]
                 if g is not None]
            )
            grad_p = tf.where(finite, grad_p, tf.zeros_like(grad_p))
        return grad_p

    @property
    def metrics(self):
        return super().metrics + [
            self.reconstruction_tracker,
            self.group_norm_tracker,
            self.gaussianity_tracker,
        ]

    # === Generation ===

    def sample(self, n, seed=None):
        """`n` images decoded from `z ~ N(0, latent_std^2 I)` (numpy)."""
        n = check_positive_int(n, "n")
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, self.latent_dim)).astype("float32") * self.latent_std
        return keras.ops.convert_to_numpy(self.decode(z))

    def interpolate(self, x_a, x_b, steps=8):
        """Decodes the straight line between the codes of `x_a` and `x_b`.

        Args:
            x_a, x_b: single images `input_shape` or batches `(n, *input_shape)`.
            steps: number of points, endpoints included (>= 2).

        Returns:
            numpy array `(steps, *x_a.shape)`: row `i` decodes
            `(1 - t_i) z_a + t_i z_b`, `t_i = i / (steps - 1)`.
        """
        steps = check_positive_int(steps, "steps", minimum=2)
        x_a = np.asarray(x_a, dtype="float32")
        x_b = np.asarray(x_b, dtype="float32")
        if x_a.shape != x_b.shape:
            raise ValueError(
                "Invalid shapes for arguments `x_a` and `x_b`: they must match. "
                f"Received: x_a.shape={x_a.shape}, x_b.shape={x_b.shape}"
            )
        single = x_a.shape == self.data_shape
        if single:
            x_a, x_b = x_a[None], x_b[None]
        z_a = self.encode(self._check_data(x_a, "x_a"))
        z_b = self.encode(self._check_data(x_b, "x_b"))
        t = tf.linspace(0.0, 1.0, steps)[:, None, None]
        path = (1.0 - t) * z_a[None] + t * z_b[None]
        images = self.decode(tf.reshape(path, (-1, self.latent_dim)))
        images = keras.ops.convert_to_numpy(images).reshape((steps,) + x_a.shape)
        return images[:, 0] if single else images

    # === Pruning ===

    def prune(self, threshold):
        """Removes the columns of `P` whose Euclidean norm is below `threshold`.

        `P` becomes `(data_dim, k)` with `k` the number of columns kept (in their
        original order); `latent_dim` becomes `k`. The compiled state is
        dropped (the optimizer tracked the old variable): compile again before
        training further.

        Args:
            threshold: positive number.

        Returns:
            The indices (into the previous columns) that were kept, numpy int array.

        Raises:
            ValueError: if every column's norm is below `threshold`.
        """
        threshold = check_positive_float(threshold, "threshold")
        norms = self.column_norms()
        keep = np.flatnonzero(norms >= threshold)
        if keep.size == 0:
            raise ValueError(
                f"Invalid value for argument `threshold`: it would remove every column of "
                f"the projection P (latent_dim={self.latent_dim}; largest column norm "
                f"{norms.max():.6g}). Expected threshold <= {norms.max():.6g}. "
                f"Received: threshold={threshold!r}"
            )
        value = keras.ops.convert_to_numpy(self.projection)[:, keep]
        # Swap the variable the way Keras layers do when they add/replace weights
        # after building (Dense.enable_lora): untrack the old, add the new.
        del self.projection
        self._tracker.unlock()
        self.projection = self._make_projection(value)
        self._tracker.lock()
        self.latent_dim = int(keep.size)
        # Traced functions and the optimizer refer to the old variable.
        self.train_function = None
        self.test_function = None
        self.predict_function = None
        self.compiled = False
        self.optimizer = None
        return keep

    # === Config ===

    def get_config(self):
        return {
            "name": self.name,
            "input_shape": self.data_shape,
            "levels": self.levels,
            "depth": self.depth,
            "block": self.block,
            "wavelet": self.wavelet,
            "kernel_size": self.kernel_size,
            "h": self.h,
            "hidden_channels": self.hidden_channels,
            "alpha": self.alpha,
            "beta": self.beta,
            "gaussianity": self.gaussianity,
            "latent_std": self.latent_std,
            "latent_dim": self.latent_dim,
            "projection_learning_rate": self.projection_learning_rate,
            "memory_efficient": self.memory_efficient,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["input_shape"] = tuple(config["input_shape"])
        return cls(**config)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # === Serving ===

    serving_family = "vae"

    def serving_endpoints(self, input_shape=None, dynamic_spatial=True, batch_size=None):
        """The SavedModel / TFLite signatures of the VAE (see `keras_hyperbolic.models.serving`).

        - `reconstruct` (first, so also `serving_default`): `images` ->
          `reconstruction`, `latent`;
        - `encode`: `images` -> `latent` `(batch, latent_dim)`;
        - `decode`: `latent` -> `images`;
        - `sample`: `seeds` `(batch,)` int64 -> `images`, `latent`, one code
          `latent_std * N(0, I)` per seed (`serving.sample_latent`); random ops
          are not TFLite builtins, so it is left out of TFLite by default.

        Args:
            input_shape: overrides the image input's shape (batch axis included).
            dynamic_spatial: ignored (the input shape is fixed).
            batch_size: a fixed batch size (TFLite); `None` leaves it free.
        """
        from keras_hyperbolic.models import serving

        images, image_examples = serving.image_input(
            self, input_shape, False, batch_size, multiple=2**self.levels
        )
        latent_dim = int(self.latent_dim)
        latent = serving.with_batch_size(
            tf.TensorSpec((None, latent_dim), tf.float32, name="latent"), batch_size
        )
        seeds, seed_examples = serving.seed_input(batch_size)
        batch = batch_size or serving.EXAMPLE_BATCH
        std = float(self.latent_std)

        def reconstruct(images):
            z = self.encode(images, training=False)
            return {"reconstruction": self.decode(z, training=False), "latent": z}

        def encode(images):
            return {"latent": self.encode(images, training=False)}

        def decode(latent):
            return {"images": self.decode(latent, training=False)}

        def sample(seeds):
            z = serving.sample_latent(seeds, latent_dim, std)
            return {"images": self.decode(z, training=False), "latent": z}

        endpoint = serving.Endpoint
        return {
            "reconstruct": endpoint("reconstruct", reconstruct, [images], image_examples,
                                    ("reconstruction", "latent")),
            "encode": endpoint("encode", encode, [images], image_examples, ("latent",)),
            "decode": endpoint("decode", decode, [latent], {"latent": (batch, latent_dim)},
                               ("images",)),
            "sample": endpoint("sample", sample, [seeds], seed_examples, ("images", "latent"),
                               tflite=False),
        }
