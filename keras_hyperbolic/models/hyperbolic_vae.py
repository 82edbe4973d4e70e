"""`HyperbolicVAE`: the reversible auto-encoder as a nonlinear truncated SVD.

Lensink, Peters & Haber, "Fully Hyperbolic Convolutional Neural Networks",
section 4: with `F` a reversible network (a bijection of the data space) and `P`
a learnable projection,

    encoder  z     = P^T F(x)                         (4.1a)
    decoder  x_hat = F^-1(P z)                         (4.1b)
    loss     ||F^-1(P P^T F(x)) - x||^2 + alpha ||P||_{1,2} + beta eps(P^T F(x))   (4.2)

Three parts: the encoder network `F` (`build_reversible_encoder`, a
memory-efficient `ReversibleSequence`), the `Projection` layer that owns `P`
and its pruning, and the model, whose loss is `compute_loss` (Keras's own
`train_step` trains it). `P` starts as the identity (the auto-encoder is then
exact); the 1-2 group norm over its columns drives whole columns to zero, and
`prune` removes them, so `P` becomes rectangular and the latent space small.
`P` is trained by plain SGD whose step is cut, batch by batch, at the curvature
measured along its previous step (`CurvatureCappedSGD`,
`HyperbolicVAE._measure_projection_curvature`).
`eps` is a Gaussianity penalty: the energy distance of Szekely and Rizzo (the
paper's choice) or a moment-matched KL.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.layers.projection import Projection
from keras_hyperbolic.layers.residual import check_normalization
from keras_hyperbolic.models.generative import GenerativeModel
from keras_hyperbolic.models.preset_mixin import PresetMixin
from keras_hyperbolic.ops import statistics
from keras_hyperbolic.optimizers import CurvatureCappedSGD, RoutedOptimizer
from keras_hyperbolic.validation import (
    check_choice,
    check_positive_float,
    check_positive_int,
    invalid,
)

GAUSSIANITY = ("energy", "kl", "none")
RECONSTRUCTIONS = ("sum", "mean")
BLOCKS = ("hyperbolic", "additive")
# P's curvature estimate keeps the larger of this step's measurement and the
# last estimate times this: a cut found at an unstable step is relaxed slowly
# (by 1 % a step) instead of being lifted at the next step.
CURVATURE_MEMORY = 0.99


def _check_non_negative(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
        value >= 0 and np.isfinite(value)
    ):
        raise invalid(name, value, "a finite number >= 0")
    return float(value)


def _penalty_weight(name, what):
    """The property `name` over the tf.Variable `_<name>` (checked, >= 0)."""

    def get(self):
        return float(getattr(self, f"_{name}").numpy())

    def set(self, value):
        getattr(self, f"_{name}").assign(_check_non_negative(value, name))

    return property(get, set, doc=f"{what}; assignable (takes effect at the next step).")


def _layer_class(prefix, rank):
    from keras_hyperbolic import layers

    return getattr(layers, f"{prefix}{rank}D")


def build_reversible_encoder(
    input_shape,
    *,
    levels,
    depth,
    block,
    wavelet,
    kernel_size,
    h,
    hidden_channels,
    normalization,
    memory_efficient,
    name="encoder",
):
    """The bijection `F` of `HyperbolicVAE`: wavelet pooling then `levels` units of blocks.

    The arguments are `HyperbolicVAE`'s (validated there, where their defaults are).

    `levels` wavelet poolings (the paper's Haar "W" layers) each trade a factor 2
    of resolution per spatial axis for `2**rank` channels; after every pooling
    comes a unit of `depth` reversible blocks. The first pooling turns the
    `C`-channel input into a `2**rank * C`-channel state, later poolings pool
    both halves of it with the same operator (`PairPooling`). The result keeps
    the data's dimension: `prod(input_shape)` numbers in, the same out.

    With `block="hyperbolic"` the state is read in velocity form: a fixed
    `LeapfrogVelocity` map turns `[U | V]` into the leapfrog pair
    `[U - h V | U]` after the first pooling, and the stack ends with its
    inverse `[Y_prev | Y] -> [Y | (Y - Y_prev) / h]`, so that `F` and `F^-1`
    start well conditioned (reading the two halves of the pooled data as
    `[Y_prev | Y_cur]` instead gave an initial velocity as large as the signal
    and amplified perturbations 8.6x through `F^-1`).

    `normalization` is passed to the blocks. The default "none" keeps the
    group-norm pruning meaningful: batch norm would make training and
    inference different maps, and a scale-invariant norm ("layer",
    "instance") lets `F` undo a uniform shrinking of `P` (measured).
    """
    from keras_hyperbolic import layers as khl
    from keras_hyperbolic.layers.leapfrog_velocity import LeapfrogVelocity
    from keras_hyperbolic.reversible import ReversibleSequence

    rank = len(input_shape) - 1
    pooling = _layer_class("WaveletPooling", rank)
    stack = [pooling(wavelet=wavelet, name=f"{name}_pool_0")]
    if block == "hyperbolic":
        stack.append(LeapfrogVelocity(h, "to_pair", rank=rank, name=f"{name}_to_pair"))
    for level in range(levels):
        if level > 0:
            stack.append(
                khl.PairPooling(pooling(wavelet=wavelet), name=f"{name}_pool_{level}")
            )
        for index in range(depth):
            block_args = dict(
                rank=rank,
                kernel_size=kernel_size,
                hidden_channels=hidden_channels,
                normalization=normalization,
                name=f"{name}_unit{level}_block{index}",
            )
            if block == "hyperbolic":
                stack.append(khl.HyperbolicBlock(h=h, **block_args))
            else:
                # zero_init: F starts as the orthogonal wavelet transform,
                # so P = I is an exact, well-conditioned start.
                stack.append(khl.AdditiveCoupling(zero_init=True, **block_args))
    if block == "hyperbolic":
        stack.append(LeapfrogVelocity(h, "to_velocity", rank=rank, name=f"{name}_to_velocity"))
    return ReversibleSequence(stack, memory_efficient=memory_efficient, name=name)


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class HyperbolicVAE(PresetMixin, GenerativeModel):
    """Reversible variational auto-encoder: a nonlinear truncated SVD.

    `F` (`encoder_network`) is a memory-efficient `ReversibleSequence` of
    wavelet poolings and hyperbolic (leapfrog) or additive-coupling blocks, a
    bijection of the data space; `P` (`projection`, owned by the `Projection`
    layer `projection_layer`; data dimension x latent size) is learnable and
    starts as the identity. `call(x)` returns the reconstruction
    `F^-1(P P^T F(x))`; `model.fit(x)` (no targets) minimises eq. 4.2:

        sum_pixels (x_hat - x)^2  (mean over the batch; or the mean over pixels)
        + alpha * ||P||_{1,2}     (sum of the column norms of P)
        + beta * Gaussianity(z)   (energy distance to N(0, latent_std^2 I), or KL)

    Training is Keras's own `train_step` over `compute_loss`, so replicas,
    gradient all-reduce and mixed-precision loss scaling work as for any Keras
    model (under `tf.distribute` the Gaussianity penalty is a statistic of each
    replica's share of the batch). With `projection_learning_rate` set,
    `compile` wraps the given optimizer in a `RoutedOptimizer` that updates `P`
    by plain SGD (`CurvatureCappedSGD`) with that step size, cut wherever it
    would be unstable, and everything else with the optimizer.

    After training, `prune(threshold)` drops columns of `P` (by column norm,
    or, as the paper does, those whose entries are all below `threshold`),
    making `P` rectangular; the kept size is part of the config
    (`latent_dim`), so a pruned model saves and loads as such. Pruning
    replaces the projection variable: compile again before more training.

    Args:
        input_shape: data shape without batch, `(*spatial, channels)`, rank 1-3
            spatial axes, each divisible by `2**levels`.
        levels: number of wavelet poolings (units).
        depth: reversible blocks per unit.
        block: "hyperbolic" (default: the paper's leapfrog blocks, on the
            state read in velocity form, see `build_reversible_encoder`) or
            "additive" (additive couplings, zero-initialised). Both train with
            `compile(optimizer="adam")` and `fit` at the defaults (measured on
            the 1438 32x32 digits, 20 epochs: loss 103.9 -> 101.2 hyperbolic,
            103.7 -> 98.4 additive). Before P's step was cut at its measured
            curvature (`projection_learning_rate`) both went to NaN within 6
            steps, P first (the network's weights were unchanged until then,
            `h ||K||` 0.2, far below the leapfrog's bound 2). The digits task
            (`keras_hyperbolic.tasks.vae`) adds its own two-stage recipe
            (`BLOCK_SETTINGS`) to beat PCA.
        wavelet: wavelet of the poolings, "haar", "db2" or "learnable".
        kernel_size: kernel size of the blocks' convolutions.
        h: leapfrog step size of the hyperbolic blocks.
        hidden_channels: hidden width of the blocks (None: the block's default).
        normalization: normalisation inside the blocks, "none" (default),
            "batch", "layer" or "instance". Scale-invariant norms let `F` undo
            a shrinking of `P` and so defeat the group-norm pruning.
        alpha: weight of the group norm of `P` (>= 0).
        beta: weight of the Gaussianity penalty (>= 0).
        reconstruction: "sum" (default) or "mean" of the squared error over
            the pixels of an image (then averaged over the batch). Plain SGD
            at the paper's step sizes (1e-2, 5e-3) needs "mean": with "sum"
            it diverged within two epochs on 32x32 digits (measured).
        gaussianity: "energy" (Szekely-Rizzo energy distance, default), "kl"
            (moment-matched diagonal Gaussian KL) or "none".
        latent_std: standard deviation of the target Gaussian of the latent
            codes; `sample` draws from it.
        latent_dim: number of columns of `P` (default: the data dimension,
            `P` = identity). Must not exceed the data dimension.
        projection_learning_rate: `P` is updated by plain gradient descent
            with at most this step size (the paper trains `P` by SGD with 5e-3
            while the network has its own rate); adaptive optimizers move every
            entry of the large, mostly-zero `P` by about their learning rate
            per step, which wrecks the identity start. No fixed step is stable:
            the curvature of the loss in `P` grows with the pixels (under
            "sum"), the data's second moment and the gain of `F^-1`, which
            grows as `F` learns (measured on 32x32 digits: plain SGD's limit
            `2 / lambda_max` was 2.4e-4 at initialisation, 3.3e-5 after 10
            epochs).
            So every training step measures, on its batch, the curvature `c`
            along `P`'s previous step (one more decode, without gradient), and
            `P`'s `CurvatureCappedSGD` cuts the step to at most `1.5 / c` (plain
            SGD's limit is `2 / c`), the estimate relaxing by 1 % a step; the
            metric `projection_step_scale` is the mean factor applied. Under
            `tf.distribute` the first replica's share of the batch measures it.
            `None`: `P` is trained by the compiled optimizer like every other
            weight.
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

    >>> vae = HyperbolicVAE((32, 32, 1))   # leapfrog blocks, alpha 0.1, beta 0.01
    >>> vae.compile(optimizer="adam")      # P by SGD, its step cut where unstable
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
        block="hyperbolic",
        wavelet="haar",
        kernel_size=3,
        h=0.1,
        hidden_channels=None,
        normalization="none",
        alpha=0.1,
        beta=0.01,
        reconstruction="sum",
        gaussianity="energy",
        latent_std=1.0,
        latent_dim=None,
        projection_learning_rate=5e-3,
        memory_efficient=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # === Config ===
        self.levels = check_positive_int(levels, "levels")
        self._set_data_shape(input_shape, self.levels)
        self.depth = check_positive_int(depth, "depth")
        self.block = check_choice(block, BLOCKS, "block")
        self.wavelet = wavelet
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.h = check_positive_float(h, "h")
        self.hidden_channels = (
            None if hidden_channels is None else check_positive_int(hidden_channels, "hidden_channels")
        )
        self.normalization = check_normalization(normalization)
        # Penalty weights live in (untracked) tf.Variables so that a callback
        # can change them between steps without retracing (e.g. ramp alpha).
        self._alpha = tf.Variable(_check_non_negative(alpha, "alpha"), trainable=False, dtype="float32")
        self._beta = tf.Variable(_check_non_negative(beta, "beta"), trainable=False, dtype="float32")
        self.reconstruction = check_choice(reconstruction, RECONSTRUCTIONS, "reconstruction")
        self.gaussianity = check_choice(gaussianity, GAUSSIANITY, "gaussianity")
        self.latent_std = check_positive_float(latent_std, "latent_std")
        if latent_dim is not None:
            latent_dim = check_positive_int(latent_dim, "latent_dim")
            if latent_dim > self.data_dim:
                raise invalid(
                    "latent_dim",
                    latent_dim,
                    f"at most the data dimension prod(input_shape) = {self.data_dim} "
                    f"for input_shape={self.data_shape}",
                )
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
            normalization=self.normalization,
            memory_efficient=self.memory_efficient,
        )
        batch_shape = (None,) + self.data_shape
        self.feature_shape = tuple(self.encoder_network.compute_output_shape(batch_shape))[1:]
        self.encoder_network.build(batch_shape)
        self.projection_layer = Projection(self.data_dim, latent_dim, name="projection")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.group_norm_tracker = keras.metrics.Mean(name="group_norm")
        self.gaussianity_tracker = keras.metrics.Mean(name="gaussianity")
        self.step_scale_tracker = keras.metrics.Mean(name="projection_step_scale")
        self.seed_generator = keras.random.SeedGenerator(0)
        self.build((None,) + self.data_shape)

    #: Presets fix the data shape (`from_preset`, `PresetMixin`).
    preset_arguments = ("input_shape",)

    @property
    def projection(self):
        """The variable `P`, shape `(data_dim, latent_dim)`."""
        return self.projection_layer.kernel

    @property
    def latent_dim(self):
        """Number of columns of `P` (the size of the codes)."""
        return self.projection_layer.latent_dim

    alpha = _penalty_weight("alpha", "Weight of the group norm of `P`")
    beta = _penalty_weight("beta", "Weight of the Gaussianity penalty")

    # === Maps ===

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
        """Latent codes `z = P^T F(x)`, shape `(batch, latent_dim)`, in the variable dtype."""
        return self.projection_layer.encode(self.features(x, training=training))

    def decode(self, z, training=False):
        """Images `F^-1(P z)`, shape `(batch, *input_shape)`."""
        y = self.projection_layer.decode(self._check_latent(z))
        y = tf.reshape(y, (-1,) + self.feature_shape)
        return self.encoder_network.inverse(y, training=training)

    def call(self, inputs, training=None):
        features = self.features(inputs, training=training)
        z = self.projection_layer.encode(features)
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
        rebuilt = self.decode(z, training=training)
        optimizer = self._projection_optimizer() if training else None
        if optimizer is not None:
            self._measure_projection_curvature(optimizer, features, rebuilt)
        elif training:
            self.step_scale_tracker.update_state(1.0)  # nothing is cut
        return rebuilt

    def gaussianity_penalty(self, z):
        """The Gaussianity term `eps(z)` of eq. 4.2 for codes `z` (batch, latent_dim)."""
        if self.gaussianity == "kl":
            return statistics.diagonal_gaussian_kl(z, std=self.latent_std)
        return statistics.gaussian_energy_distance(
            z, std=self.latent_std, seed=self.seed_generator
        )

    def group_norm(self):
        """`||P||_{1,2}`: the sum of the Euclidean norms of the columns of `P`."""
        return self.projection_layer.group_norm()

    def column_norms(self):
        """Euclidean norm of every column of `P` (numpy, length latent_dim)."""
        return self.projection_layer.column_norms()

    # === Training ===

    def _reconstruction_error(self, y_pred, x):
        """Squared error per image (sum or mean over its pixels), shape `(batch,)`."""
        error = y_pred - tf.cast(x, y_pred.dtype)
        squared = tf.reshape(tf.square(error), (tf.shape(error)[0], -1))
        per_image = tf.reduce_sum if self.reconstruction == "sum" else tf.reduce_mean
        return per_image(squared, axis=1)

    def objective(self, x, y_pred, training):
        # Reconstruction and group norm; the Gaussianity term comes from `call`.
        reconstruction = tf.reduce_mean(self._reconstruction_error(y_pred, x))
        group = tf.cast(self.group_norm(), reconstruction.dtype)
        self.reconstruction_tracker.update_state(reconstruction)
        self.group_norm_tracker.update_state(group)
        return reconstruction + tf.cast(self._alpha, reconstruction.dtype) * group

    def _projection_optimizer(self):
        """P's `CurvatureCappedSGD` in the compiled optimizer, once built; else None."""
        optimizer = getattr(self, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under loss scaling
        if not isinstance(optimizer, RoutedOptimizer):
            return None
        inner = optimizer.routes.get(self._projection_route())
        return inner if isinstance(inner, CurvatureCappedSGD) and inner.built else None

    def _measure_projection_curvature(self, optimizer, features, rebuilt):
        """Writes P's curvature estimate into its `CurvatureCappedSGD`, which cuts the step.

        The curvature `c` of the reconstruction term along P's last step `d` is
        measured on this batch (Gauss-Newton: the images decoded with `P - d`
        against those decoded with `P`, one more decode without gradient). An
        unstable mode of P grows along the steps, so `d` turns towards it and
        `c` finds it; the estimate keeps the larger of `c` and the last one
        times `CURVATURE_MEMORY`. Under `tf.distribute` the first replica's
        share of the batch measures it.
        """
        step = tf.stop_gradient(tf.convert_to_tensor(optimizer.last_step(self.projection)))
        previous = tf.stop_gradient(self.projection) - step
        y = self.projection_layer.decode(
            self.projection_layer.encode(tf.stop_gradient(features), previous), previous
        )
        # The training map, as in `call` (batch norm, if chosen, updates its statistics again).
        earlier = self.encoder_network.inverse(
            tf.reshape(y, (-1,) + self.feature_shape), training=True
        )
        change = tf.reduce_mean(self._reconstruction_error(tf.stop_gradient(rebuilt), earlier))
        step_norm = tf.reduce_sum(tf.square(tf.cast(step, "float32")))
        measured = tf.math.divide_no_nan(2.0 * tf.cast(change, "float32"), step_norm)
        estimate = optimizer.curvature(self.projection)
        estimate.assign(tf.maximum(measured, CURVATURE_MEMORY * tf.convert_to_tensor(estimate)))
        lr = tf.cast(optimizer.learning_rate, "float32")
        self.step_scale_tracker.update_state(optimizer.capped_learning_rate(self.projection) / lr)

    def compile(self, optimizer="rmsprop", **kwargs):
        """`keras.Model.compile`; with `projection_learning_rate` set, `P` gets its own SGD.

        The optimizer is wrapped in a `RoutedOptimizer` that sends `P` to
        `CurvatureCappedSGD(projection_learning_rate)` (unless it already is a
        `RoutedOptimizer`, e.g. when a saved model is compiled again; one
        saved by earlier code routes `P` to a plain `SGD`, whose step is not
        cut).
        """
        if self.projection_learning_rate is not None and not isinstance(
            optimizer, RoutedOptimizer
        ):
            optimizer = RoutedOptimizer(
                optimizer,
                {self._projection_route(): CurvatureCappedSGD(self.projection_learning_rate)},
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # What Keras does for models that keep its `compile` (it will not call
        # an overridden one when loading); the saved optimizer is already routed.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _projection_route(self):
        # The end of P's variable path, e.g. "projection/kernel".
        return f"{self.projection_layer.name}/{self.projection.name}"

    @property
    def metrics(self):
        return super().metrics + [
            self.reconstruction_tracker,
            self.group_norm_tracker,
            self.gaussianity_tracker,
            self.step_scale_tracker,
        ]

    # === Generation ===

    @property
    def latent_sample_shape(self):
        return (self.latent_dim,)

    @property
    def latent_sample_std(self):
        return self.latent_std

    def generate(self, z):
        return self.decode(z)

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

    def prune(self, threshold, by="norm"):
        """Removes columns of `P` (see `Projection.prune`); returns the kept indices.

        `by="norm"` drops the columns whose Euclidean norm is below
        `threshold`; `by="entries"` (the paper's rule) those whose entries
        are all below `threshold` in magnitude. `P` becomes `(data_dim, k)`
        and `latent_dim` becomes `k`. The compiled state is dropped (the
        optimizer tracked the old variable): compile again before training.

        Raises:
            ValueError: if every column would be removed (nothing changes).
        """
        keep = self.projection_layer.prune(threshold, by=by)
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
            **super().get_config(),
            "levels": self.levels,
            "depth": self.depth,
            "block": self.block,
            "wavelet": self.wavelet,
            "kernel_size": self.kernel_size,
            "h": self.h,
            "hidden_channels": self.hidden_channels,
            "normalization": self.normalization,
            "alpha": self.alpha,
            "beta": self.beta,
            "reconstruction": self.reconstruction,
            "gaussianity": self.gaussianity,
            "latent_std": self.latent_std,
            "latent_dim": self.latent_dim,
            "projection_learning_rate": self.projection_learning_rate,
            "memory_efficient": self.memory_efficient,
        }

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # === Serving ===

    serving_family = "vae"

    def _serving_endpoints(self, images, image_examples, seeds, seed_examples, batch_size):
        """The VAE's signatures (`serving_endpoints`):

        - `reconstruct` (first, so also `serving_default`): `images` ->
          `reconstruction`, `latent`;
        - `encode`: `images` -> `latent` `(batch, latent_dim)`;
        - `decode`: `latent` -> `images`;
        - `sample` (not in TFLite by default): `seeds` -> `images`, `latent`,
          one code `latent_std * N(0, I)` per seed.
        """
        from keras_hyperbolic.models import serving

        latent_dim = int(self.latent_dim)
        latent = serving.with_batch_size(
            tf.TensorSpec((None, latent_dim), tf.float32, name="latent"), batch_size
        )
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
