"""Deployment: SavedModels for TF Serving (signatures, warmup, model config) and TFLite/LiteRT.

Models declare what they serve (`serving_endpoints`, `serving_family`: see
`keras_hyperbolic.models.serving`); `signatures.endpoints(model)` takes those or
the generic signature, `saved_model` and `tflite` trace them (TFLite with the
poolings' constant kernels), `warmup` and `serving_config` write what TF
Serving reads. Nothing here knows a model class by name.
"""

from keras_hyperbolic.export.saved_model import (  # noqa: F401
    export_saved_model,
    model_from_metadata,
    read_metadata,
)
from keras_hyperbolic.export.serving_config import (  # noqa: F401
    write_batching_config,
    write_models_config,
)
from keras_hyperbolic.export.tflite import export_tflite, tflite_ops  # noqa: F401
from keras_hyperbolic.export.signatures import (  # noqa: F401
    endpoints,
    model_family,
    sample_latent,
)
from keras_hyperbolic.export.warmup import (  # noqa: F401
    predict,
    predict_request,
    read_warmup_requests,
)
