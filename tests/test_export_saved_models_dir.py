"""The repository's saved_models/: TF Serving layout, models.config, and models that are the
examples' (re-exporting their architecture gives the same signatures and variables)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic.export import (
    export_saved_model,
    model_from_metadata,
    predict,
    read_warmup_requests,
)
from keras_hyperbolic.export.serving_config import read_models_config, version_dirs
from keras_hyperbolic.models import get_preset

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "saved_models")
#: name -> (class, the task that produces it: `keras-hyperbolic train <task> --export saved_models`)
MODELS = {
    "video_segmenter": ("HyperbolicSegmenter", "video-segmentation"),
    "digits_vae": ("HyperbolicVAE", "vae-digits"),
}
MAX_TOTAL_BYTES = 8 * 2**20


def _present():
    return [name for name in MODELS if os.path.isdir(os.path.join(ROOT, name))]


def _latest(name):
    model_dir = os.path.join(ROOT, name)
    return os.path.join(model_dir, str(version_dirs(model_dir)[-1]))


def _signature_table(path):
    loaded = tf.saved_model.load(path)
    table = {}
    for name, function in loaded.signatures.items():
        inputs = {k: (s.dtype.name, tuple(s.shape.as_list()))
                  for k, s in function.structured_input_signature[1].items()}
        outputs = {k: (s.dtype.name, tuple(s.shape.as_list()))
                   for k, s in function.structured_outputs.items()}
        table[name] = (inputs, outputs)
    return table


def _variable_shapes(path):
    listed = tf.train.list_variables(os.path.join(path, "variables", "variables"))
    return sorted(tuple(shape) for name, shape in listed if "VARIABLE_VALUE" in name)


def test_layout_and_models_config():
    config = read_models_config(os.path.join(ROOT, "models.config"))
    entries = {c.name: c.base_path for c in config.model_config_list.config}
    assert set(entries) <= set(MODELS)
    assert sorted(entries) == sorted(_present()), "models.config and the model directories disagree"
    for name in entries:
        assert entries[name] == f"/models/{name}"
    assert os.path.isfile(os.path.join(ROOT, "batching.config"))
    total = 0
    for directory, _, files in os.walk(ROOT):
        for file in files:
            assert not file.endswith((".keras", ".h5", ".ckpt")), file
            total += os.path.getsize(os.path.join(directory, file))
    assert total < MAX_TOTAL_BYTES
    for name in _present():
        version = _latest(name)
        for part in ("saved_model.pb", "variables/variables.index",
                     "assets.extra/tf_serving_warmup_requests",
                     "assets.extra/keras_hyperbolic.json"):
            assert os.path.isfile(os.path.join(version, part)), (name, part)


def test_both_example_models_are_served():
    assert _present() == list(MODELS)


@pytest.mark.parametrize("name", ["video_segmenter", "digits_vae"])
def test_reexport_of_the_examples_architecture_matches(name, tmp_path):
    version = _latest(name)
    model, metadata = model_from_metadata(version)
    assert metadata["model"]["class_name"] == MODELS[name][0]
    if name == "video_segmenter":
        # The main job's network: the example's preset, two classes.
        preset = get_preset("video_cpu")
        config = model.get_config()
        for key, value in preset["config"].items():
            assert config[key] == (list(map(list, value)) if key == "units" else value), key
    assert model.built  # the exported build config rebuilt it
    fresh = export_saved_model(model, str(tmp_path), name, warmup_requests=False,
                               write_config=False)
    assert _signature_table(fresh) == _signature_table(version)
    assert _variable_shapes(fresh) == _variable_shapes(version)


@pytest.mark.parametrize("name", ["video_segmenter", "digits_vae"])
def test_warmup_records_replay(name):
    version = _latest(name)
    loaded = tf.saved_model.load(version)
    logs = read_warmup_requests(version)
    expected = (set(loaded.signatures) - {"serving_default"}) or {"serving_default"}
    assert {log.predict_log.request.model_spec.signature_name for log in logs} == expected
    for log in logs:
        response = predict(loaded, log.predict_log.request)
        for proto in response.outputs.values():
            assert np.all(np.isfinite(tf.make_ndarray(proto)))


def test_served_segmenter_is_the_trained_one():
    from keras_hyperbolic.data import make_digit_video, segmentation_iou

    data = make_digit_video(frames=32, height=64, width=64, digit_size=24, seed=0)
    loaded = tf.saved_model.load(_latest("video_segmenter"))
    labels = loaded.signatures["serving_default"](images=tf.constant(data["video"][None]))[
        "labels"].numpy()[0]
    # An untrained network scores about 40-50 mean IoU on this video.
    assert segmentation_iou(data["masks"], labels)["mean_iou"] > 80.0
