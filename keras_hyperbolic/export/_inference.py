"""What every exporter checks before tracing a model. Not public.

What a model serves is the model's own business (`serving_endpoints`, see
`keras_hyperbolic.models.serving`); here: the model is a built Keras model.
The exporters trace it under `reversible.plain_autodiff`.
"""


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
