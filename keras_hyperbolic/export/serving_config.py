"""TF Serving's `models.config` (model_config_list) and `batching.config` files.

`tensorflow_model_server --model_config_file=<base>/models.config` serves every
model listed there; each entry names a model and its base path, under which
the server loads the integer version directories. Paths must be absolute on
the serving machine: by default they follow the `tensorflow/serving` docker
image's convention (`/models/<name>`, with the export directory mounted on
`/models`); pass `base_path_prefix` for a server that reads the directory
where it is.
"""

import os
import re

from keras_hyperbolic.export.warmup import import_serving_api

MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
DEFAULT_BASE_PATH_PREFIX = "/models"

#: Sensible defaults for small CPU servers: up to 16 requests per batch, a
#: 2 ms wait to fill it. Requests are only batched together when their
#: shapes agree (segmentation requests of different image sizes run apart).
BATCHING_DEFAULTS = {
    "max_batch_size": 16,
    "batch_timeout_micros": 2000,
    "max_enqueued_batches": 64,
    "num_batch_threads": 4,
}


def _config_proto():
    (model_server_config_pb2,) = import_serving_api(
        "config", ("model_server_config_pb2",), "Writing models.config"
    )
    return model_server_config_pb2


def version_dirs(model_dir):
    """Sorted integer versions under `model_dir` that hold a `saved_model.pb`."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(
        int(entry)
        for entry in os.listdir(model_dir)
        if entry.isdigit() and os.path.isfile(os.path.join(model_dir, entry, "saved_model.pb"))
    )


def served_models(base_dir):
    """Names of the model directories under `base_dir` with at least one version."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(
        name for name in os.listdir(base_dir) if version_dirs(os.path.join(base_dir, name))
    )


def read_models_config(path):
    """The `ModelServerConfig` proto of a `models.config` file."""
    from google.protobuf import text_format

    pb2 = _config_proto()
    config = pb2.ModelServerConfig()
    with open(path) as handle:
        text_format.Parse(handle.read(), config)
    return config


def models_config_text(names, base_path_prefix=DEFAULT_BASE_PATH_PREFIX, existing=None):
    """`model_config_list` text with an entry per name (entries of `existing` kept)."""
    from google.protobuf import text_format

    pb2 = _config_proto()
    config = pb2.ModelServerConfig()
    if existing is not None:
        config.CopyFrom(existing)
    entries = {entry.name: entry for entry in config.model_config_list.config}
    for name in names:
        entry = entries.get(name)
        if entry is None:
            entry = config.model_config_list.config.add()
            entry.name = name
        entry.base_path = base_path_prefix.rstrip("/") + "/" + name
        entry.model_platform = "tensorflow"
    return text_format.MessageToString(config)


def write_models_config(base_dir, names=None, base_path_prefix=DEFAULT_BASE_PATH_PREFIX):
    """Creates or updates `base_dir/models.config`; returns its path.

    Args:
        base_dir: the directory holding `<name>/<version>/saved_model.pb`.
        names: models to add or update (default: every model directory found).
            Entries already in the file for other models are kept.
        base_path_prefix: absolute directory where the server sees `base_dir`.
    """
    if not isinstance(base_path_prefix, str) or not base_path_prefix.startswith(("/", "gs://", "s3://")):
        raise ValueError(
            "Invalid value for argument `base_path_prefix`. Expected an absolute path or URI "
            "(TF Serving rejects relative base paths), e.g. '/models'. "
            f"Received: base_path_prefix={base_path_prefix!r}"
        )
    path = os.path.join(base_dir, MODELS_CONFIG)
    existing = read_models_config(path) if os.path.isfile(path) else None
    names = served_models(base_dir) if names is None else list(names)
    text = models_config_text(names, base_path_prefix, existing)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def batching_config_text(**overrides):
    values = dict(BATCHING_DEFAULTS)
    for key, value in overrides.items():
        if key not in values:
            raise ValueError(
                f"Invalid batching parameter {key!r}. Expected one of {sorted(values)}."
            )
        values[key] = int(value)
    lines = [
        "# TF Serving batching parameters: tensorflow_model_server --enable_batching "
        "--batching_parameters_file=batching.config",
        "# Requests are batched together only when their non-batch shapes agree.",
    ]
    lines += [f"{key} {{ value: {value} }}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_batching_config(base_dir, overwrite=False, **overrides):
    """Writes `base_dir/batching.config` (kept if present unless `overwrite`); returns its path."""
    path = os.path.join(base_dir, BATCHING_CONFIG)
    if overwrite or not os.path.isfile(path) or overrides:
        with open(path, "w") as handle:
            handle.write(batching_config_text(**overrides))
    return path


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_model_name(name):
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            "Invalid value for argument `name`. Expected a model name of letters, digits, "
            f"'_', '.', '-' (a directory name TF Serving serves). Received: name={name!r}"
        )
    return name
