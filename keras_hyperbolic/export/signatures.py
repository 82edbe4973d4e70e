"""The serving signatures of each model family: names, named inputs and outputs, examples.

One `Endpoint` per signature: a function of named tensors returning a dict of
named tensors, its input `tf.TensorSpec`s (the names are the signature's input
keys) and a small example input (used for the warmup records). The SavedModel
and TFLite exporters both trace these functions, with `training=False`.

Signatures (documented in the README):

| family | signature | inputs | outputs |
|---|---|---|---|
| segmentation | `serving_default` | `images` (batch, *spatial, C) float32 | `probabilities` (batch, *spatial, K) float32, `labels` (batch, *spatial) int64 |
| classification | `serving_default` | `images` | `probabilities` (batch, K), `labels` (batch,) int64 |
| vae | `reconstruct` (= `serving_default`) | `images` | `reconstruction`, `latent` |
| vae | `encode` | `images` | `latent` (batch, latent_dim) |
| vae | `decode` | `latent` | `images` |
| vae | `sample` | `seeds` (batch,) int64 | `images`, `latent` |
| flow | `log_prob` (= `serving_default`) | `images` | `log_prob` (batch,), `bits_per_dim` (batch,) |
| flow | `sample` | `seeds` (batch,) int64 | `images` |
| generic | `serving_default` | `inputs` | `outputs` |

`sample` draws one code per seed, `z = latent_std * N(0, I)` from
`tf.random.stateless_normal(seed=[seed, 0])`, so a request is reproducible and
batches like any other input.
"""

import dataclasses
import math
from typing import Callable

import numpy as np
import tensorflow as tf

from keras_hyperbolic.export._inference import (
    built_input_shape,
    input_multiple,
    model_family,
)

#: Spatial size used in examples along an axis the signature leaves free.
EXAMPLE_SPATIAL_SIZE = 8
EXAMPLE_BATCH = 2


@dataclasses.dataclass
class Endpoint:
    """One signature: `function(**inputs) -> {output name: tensor}`."""

    name: str
    function: Callable
    input_specs: list
    example_shapes: dict  # input name -> concrete shape for examples
    output_names: tuple

    def example_inputs(self, seed=0):
        rng = np.random.default_rng(seed)
        out = {}
        for spec in self.input_specs:
            shape = self.example_shapes[spec.name]
            if spec.dtype.is_integer:
                out[spec.name] = np.arange(np.prod(shape), dtype=spec.dtype.as_numpy_dtype).reshape(shape)
            else:
                out[spec.name] = rng.random(shape).astype(spec.dtype.as_numpy_dtype)
        return out


def _seeded_normal(seeds, size, std):
    seeds = tf.cast(seeds, tf.int64)

    def draw(seed):
        return tf.random.stateless_normal((size,), seed=tf.stack([seed, tf.zeros_like(seed)]))

    return std * tf.map_fn(draw, seeds, fn_output_signature=tf.float32)


def sample_latent(seeds, size, std=1.0):
    """The codes the `sample` signatures draw for `seeds` (exposed for tests and clients)."""
    return _seeded_normal(tf.convert_to_tensor(seeds), int(size), float(std))


def _example_shape(spec_shape, built_shape, multiple):
    shape = [EXAMPLE_BATCH]
    for dim, built in zip(spec_shape[1:-1], built_shape[1:-1]):
        if dim is not None:
            shape.append(int(dim))
        elif built is not None and built <= EXAMPLE_SPATIAL_SIZE:
            shape.append(int(built))
        else:
            shape.append(multiple * max(1, math.ceil(EXAMPLE_SPATIAL_SIZE / multiple)))
    shape.append(int(spec_shape[-1]))
    return tuple(shape)


def _check_input_shape(input_shape, built, name="input_shape"):
    shape = tuple(None if s is None else int(s) for s in input_shape)
    if len(shape) != len(built) or shape[-1] != built[-1]:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected {len(built)} axes (batch first) "
            f"with {built[-1]} channels last, like the model's input {built}. "
            f"Received: {name}={tuple(input_shape)}"
        )
    return shape


def _image_spec(model, family, input_shape, dynamic_spatial):
    built = built_input_shape(model)
    if input_shape is not None:
        shape = _check_input_shape(input_shape, built)
    elif dynamic_spatial and family == "segmentation":
        # Fully convolutional: any size that is a multiple of the pooling factor.
        shape = (None,) + (None,) * (len(built) - 2) + (built[-1],)
    else:
        shape = (None,) + tuple(built[1:])
    return tf.TensorSpec(shape, tf.float32, name="images"), built


def _probabilities(logits):
    if logits.shape[-1] == 1:
        p = tf.sigmoid(logits)
        return p, tf.cast(p[..., 0] > 0.5, tf.int64)
    return tf.nn.softmax(logits, axis=-1), tf.argmax(logits, axis=-1)


def endpoints(model, input_shape=None, dynamic_spatial=True, batch_size=None):
    """The ordered `{name: Endpoint}` of `model`'s signatures (the first is `serving_default`).

    Args:
        model: a built Keras model of a known family (see module docstring).
        input_shape: overrides the image input's shape (batch axis included).
        dynamic_spatial: leave spatial sizes free (`None`) where the model allows.
        batch_size: a fixed batch size (TFLite); `None` leaves it free.
    """
    family = model_family(model)
    multiple = input_multiple(model)

    def with_batch(spec):
        if batch_size is None:
            return spec
        return tf.TensorSpec((batch_size,) + tuple(spec.shape[1:]), spec.dtype, name=spec.name)

    def shapes(spec, built):
        example = _example_shape(tuple(spec.shape), built, multiple)
        if spec.shape[0] is not None:
            example = (spec.shape[0],) + example[1:]
        return {spec.name: example}

    if family in ("segmentation", "classification", "generic"):
        image, built = _image_spec(model, family, input_shape, dynamic_spatial)
        image = with_batch(image)
        if family == "generic":
            spec = tf.TensorSpec(image.shape, image.dtype, name="inputs")

            def generic(inputs):
                return {"outputs": model(inputs, training=False)}

            return {"serving_default": Endpoint(
                "serving_default", generic, [spec], shapes(spec, built), ("outputs",))}

        def classify(images):
            probabilities, labels = _probabilities(model(images, training=False))
            return {"probabilities": probabilities, "labels": labels}

        return {"serving_default": Endpoint(
            "serving_default", classify, [image], shapes(image, built),
            ("probabilities", "labels"))}

    if family == "vae":
        image, built = _image_spec(model, family, input_shape, False)
        image = with_batch(image)
        latent_dim = int(model.latent_dim)
        latent = with_batch(tf.TensorSpec((None, latent_dim), tf.float32, name="latent"))
        seeds = with_batch(tf.TensorSpec((None,), tf.int64, name="seeds"))
        batch = batch_size or EXAMPLE_BATCH
        std = float(getattr(model, "latent_std", 1.0))

        def reconstruct(images):
            z = model.encode(images, training=False)
            return {"reconstruction": model.decode(z, training=False), "latent": z}

        def encode(images):
            return {"latent": model.encode(images, training=False)}

        def decode(latent):
            return {"images": model.decode(latent, training=False)}

        def sample(seeds):
            z = _seeded_normal(seeds, latent_dim, std)
            return {"images": model.decode(z, training=False), "latent": z}

        return {
            "reconstruct": Endpoint("reconstruct", reconstruct, [image], shapes(image, built),
                                    ("reconstruction", "latent")),
            "encode": Endpoint("encode", encode, [image], shapes(image, built), ("latent",)),
            "decode": Endpoint("decode", decode, [latent], {"latent": (batch, latent_dim)},
                               ("images",)),
            "sample": Endpoint("sample", sample, [seeds], {"seeds": (batch,)},
                               ("images", "latent")),
        }

    # family == "flow"
    image, built = _image_spec(model, family, input_shape, False)
    image = with_batch(image)
    seeds = with_batch(tf.TensorSpec((None,), tf.int64, name="seeds"))
    batch = batch_size or EXAMPLE_BATCH
    data_shape = tuple(int(s) for s in image.shape[1:])
    data_dim = int(np.prod(data_shape))
    std = 1.0  # standard normal base

    def log_prob(images):
        lp = model.log_prob(images, training=False)
        if hasattr(model, "bits_per_dim_of_density"):  # discrete data: counts the bin width
            bits = model.bits_per_dim_of_density(lp)
        else:
            bits = -lp / (data_dim * math.log(2.0))
        return {"log_prob": lp, "bits_per_dim": bits}

    def sample_flow(seeds):
        z = _seeded_normal(seeds, data_dim, std)
        z = tf.reshape(z, (-1,) + tuple(model.latent_shape if hasattr(model, "latent_shape")
                                        else data_shape))
        return {"images": model.inverse(z, training=False)}

    return {
        "log_prob": Endpoint("log_prob", log_prob, [image], shapes(image, built),
                             ("log_prob", "bits_per_dim")),
        "sample": Endpoint("sample", sample_flow, [seeds], {"seeds": (batch,)}, ("images",)),
    }
