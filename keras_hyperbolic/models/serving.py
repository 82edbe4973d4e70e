"""What a model serves: its signatures (`Endpoint`s), declared by the model itself.

A model that knows its task defines

- `serving_endpoints(input_shape=None, dynamic_spatial=True, batch_size=None)`:
  the ordered `{name: Endpoint}` of its signatures (the first one is also
  `serving_default` in a SavedModel);
- `serving_family`: a short name of its task written in the export metadata
  (`"segmentation"`, `"classification"`, `"vae"`, `"flow"`, ...).

`keras_hyperbolic.export` traces whatever endpoints a model returns; it never
looks at class names. A Keras model without `serving_endpoints` is served as
`generic_endpoints(model)`: one `serving_default` signature, `inputs` ->
`outputs`. Families share their code here: the mixins `ClassificationServing`
(classifiers of whole examples) and `SegmentationServing` (per-pixel
classifiers), both over `classification_endpoints`.

This module imports nothing of `keras_hyperbolic.export`, so models and user
code can use it without the exporters.

Example (a user model with its own signature):

>>> class Denoiser(keras.Model):
...     serving_family = "denoising"
...
...     def serving_endpoints(self, input_shape=None, dynamic_spatial=True, batch_size=None):
...         spec, examples = image_input(self, input_shape, dynamic_spatial, batch_size)
...
...         def denoise(images):
...             return {"denoised": self(images, training=False)}
...
...         return {"denoise": Endpoint("denoise", denoise, [spec], examples, ("denoised",))}
"""

import dataclasses
import math
from typing import Callable

import numpy as np
import tensorflow as tf

#: Spatial size used in examples along an axis the signature leaves free.
EXAMPLE_SPATIAL_SIZE = 8
EXAMPLE_BATCH = 2
#: `serving_family` of a model that does not declare one.
GENERIC_FAMILY = "generic"


@dataclasses.dataclass
class Endpoint:
    """One signature: `function(**inputs) -> {output name: tensor}`.

    Attributes:
        name: the signature's name.
        function: called with one keyword argument per input spec; returns a
            dict of named tensors (traced with `tf.function`, inference only).
        input_specs: list of `tf.TensorSpec`s; their names are the input keys.
        example_shapes: `{input name: concrete shape}` of a small valid example
            (TF Serving warmup records).
        output_names: the keys `function` returns.
        tflite: whether `export_tflite` includes this signature by default
            (False for signatures that need non-builtin ops, e.g. random sampling).
    """

    name: str
    function: Callable
    input_specs: list
    example_shapes: dict
    output_names: tuple
    tflite: bool = True

    def example_inputs(self, seed=0):
        """`{input name: numpy array}` of the example shapes (integers count up)."""
        rng = np.random.default_rng(seed)
        out = {}
        for spec in self.input_specs:
            shape = self.example_shapes[spec.name]
            if spec.dtype.is_integer:
                out[spec.name] = np.arange(np.prod(shape), dtype=spec.dtype.as_numpy_dtype).reshape(shape)
            else:
                out[spec.name] = rng.random(shape).astype(spec.dtype.as_numpy_dtype)
        return out


# === Shapes ===


def built_input_shape(model):
    """The input shape the model was built with, batch axis included (tuple).

    Raises:
        ValueError: the model was not built with one input shape.
    """
    data_shape = getattr(model, "data_shape", None)
    if data_shape is not None:
        return (None,) + tuple(data_shape)
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        shape = next(iter(shapes.values()))
        if isinstance(shape, (list, tuple)) and all(
            s is None or isinstance(s, (int, np.integer)) for s in shape
        ):
            return (None,) + tuple(shape[1:])
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs and len(inputs) == 1:
        return (None,) + tuple(inputs[0].shape[1:])
    raise ValueError(
        f"Cannot tell the input shape of model {model.name!r} ({type(model).__name__}): it "
        "was not built with one input shape. Pass `input_shape=(None, *spatial, channels)`."
    )


def _check_input_shape(input_shape, built, name="input_shape"):
    shape = tuple(None if s is None else int(s) for s in input_shape)
    if len(shape) != len(built) or shape[-1] != built[-1]:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected {len(built)} axes (batch first) "
            f"with {built[-1]} channels last, like the model's input {built}. "
            f"Received: {name}={tuple(input_shape)}"
        )
    return shape


def _example_shape(spec_shape, built_shape, multiple):
    shape = [EXAMPLE_BATCH if spec_shape[0] is None else int(spec_shape[0])]
    for dim, built in zip(spec_shape[1:-1], built_shape[1:-1]):
        if dim is not None:
            shape.append(int(dim))
        elif built is not None and built <= EXAMPLE_SPATIAL_SIZE:
            shape.append(int(built))
        else:
            shape.append(multiple * max(1, math.ceil(EXAMPLE_SPATIAL_SIZE / multiple)))
    shape.append(int(spec_shape[-1]))
    return tuple(shape)


def with_batch_size(spec, batch_size):
    """`spec` with a fixed batch size (TFLite), or unchanged for `batch_size=None`."""
    if batch_size is None:
        return spec
    return tf.TensorSpec((int(batch_size),) + tuple(spec.shape[1:]), spec.dtype, name=spec.name)


def image_input(model, input_shape=None, dynamic_spatial=False, batch_size=None, multiple=1,
                name="images"):
    """The float32 image input of a signature: `(spec, {name: example shape})`.

    Args:
        model: a built model (its built input shape is the default).
        input_shape: overrides the shape (batch axis included); the rank and
            channel count must be the model's.
        dynamic_spatial: leave the spatial sizes free (fully convolutional models).
        batch_size: a fixed batch size; `None` leaves it free.
        multiple: spatial sizes of the examples are multiples of this.
        name: the input's name.
    """
    built = built_input_shape(model)
    if input_shape is not None:
        shape = _check_input_shape(input_shape, built)
    elif dynamic_spatial:
        shape = (None,) * (len(built) - 1) + (built[-1],)
    else:
        shape = (None,) + tuple(built[1:])
    spec = with_batch_size(tf.TensorSpec(shape, tf.float32, name=name), batch_size)
    return spec, {name: _example_shape(tuple(spec.shape), built, multiple)}


def seed_input(batch_size=None):
    """The `seeds` input of a sampling signature: `(spec, {"seeds": example shape})`."""
    spec = with_batch_size(tf.TensorSpec((None,), tf.int64, name="seeds"), batch_size)
    return spec, {"seeds": (batch_size or EXAMPLE_BATCH,)}


def sample_latent(seeds, size, std=1.0):
    """`std * N(0, I)` codes of length `size`, one per seed (`stateless_normal(seed=[seed, 0])`).

    What the `sample` signatures draw, so a request is reproducible and batches
    like any other input.
    """
    seeds = tf.cast(tf.convert_to_tensor(seeds), tf.int64)
    size = int(size)

    def draw(seed):
        return tf.random.stateless_normal((size,), seed=tf.stack([seed, tf.zeros_like(seed)]))

    return float(std) * tf.map_fn(draw, seeds, fn_output_signature=tf.float32)


# === Families ===


def _probabilities(logits):
    if logits.shape[-1] == 1:
        p = tf.sigmoid(logits)
        return p, tf.cast(p[..., 0] > 0.5, tf.int64)
    return tf.nn.softmax(logits, axis=-1), tf.argmax(logits, axis=-1)


def classification_endpoints(model, input_shape=None, dynamic_spatial=False, batch_size=None,
                             multiple=1):
    """`serving_default`: `images` -> `probabilities` (softmax, or sigmoid for one logit),
    `labels` (argmax, int64), for a model that returns logits (per image or per pixel)."""
    spec, examples = image_input(model, input_shape, dynamic_spatial, batch_size, multiple)

    def classify(images):
        probabilities, labels = _probabilities(model(images, training=False))
        return {"probabilities": probabilities, "labels": labels}

    return {"serving_default": Endpoint(
        "serving_default", classify, [spec], examples, ("probabilities", "labels"))}


def generic_endpoints(model, input_shape=None, batch_size=None):
    """The signature of a model that declares none: `serving_default`, `inputs` -> `outputs`.

    The input takes the model's built shape (batch free); spatial sizes of the
    examples are multiples of the model's `input_multiple` attribute if it has one.
    """
    multiple = getattr(model, "input_multiple", 1)
    multiple = int(multiple) if isinstance(multiple, (int, np.integer)) else 1
    spec, examples = image_input(model, input_shape, False, batch_size, multiple, name="inputs")

    def generic(inputs):
        return {"outputs": model(inputs, training=False)}

    return {"serving_default": Endpoint(
        "serving_default", generic, [spec], examples, ("outputs",))}


class ClassificationServing:
    """Serving of a classifier of whole examples (mixin for `keras.Model`s).

    The model returns logits `(batch, K)` and takes inputs of the shape it was
    built with. Signature `serving_default`: `images` `(batch, *shape)` ->
    `probabilities` `(batch, K)` (softmax, or sigmoid for one logit) and
    `labels` `(batch,)` int64.
    """

    serving_family = "classification"

    def serving_endpoints(self, input_shape=None, dynamic_spatial=True, batch_size=None):
        """The model's signatures, `{name: Endpoint}` (see `keras_hyperbolic.models.serving`).

        Args:
            input_shape: overrides the image input's shape (batch axis included).
            dynamic_spatial: ignored: the input shape is the model's.
            batch_size: a fixed batch size (TFLite); `None` leaves it free.
        """
        return classification_endpoints(self, input_shape, False, batch_size)


class SegmentationServing(ClassificationServing):
    """Serving of a fully convolutional per-pixel classifier (mixin for `keras.Model`s).

    The model returns per-pixel logits and has an `input_multiple` (spatial
    sizes must be multiples of it). Signature `serving_default`: `images`
    `(batch, *spatial, C)` -> `probabilities` `(batch, *spatial, K)` and
    `labels` `(batch, *spatial)` int64, spatial sizes free by default
    (`dynamic_spatial=False` fixes them to the built shape's).
    """

    serving_family = "segmentation"

    def serving_endpoints(self, input_shape=None, dynamic_spatial=True, batch_size=None):
        """As `ClassificationServing.serving_endpoints`; `dynamic_spatial` frees spatial sizes."""
        return classification_endpoints(self, input_shape, dynamic_spatial, batch_size,
                                        multiple=self.input_multiple)
