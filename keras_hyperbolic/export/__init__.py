"""Deployment: SavedModels for TF Serving (signatures, warmup, model config) and TFLite/LiteRT."""

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
from keras_hyperbolic.export.signatures import endpoints, sample_latent  # noqa: F401
from keras_hyperbolic.export.warmup import (  # noqa: F401
    predict,
    predict_request,
    read_warmup_requests,
)
