"""What every exporter needs from a model: its family, its input shape, and an inference graph.

Not public. The model families are recognised by class (through the MRO, so
subclasses count), with duck typing for the generative models:

- "segmentation": `HyperbolicSegmenter`, `InvertibleUNet`, `BaselineUNet` (per-pixel logits);
- "vae": `HyperbolicVAE` (encode / decode / latent_dim);
- "flow": `ConvFlow` (log_prob / sample);
- "classification": `IRevNet` (per-image logits);
- "generic": any other built Keras model (inputs -> outputs).
"""

import contextlib

import numpy as np

SEGMENTATION = ("HyperbolicSegmenter", "InvertibleUNet", "BaselineUNet")
CLASSIFICATION = ("IRevNet",)
FAMILIES = ("segmentation", "vae", "flow", "classification", "generic")


def model_family(model):
    names = {cls.__name__ for cls in type(model).__mro__}
    if "HyperbolicVAE" in names or all(
        hasattr(model, a) for a in ("encode", "decode", "latent_dim")
    ):
        return "vae"
    if "ConvFlow" in names or all(hasattr(model, a) for a in ("log_prob", "sample")):
        return "flow"
    if names & set(SEGMENTATION):
        return "segmentation"
    if names & set(CLASSIFICATION):
        return "classification"
    return "generic"


def check_model(model, name="model"):
    """Raises unless `model` is a built Keras model (before anything is written)."""
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Invalid value for argument `{name}`. Expected a keras.Model. "
            f"Received: {name}={model!r} of type {type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"Invalid value for argument `{name}`: the model {model.name!r} is not built, so "
            "its weights and input shape are unknown. Build it first, e.g. "
            "`model.build((None, *spatial, channels))` or call it on a batch. "
            f"Received: {name}={model!r}"
        )
    return model


def built_input_shape(model):
    """The input shape the model was built with, batch axis included (tuple)."""
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


def input_multiple(model):
    """Spatial sizes must be multiples of this (1 when the model does not say)."""
    multiple = getattr(model, "input_multiple", None)
    if isinstance(multiple, (int, np.integer)):
        return int(multiple)
    levels = getattr(model, "levels", None)
    if isinstance(levels, (int, np.integer)):
        return 2 ** int(levels)
    return 1


def reversible_layers(model):
    from keras_hyperbolic.reversible import ReversibleSequence

    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, ReversibleSequence)
    ]


@contextlib.contextmanager
def plain_autodiff(model):
    """Traces the model's reversible stacks without their custom gradient.

    Inference is the same map either way; the memory-efficient path only
    changes how gradients are computed, and a `tf.custom_gradient` closure has
    no business in a serving graph. The flags are restored afterwards.
    """
    stacks = [s for s in reversible_layers(model) if s.memory_efficient]
    for stack in stacks:
        stack.memory_efficient = False
    try:
        yield model
    finally:
        for stack in stacks:
            stack.memory_efficient = True
