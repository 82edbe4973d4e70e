"""`export_saved_model`: a versioned SavedModel that `tensorflow_model_server` serves as it is."""

import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_hyperbolic.export import serving_config, warmup
from keras_hyperbolic.export._inference import check_model
from keras_hyperbolic.export.signatures import endpoints as model_endpoints
from keras_hyperbolic.export.signatures import model_family
from keras_hyperbolic.reversible import plain_autodiff

METADATA_FILE = "keras_hyperbolic.json"


def _check_version(version):
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(
            "Invalid value for argument `version`. Expected an integer >= 1 (TF Serving "
            f"serves integer version directories) or None. Received: version={version!r}"
        )
    return int(version)


def _describe(endpoints, concrete):
    described = {}
    for name, endpoint in endpoints.items():
        function = concrete[name]
        described[name] = {
            "inputs": {
                spec.name: {"shape": list(spec.shape.as_list()), "dtype": spec.dtype.name}
                for spec in endpoint.input_specs
            },
            "outputs": {
                key: {"shape": spec.shape.as_list() if spec.shape.rank is not None else None,
                      "dtype": spec.dtype.name}
                for key, spec in sorted(function.structured_outputs.items())
            },
        }
    return described


def export_saved_model(
    model,
    base_dir,
    name,
    version=None,
    overwrite=False,
    input_shape=None,
    warmup_requests=True,
    write_config=True,
    base_path_prefix=serving_config.DEFAULT_BASE_PATH_PREFIX,
):
    """Exports `model` to `base_dir/name/<version>/` in the TF Serving layout.

    Writes `saved_model.pb` and `variables/` with one signature per endpoint
    the model declares (`model.serving_endpoints()`, or the generic `inputs` ->
    `outputs` without it; named inputs and outputs; batch and, for the fully
    convolutional segmentation networks, spatial sizes left `None`), the
    warmup file `assets.extra/tf_serving_warmup_requests` (one real
    `PredictionLog` per signature), `assets.extra/keras_hyperbolic.json` (the
    model's class, config and `serving_family`, and the signatures), and creates or updates
    `base_dir/models.config` and `base_dir/batching.config`.

    Signatures: segmentation `serving_default` (`images` -> `probabilities`,
    `labels`); VAE `reconstruct` (also `serving_default`), `encode`, `decode`,
    `sample`; flow `log_prob` (also `serving_default`), `sample`. See
    `keras_hyperbolic.export.signatures`.

    The graph is traced for inference (`training=False`), with the reversible
    stacks' memory-efficient custom gradient switched off while tracing (the
    same map; the flag is restored). The version is written to a temporary
    directory and renamed into place, so a running server never sees half a
    version.

    Args:
        model: a built Keras model.
        base_dir: the directory the server reads (holds `models.config`).
        name: the model's name (its directory under `base_dir`).
        version: integer >= 1; `None` takes the next free integer.
        overwrite: replace an existing `version` directory.
        input_shape: override of the image input's shape, batch axis included.
        warmup_requests: write the warmup file (needs tensorflow-serving-api).
        write_config: create or update `models.config` and `batching.config`.
        base_path_prefix: where the server sees `base_dir` (for `models.config`).

    Returns:
        The path of the version directory.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: unbuilt model, bad `name` or `version`, or an existing
            version directory without `overwrite=True`. Nothing is written then.

    Example:
    >>> path = export_saved_model(segmenter, "saved_models", "segmenter")
    >>> sorted(tf.saved_model.load(path).signatures)
    ['serving_default']
    """
    check_model(model)
    serving_config.check_model_name(name)
    version = _check_version(version)
    if not isinstance(base_dir, (str, os.PathLike)):
        raise TypeError(
            f"Invalid value for argument `base_dir`. Expected a path. Received: {base_dir!r}"
        )
    base_dir = os.fspath(base_dir)
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise ValueError(
            f"Invalid value for argument `base_dir`: {base_dir!r} exists and is not a directory."
        )
    if write_config:
        # Validated before anything is written.
        if not isinstance(base_path_prefix, str) or not base_path_prefix.startswith(("/", "gs://", "s3://")):
            raise ValueError(
                "Invalid value for argument `base_path_prefix`. Expected an absolute path or "
                f"URI. Received: base_path_prefix={base_path_prefix!r}"
            )
    model_dir = os.path.join(base_dir, name)
    if version is None:
        existing = [int(e) for e in os.listdir(model_dir) if e.isdigit()] if os.path.isdir(model_dir) else []
        version = max(existing, default=0) + 1
    version_dir = os.path.join(model_dir, str(version))
    if os.path.exists(version_dir) and not overwrite:
        raise ValueError(
            f"Invalid value for argument `version`: {version_dir!r} already exists. Pass "
            "overwrite=True to replace it, or version=None for the next free version. "
            f"Received: version={version!r}"
        )
    if warmup_requests:
        warmup.serving_apis()

    endpoints = model_endpoints(model, input_shape=input_shape)
    created = [d for d in (base_dir, model_dir) if not os.path.exists(d)]
    os.makedirs(model_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}.partial-", dir=model_dir)
    try:
        concrete = write_signatures(model, endpoints, staging)
        if warmup_requests:
            warmup.write_warmup_requests(staging, name, endpoints)
        metadata = {
            "family": model_family(model),
            "model": keras.saving.serialize_keras_object(model),
            "signatures": _describe(endpoints, concrete),
            "keras_hyperbolic_version": _package_version(),
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
            "parameters": int(model.count_params()),
        }
        extra = os.path.join(staging, warmup.ASSETS_EXTRA)
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, METADATA_FILE), "w") as handle:
            json.dump(metadata, handle, indent=1, default=_json_default)
        if os.path.exists(version_dir):
            shutil.rmtree(version_dir)
        os.rename(staging, version_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in reversed(created):  # leave the disk as it was
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)
        raise
    if write_config:
        serving_config.write_models_config(base_dir, [name], base_path_prefix)
        serving_config.write_batching_config(base_dir)
    return version_dir


def write_signatures(model, endpoints, path):
    """Writes a SavedModel of `endpoints` (the first also as `serving_default`) to `path`.

    A bare `tf.Module` tracks the model's underlying `tf.Variable`s once and
    one `tf.function` per endpoint, traced for inference with the reversible
    stacks' custom gradient switched off. (Keras's `ExportArchive` stored
    every variable twice, doubling the size of `variables/`.) Returns
    `{name: concrete function}`.
    """
    module = tf.Module()
    module.model_variables = [getattr(v, "_value", v) for v in model.variables]
    concrete = {}
    with plain_autodiff(model):  # a custom-gradient closure has no place in a serving graph
        for name, endpoint in endpoints.items():
            function = tf.function(endpoint.function, input_signature=endpoint.input_specs)
            setattr(module, name, function)
            concrete[name] = function.get_concrete_function()
        signatures = dict(concrete)
        signatures.setdefault("serving_default", next(iter(concrete.values())))
        tf.saved_model.save(module, path, signatures=signatures)
    return concrete


def read_metadata(version_dir):
    """The `keras_hyperbolic.json` written next to the warmup file (dict)."""
    path = os.path.join(version_dir, warmup.ASSETS_EXTRA, METADATA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No export metadata at {path!r}.")
    with open(path) as handle:
        return json.load(handle)


def model_from_metadata(version_dir):
    """An untrained model of the exported class and config (the architecture), built."""
    metadata = read_metadata(version_dir)
    model = keras.saving.deserialize_keras_object(metadata["model"])
    return model, metadata


def _package_version():
    from keras_hyperbolic import __version__

    return __version__


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"Not JSON serialisable: {value!r}")
