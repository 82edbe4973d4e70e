"""TF Serving warmup records and a local replay of `PredictRequest`s through a SavedModel.

TF Serving reads `assets.extra/tf_serving_warmup_requests` (a TFRecord file of
`PredictionLog` protos) when it loads a version and runs every request once,
so the first real request does not pay for graph initialisation. One record
per signature is written, with a small valid example input.

`predict(saved_model, request)` runs a `PredictRequest` through the matching
signature of a SavedModel (loaded with `tf.saved_model.load` or a path) and
returns the `PredictResponse` the server would send: what the tests and
`keras-hyperbolic inspect` use where no model server is available.
"""

import importlib
import os

import tensorflow as tf

WARMUP_FILE = "tf_serving_warmup_requests"
ASSETS_EXTRA = "assets.extra"


def import_serving_api(package, names, purpose, alternative=""):
    """The modules `tensorflow_serving.<package>.<name>` for `names`, as a tuple.

    Raises an ImportError saying that `purpose` needs tensorflow-serving-api
    (and the `alternative`, if any) where the package is not installed.
    """
    try:
        # The package first, as `from tensorflow_serving.<package> import ...` does.
        parent = importlib.import_module(f"tensorflow_serving.{package}")
        return tuple(importlib.import_module(f"{parent.__name__}.{n}") for n in names)
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{purpose} needs the `tensorflow-serving-api` package "
            f"(pip install 'tensorflow-serving-api>=2.21,<2.22'){alternative}."
        ) from error


def serving_apis():
    """`(predict_pb2, prediction_log_pb2)` from tensorflow-serving-api, with a clear error."""
    return import_serving_api(
        "apis",
        ("predict_pb2", "prediction_log_pb2"),
        "Writing TF Serving warmup records",
        ", or pass warmup_requests=False",
    )


def predict_request(model_name, signature_name, inputs):
    """A `PredictRequest` for `{input name: array}` (tensors made with `tf.make_tensor_proto`)."""
    predict_pb2, _ = serving_apis()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def warmup_records(model_name, endpoints, seed=0):
    """One `PredictionLog` per endpoint, carrying a request with its example inputs."""
    _, prediction_log_pb2 = serving_apis()
    records = []
    for name, endpoint in endpoints.items():
        request = predict_request(model_name, name, endpoint.example_inputs(seed))
        records.append(
            prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
        )
    return records


def write_warmup_requests(version_dir, model_name, endpoints, seed=0):
    """Writes `version_dir/assets.extra/tf_serving_warmup_requests`; returns its path."""
    records = warmup_records(model_name, endpoints, seed)
    directory = os.path.join(version_dir, ASSETS_EXTRA)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return path


def read_warmup_requests(path):
    """The `PredictionLog`s of a warmup file (or of `<version dir>/assets.extra/...`)."""
    if os.path.isdir(path):
        path = os.path.join(path, ASSETS_EXTRA, WARMUP_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No warmup file at {path!r}.")
    _, prediction_log_pb2 = serving_apis()
    logs = []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(raw)
        logs.append(log)
    return logs


def predict(saved_model, request):
    """Runs a `PredictRequest` through a SavedModel's signature; returns a `PredictResponse`.

    Args:
        saved_model: a path to a SavedModel version directory, or the object
            `tf.saved_model.load` returned.
        request: a `tensorflow_serving.apis.predict_pb2.PredictRequest`.

    Raises:
        ValueError: unknown signature, or inputs that do not match its names.
    """
    predict_pb2, _ = serving_apis()
    if isinstance(saved_model, (str, os.PathLike)):
        saved_model = tf.saved_model.load(os.fspath(saved_model))
    name = request.model_spec.signature_name or "serving_default"
    if name not in saved_model.signatures:
        raise ValueError(
            f"Invalid value for `request.model_spec.signature_name`: the SavedModel has the "
            f"signatures {sorted(saved_model.signatures)}. Received: {name!r}"
        )
    function = saved_model.signatures[name]
    expected = set(function.structured_input_signature[1])
    if set(request.inputs) != expected:
        raise ValueError(
            f"Invalid inputs for signature {name!r}: expected {sorted(expected)}. "
            f"Received: {sorted(request.inputs)}"
        )
    inputs = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
    outputs = function(**inputs)
    wanted = set(request.output_filter) or set(outputs)
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.signature_name = name
    for key, value in outputs.items():
        if key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response
