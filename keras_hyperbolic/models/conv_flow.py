"""`ConvFlow`: a fully convolutional normalizing flow (Finzi et al., "Invertible Convolutional Networks").

Data `x` in [0, 1]^D (dequantised pixels) goes through

    u = logit(a + (1 - 2a) x)                                   (RealNVP's preprocessing)
    z = flow(u)   flow = per-position affine, then per level:
                         invertible pooling (multi-scale squeeze),
                         depth x [InvertibleConv (circular, FFT inverse) -> SneakyReLU],
                         and a last InvertibleConv and per-position affine,

with a standard normal base on `z`. Every step is counted in the density:

    log p(x) = log N(z; 0, I) + log|det dflow/du| + sum log((1 - 2a) / (s (1 - s))),  s = a + (1 - 2a) x.

Discrete data `k / num_bins` is dequantised with uniform noise,
`x = (k + u) / num_bins`, so `log P(k) >= E_u log p(x) - D log num_bins` and

    bits/dim = -(log p(x) - D log num_bins) / (D log 2).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.layers.elementwise_affine import ElementwiseAffine
from keras_hyperbolic.models.generative import GenerativeModel
from keras_hyperbolic.validation import (
    check_choice,
    check_positive_float,
    check_positive_int,
    invalid,
)

POOLINGS = ("haar", "db2", "squeeze")


@keras.saving.register_keras_serializable(package="keras_hyperbolic")
class ConvFlow(GenerativeModel):
    """Fully convolutional normalizing flow with exact log-likelihood.

    Invertible (circular, FFT-inverted) convolutions, SneakyReLU activations and
    invertible poolings, stacked into a memory-efficient `ReversibleSequence`;
    standard normal base. Trained by maximum likelihood with `model.fit(x)` on
    discrete data `x = k / num_bins` in [0, 1): every training step draws fresh
    uniform dequantisation noise and minimises bits per dimension (`loss`):
    in training `call` dequantises its input and adds that loss (it needs the
    log-determinant computed with the codes); Keras's own `train_step` does
    the rest.
    `call(x)` maps data to latent codes, `inverse(z)` back; with
    `log_det_jacobian` this makes the model usable as a bijector
    (`keras_hyperbolic.bijectors.LayerBijector(flow)` takes the generative
    direction `z -> x` as its forward).

    Args:
        input_shape: data shape without batch, `(*spatial, channels)` with 1-3
            spatial axes, each divisible by `2**levels`.
        levels: number of invertible poolings (scales).
        depth: `[InvertibleConv, SneakyReLU]` pairs per level.
        kernel_size: odd kernel size of the invertible convolutions.
        pooling: "haar" or "db2" (wavelet pooling) or "squeeze" (pixel shuffle).
        slope: SneakyReLU slope for `x -> -inf`.
        num_bins: number of discrete levels of the data (17 for scikit-learn
            digits, 256 for 8-bit images).
        logit_alpha: `a` of the logit preprocessing, in [0, 0.5).
        memory_efficient: train with activations rebuilt by inversion.
        **kwargs: `keras.Model` arguments.

    Input shape:
        `(batch, *input_shape)`, values in [0, 1].

    Output shape:
        `call`: `(batch, *latent_shape)`, the latent codes.

    Raises:
        ValueError: bad arguments, or an input whose shape differs from
            `input_shape`.

    Example:

    >>> flow = ConvFlow((8, 8, 1), levels=2, depth=2, num_bins=17)
    >>> flow.compile(optimizer="adam")
    >>> flow.fit(x_train, epochs=20, batch_size=64)       # loss = bits/dim
    >>> flow.bits_per_dim(x_test, seed=0).mean()
    >>> flow.sample(16, seed=0)

    Reference:
        Finzi, Izmailov, Maddox, Kirichenko, Wilson, "Invertible Convolutional
        Networks" (ICML 2019 workshop); Dinh et al., "Density estimation using
        Real NVP" (2017) for dequantisation and the logit preprocessing.
    """

    #: `LayerBijector` takes the generative direction (z -> x) as forward.
    bijector_forward_is_inverse = True

    def __init__(
        self,
        input_shape,
        levels=2,
        depth=2,
        kernel_size=3,
        pooling="haar",
        slope=0.5,
        num_bins=256,
        logit_alpha=0.05,
        memory_efficient=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # === Config ===
        self.levels = check_positive_int(levels, "levels", minimum=0)
        self._set_data_shape(input_shape, self.levels)
        self.depth = check_positive_int(depth, "depth", minimum=0)
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.pooling = check_choice(pooling, POOLINGS, "pooling")
        self.slope = check_positive_float(slope, "slope")
        self.num_bins = check_positive_int(num_bins, "num_bins", minimum=2)
        if (
            isinstance(logit_alpha, bool)
            or not isinstance(logit_alpha, (int, float, np.floating))
            or not 0 <= logit_alpha < 0.5
        ):
            raise invalid("logit_alpha", logit_alpha, "a number in [0, 0.5)")
        self.logit_alpha = float(logit_alpha)
        self.memory_efficient = bool(memory_efficient)

        # === Layers ===
        from keras_hyperbolic import layers as khl
        from keras_hyperbolic.reversible import ReversibleSequence

        conv = getattr(khl, f"InvertibleConv{self.rank}D")
        stack = [ElementwiseAffine(name="affine_in")]
        for level in range(self.levels):
            if self.pooling == "squeeze":
                stack.append(getattr(khl, f"PixelShufflePooling{self.rank}D")(name=f"pool_{level}"))
            else:
                stack.append(
                    getattr(khl, f"WaveletPooling{self.rank}D")(
                        wavelet=self.pooling, name=f"pool_{level}"
                    )
                )
            for index in range(self.depth):
                stack.append(conv(kernel_size=self.kernel_size, name=f"conv_{level}_{index}"))
                stack.append(khl.SneakyReLU(slope=self.slope, name=f"act_{level}_{index}"))
        stack.append(conv(kernel_size=self.kernel_size, name="conv_out"))
        stack.append(ElementwiseAffine(name="affine_out"))
        self.flow = ReversibleSequence(stack, memory_efficient=self.memory_efficient, name="flow")
        self.flow.build((None,) + self.data_shape)
        self.latent_shape = tuple(self.flow.compute_output_shape((None,) + self.data_shape))[1:]
        self.dequantization_seed = keras.random.SeedGenerator(0)
        self.build((None,) + self.data_shape)

    # === Maps ===

    def _preprocess(self, x):
        """`(logit(a + (1 - 2a) x), per-example log-det of that map)`."""
        a = self.logit_alpha
        s = a + (1.0 - 2.0 * a) * x
        u = tf.math.log(s) - tf.math.log1p(-s)
        log_det = math.log(1.0 - 2.0 * a) - tf.math.log(s) - tf.math.log1p(-s)
        return u, tf.reduce_sum(tf.reshape(log_det, (tf.shape(x)[0], -1)), axis=1)

    def forward_and_log_det(self, x, training=None):
        """`(z, log|det dz/dx|)` for data `x` in [0, 1]."""
        x = self._check_data(x)
        u, log_det_pre = self._preprocess(x)
        z, log_det_flow = self.flow.forward_and_log_det(u, training=training)
        return z, log_det_pre + log_det_flow

    def call(self, inputs, training=None):
        x = self._check_data(inputs)
        if training:
            # The training loss needs the log-determinant along with z.
            x = self.dequantize(x, seed=self.dequantization_seed)
            z, log_det = self.forward_and_log_det(x, training=True)
            self.add_loss(tf.reduce_mean(self.bits_per_dim_of_density(self._log_prob_of(z, log_det))))
            return z
        u, _ = self._preprocess(x)
        return self.flow(u, training=training)

    def inverse(self, z, training=None):
        """Data `x` for latent codes `z` (the generative direction)."""
        z = tf.convert_to_tensor(z, dtype=self.compute_dtype)
        if tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"Invalid shape for argument `z`: expected (batch, "
                f"{', '.join(map(str, self.latent_shape))}). Received: z.shape={tuple(z.shape)}"
            )
        u = self.flow.inverse(z, training=training)
        a = self.logit_alpha
        return (tf.sigmoid(u) - a) / (1.0 - 2.0 * a)

    def log_det_jacobian(self, x, training=None):
        return self.forward_and_log_det(x, training=training)[1]

    def log_prob(self, x, training=False):
        """Log-density of data `x` in [0, 1] (nats), shape `(batch,)`."""
        z, log_det = self.forward_and_log_det(x, training=training)
        return self._log_prob_of(z, log_det)

    def _log_prob_of(self, z, log_det):
        flat = tf.reshape(z, (tf.shape(z)[0], -1))
        base = -0.5 * tf.reduce_sum(tf.square(flat), axis=1) - 0.5 * self.data_dim * math.log(
            2.0 * math.pi
        )
        return base + log_det

    def dequantize(self, x, seed=None):
        """`x + u / num_bins` with `u ~ U[0, 1)`, for data `x = k / num_bins`.

        Inside a replica of a `tf.distribute` strategy with `n` replicas, every
        replica draws the noise of `n` times its batch from the same seed and
        keeps its own slice: the replicas get different noise, and with an
        even split of the global batch exactly the noise one device would
        draw for it.
        """
        x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
        context = tf.distribute.get_replica_context()
        replicas = 1 if context is None else context.num_replicas_in_sync
        if replicas == 1:
            noise = keras.random.uniform(tf.shape(x), dtype=x.dtype, seed=seed)
            return x + noise / self.num_bins
        batch = tf.shape(x)[0]
        noise = keras.random.uniform(
            tf.concat([[replicas * batch], tf.shape(x)[1:]], axis=0), dtype=x.dtype, seed=seed
        )
        start = tf.cast(context.replica_id_in_sync_group, batch.dtype) * batch
        return x + noise[start : start + batch] / self.num_bins

    def bits_per_dim_of_density(self, log_prob):
        """Bits per dimension of discrete data from the log-density of its dequantised version."""
        return -(log_prob - self.data_dim * math.log(self.num_bins)) / (
            self.data_dim * math.log(2.0)
        )

    def bits_per_dim(self, x, seed=None, dequantize=True):
        """Per-example bits per dimension of discrete data `x = k / num_bins` (numpy).

        With `dequantize=True` uniform noise (seeded by `seed`) is added first:
        the result is the usual variational bound on the discrete data's bits/dim.
        """
        x = self._check_data(x)
        if dequantize:
            x = self.dequantize(x, seed=keras.random.SeedGenerator(0 if seed is None else seed))
        return keras.ops.convert_to_numpy(self.bits_per_dim_of_density(self.log_prob(x)))

    # === Training ===

    def objective(self, x, y_pred, training):
        if training:
            return tf.constant(0.0)  # `call` added the bits/dim of the dequantised batch
        x = self.dequantize(self._check_data(x), seed=self.dequantization_seed)
        return tf.reduce_mean(self.bits_per_dim_of_density(self.log_prob(x, training=False)))

    # === Generation ===

    @property
    def latent_sample_shape(self):
        return self.latent_shape

    def generate(self, z):
        return self.inverse(z)

    # === Shapes and config ===

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.latent_shape

    def compute_input_shape(self, output_shape):
        return (output_shape[0],) + self.data_shape

    def get_config(self):
        return {
            **super().get_config(),
            "levels": self.levels,
            "depth": self.depth,
            "kernel_size": self.kernel_size,
            "pooling": self.pooling,
            "slope": self.slope,
            "num_bins": self.num_bins,
            "logit_alpha": self.logit_alpha,
            "memory_efficient": self.memory_efficient,
        }

    # === Serving ===

    serving_family = "flow"

    def _serving_endpoints(self, images, image_examples, seeds, seed_examples, batch_size):
        """The flow's signatures (`serving_endpoints`):

        - `log_prob` (first, so also `serving_default`): `images` ->
          `log_prob` `(batch,)` (nats) and `bits_per_dim` `(batch,)` of the
          discrete data (`bits_per_dim_of_density`);
        - `sample` (not in TFLite by default): `seeds` -> `images`, `inverse(z)`
          of one `z ~ N(0, I)` per seed.
        """
        from keras_hyperbolic.models import serving

        latent_shape = tuple(self.latent_shape)
        latent_size = int(np.prod(latent_shape))

        def log_prob(images):
            log_prob = self.log_prob(images, training=False)
            return {"log_prob": log_prob, "bits_per_dim": self.bits_per_dim_of_density(log_prob)}

        def sample(seeds):
            z = tf.reshape(serving.sample_latent(seeds, latent_size), (-1,) + latent_shape)
            return {"images": self.inverse(z, training=False)}

        return {
            "log_prob": serving.Endpoint("log_prob", log_prob, [images], image_examples,
                                         ("log_prob", "bits_per_dim")),
            "sample": serving.Endpoint("sample", sample, [seeds], seed_examples, ("images",),
                                       tflite=False),
        }
