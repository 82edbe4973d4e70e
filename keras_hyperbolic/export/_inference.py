"""What every exporter checks and switches before tracing a model. Not public.

What a model serves is the model's own business (`serving_endpoints`, see
`keras_hyperbolic.models.serving`); here: the model is a built Keras model,
and its reversible stacks trace without their custom gradient.
"""

import contextlib

from keras_hyperbolic.reversible import reversible_layers


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
