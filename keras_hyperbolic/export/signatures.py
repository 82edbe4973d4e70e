"""The signatures a model is exported with: the ones it declares, or the generic one.

Each model declares its own (`keras_hyperbolic.models.serving`):
`model.serving_endpoints(input_shape, dynamic_spatial, batch_size)` returns
the ordered `{name: Endpoint}` (the first is also `serving_default`), and
`model.serving_family` names its task in the export metadata. A Keras model
without `serving_endpoints` gets the generic signature, whatever its class is
called. `endpoints(model)` is what the SavedModel and TFLite exporters trace
(with `training=False`); an endpoint's `tflite` flag says whether
`export_tflite` includes it by default.

Signatures of the package's models (documented in docs/guides/deployment.md):

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
| generic (no `serving_endpoints`) | `serving_default` | `inputs` | `outputs` |

`sample` draws one code per seed, `z = latent_std * N(0, I)` from
`tf.random.stateless_normal(seed=[seed, 0])` (`sample_latent`), so a request
is reproducible and batches like any other input; it is not in TFLite by default.
"""

from keras_hyperbolic.models.serving import (  # noqa: F401  (Endpoint, sample_latent: public here too)
    GENERIC_FAMILY,
    Endpoint,
    generic_endpoints,
    sample_latent,
)

#: `model_family` of a model that declares `serving_endpoints` but no `serving_family`.
CUSTOM_FAMILY = "custom"


def model_family(model):
    """The model's `serving_family`; "generic" without `serving_endpoints`, "custom" without a name.

    Raises:
        TypeError: `serving_family` is not a non-empty string.
    """
    family = getattr(model, "serving_family", None)
    if family is None:
        return CUSTOM_FAMILY if hasattr(model, "serving_endpoints") else GENERIC_FAMILY
    if not isinstance(family, str) or not family:
        raise TypeError(
            f"Invalid `serving_family` of model {model.name!r} ({type(model).__name__}): "
            f"expected a non-empty string. Received: serving_family={family!r}"
        )
    return family


def endpoints(model, input_shape=None, dynamic_spatial=True, batch_size=None):
    """The ordered `{name: Endpoint}` of `model`'s signatures (the first is `serving_default`).

    Args:
        model: a built Keras model: its `serving_endpoints`, or the generic
            `inputs` -> `outputs` signature when it has none.
        input_shape: overrides the image input's shape (batch axis included).
        dynamic_spatial: leave spatial sizes free (`None`) where the model allows.
        batch_size: a fixed batch size (TFLite); `None` leaves it free.

    Raises:
        TypeError: `serving_endpoints` returned something else than a non-empty
            `{name: Endpoint}` dict keyed by the endpoints' names.
    """
    declare = getattr(model, "serving_endpoints", None)
    if declare is None:
        return generic_endpoints(model, input_shape=input_shape, batch_size=batch_size)
    declared = declare(input_shape=input_shape, dynamic_spatial=dynamic_spatial,
                       batch_size=batch_size)
    if (
        not isinstance(declared, dict)
        or not declared
        or not all(isinstance(e, Endpoint) and e.name == k for k, e in declared.items())
    ):
        raise TypeError(
            f"`serving_endpoints` of model {model.name!r} ({type(model).__name__}) must return "
            "a non-empty dict {name: keras_hyperbolic.models.serving.Endpoint} keyed by each "
            f"endpoint's name. Received: {declared!r}"
        )
    return declared


def tflite_signatures(endpoints):
    """Names of the endpoints `export_tflite` includes by default (those with `tflite=True`)."""
    return tuple(name for name, endpoint in endpoints.items() if endpoint.tflite)
