"""SavedModels for TF Serving: fresh-process loads equal Keras, saved_model_cli, warmup
records, PredictRequest/PredictResponse, models.config, versioning and bad input."""

import hashlib
import inspect
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from keras_hyperbolic.export import (
    endpoints,
    export_saved_model,
    export_tflite,
    model_family,
    predict,
    read_metadata,
    read_warmup_requests,
    sample_latent,
    warmup,
)
from keras_hyperbolic.export.serving_config import read_models_config
from keras_hyperbolic.models import HyperbolicSegmenter
from keras_hyperbolic.models import serving
from keras_hyperbolic.models.hyperbolic_vae import HyperbolicVAE

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
VAE_SIGNATURES = {"encode", "decode", "sample", "reconstruct", "serving_default"}


def _perturb(model, scale=0.3, seed=0):
    """Moves every weight away from its (often identity-like) initial value."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        variable.assign(value + scale * rng.standard_normal(value.shape).astype(value.dtype))


def _snapshot(root):
    """{relative path: sha1} of every file under root (to show nothing changed)."""
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = hashlib.sha1(handle.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(7)
    base = str(tmp_path_factory.mktemp("serving"))
    seg2d = HyperbolicSegmenter(num_classes=3, rank=2, width=4, pooling="orthogonal",
                                units=[(1, "down"), (1, "up"), (1, None)], h=0.5,
                                hidden_channels=4)
    seg2d.build((None, 16, 16, 3))
    _perturb(seg2d)
    seg3d = HyperbolicSegmenter.from_preset("tiny_3d", num_classes=2)
    seg3d.build((None, 8, 8, 8, 2))
    _perturb(seg3d)
    vae = HyperbolicVAE((16, 16, 1), levels=2, depth=1, hidden_channels=4, latent_dim=24)
    _perturb(vae, scale=0.05)
    paths = {
        "seg2d": export_saved_model(seg2d, base, "seg2d"),
        "seg3d": export_saved_model(seg3d, base, "seg3d"),
        "vae": export_saved_model(vae, base, "vae"),
    }
    rng = np.random.default_rng(3)
    # Spatial sizes other than the built ones: the signatures leave them free.
    inputs = {
        "seg2d": rng.random((2, 8, 24, 3), dtype=np.float32),
        "seg3d": rng.random((1, 4, 8, 12, 2), dtype=np.float32),
        "vae_images": rng.random((3, 16, 16, 1), dtype=np.float32),
        "vae_latent": rng.standard_normal((3, 24)).astype(np.float32),
        "vae_seeds": np.array([5, 11], dtype=np.int64),
    }
    z = vae.encode(inputs["vae_images"]).numpy()
    sampled = sample_latent(inputs["vae_seeds"], 24).numpy()
    expected = {
        "seg2d/probabilities": tf.nn.softmax(seg2d(inputs["seg2d"])).numpy(),
        "seg3d/probabilities": tf.nn.softmax(seg3d(inputs["seg3d"])).numpy(),
        "vae/encode/latent": z,
        "vae/decode/images": vae.decode(inputs["vae_latent"]).numpy(),
        "vae/reconstruct/reconstruction": vae(inputs["vae_images"]).numpy(),
        "vae/sample/latent": sampled,
        "vae/sample/images": vae.decode(sampled).numpy(),
    }
    return {"base": base, "paths": paths, "inputs": inputs, "expected": expected,
            "models": {"seg2d": seg2d, "seg3d": seg3d, "vae": vae}}


FRESH_PROCESS = r"""
import sys, numpy as np, tensorflow as tf
paths = dict(arg.split("=", 1) for arg in sys.argv[2:])
inputs = dict(np.load(sys.argv[1]))
out = {}
seg2d = tf.saved_model.load(paths["seg2d"]).signatures["serving_default"]
r = seg2d(images=tf.constant(inputs["seg2d"]))
out["seg2d/probabilities"] = r["probabilities"].numpy(); out["seg2d/labels"] = r["labels"].numpy()
seg3d = tf.saved_model.load(paths["seg3d"]).signatures["serving_default"]
r = seg3d(images=tf.constant(inputs["seg3d"]))
out["seg3d/probabilities"] = r["probabilities"].numpy(); out["seg3d/labels"] = r["labels"].numpy()
vae = tf.saved_model.load(paths["vae"]).signatures
out["vae/encode/latent"] = vae["encode"](images=tf.constant(inputs["vae_images"]))["latent"].numpy()
out["vae/decode/images"] = vae["decode"](latent=tf.constant(inputs["vae_latent"]))["images"].numpy()
r = vae["reconstruct"](images=tf.constant(inputs["vae_images"]))
out["vae/reconstruct/reconstruction"] = r["reconstruction"].numpy()
out["vae/serving_default/reconstruction"] = vae["serving_default"](
    images=tf.constant(inputs["vae_images"]))["reconstruction"].numpy()
r = vae["sample"](seeds=tf.constant(inputs["vae_seeds"]))
out["vae/sample/latent"] = r["latent"].numpy(); out["vae/sample/images"] = r["images"].numpy()
assert not any(m.startswith("keras_hyperbolic") for m in sys.modules), "package imported"
out["keras_imported"] = np.array("keras" in sys.modules)
np.savez(sys.argv[1] + ".out.npz", **out)
"""


def test_fresh_process_outputs_equal_keras(exported, tmp_path):
    data = str(tmp_path / "inputs.npz")
    np.savez(data, **exported["inputs"])
    args = [f"{k}={v}" for k, v in exported["paths"].items()]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run([sys.executable, "-c", FRESH_PROCESS, data, *args],
                               capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = dict(np.load(data + ".out.npz"))
    expected = exported["expected"]
    for key, value in expected.items():
        assert out[key].shape == value.shape, key
        np.testing.assert_allclose(out[key], value, atol=1e-5, rtol=0, err_msg=key)
    np.testing.assert_allclose(out["vae/serving_default/reconstruction"],
                               expected["vae/reconstruct/reconstruction"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(out["seg2d/labels"],
                                  np.argmax(expected["seg2d/probabilities"], axis=-1))
    np.testing.assert_array_equal(out["seg3d/labels"],
                                  np.argmax(expected["seg3d/probabilities"], axis=-1))


def _cli_show(path):
    completed = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir", path],
                               capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def test_saved_model_cli_lists_documented_signatures(exported):
    text = _cli_show(exported["paths"]["seg3d"])
    assert "signature_def['serving_default']" in text
    assert "inputs['images']" in text
    assert "outputs['probabilities']" in text and "outputs['labels']" in text
    # Batch and spatial sizes free, channels fixed.
    assert "shape: (-1, -1, -1, -1, 2)" in text
    assert "Method name is: tensorflow/serving/predict" in text

    text = _cli_show(exported["paths"]["vae"])
    for name in VAE_SIGNATURES:
        assert f"signature_def['{name}']" in text
    for key in ("inputs['images']", "inputs['latent']", "inputs['seeds']",
                "outputs['latent']", "outputs['images']", "outputs['reconstruction']"):
        assert key in text
    assert "shape: (-1, 16, 16, 1)" in text and "shape: (-1, 24)" in text


def test_signatures_named_and_dynamic(exported):
    loaded = tf.saved_model.load(exported["paths"]["seg2d"])
    assert set(loaded.signatures) == {"serving_default"}
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    assert spec.shape.as_list() == [None, None, None, 3]
    vae = tf.saved_model.load(exported["paths"]["vae"])
    assert set(vae.signatures) == VAE_SIGNATURES
    outputs = {name: set(vae.signatures[name].structured_outputs) for name in VAE_SIGNATURES}
    assert outputs == {
        "encode": {"latent"}, "decode": {"images"}, "sample": {"images", "latent"},
        "reconstruct": {"reconstruction", "latent"},
        "serving_default": {"reconstruction", "latent"},
    }
    assert vae.signatures["sample"].structured_input_signature[1]["seeds"].dtype == tf.int64


def test_warmup_records_replay_through_every_signature(exported):
    for name, path in exported["paths"].items():
        loaded = tf.saved_model.load(path)
        logs = read_warmup_requests(path)
        signatures = {log.predict_log.request.model_spec.signature_name for log in logs}
        expected = {"encode", "decode", "sample", "reconstruct"} if name == "vae" else {
            "serving_default"}
        assert signatures == expected
        for log in logs:
            request = log.predict_log.request
            assert request.model_spec.name == name
            function = loaded.signatures[request.model_spec.signature_name]
            assert set(request.inputs) == set(function.structured_input_signature[1])
            response = predict(loaded, request)
            assert set(response.outputs) == set(function.structured_outputs)
            for key, proto in response.outputs.items():
                assert np.all(np.isfinite(tf.make_ndarray(proto))), (name, key)


def test_warmup_inputs_give_keras_outputs(exported):
    model = exported["models"]["seg2d"]
    (log,) = read_warmup_requests(exported["paths"]["seg2d"])
    images = tf.make_ndarray(log.predict_log.request.inputs["images"])
    response = predict(exported["paths"]["seg2d"], log.predict_log.request)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]),
                               tf.nn.softmax(model(images)).numpy(), atol=1e-5, rtol=0)


def test_predict_request_gives_matching_predict_response(exported):
    vae = exported["models"]["vae"]
    images = exported["inputs"]["vae_images"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "vae"
    request.model_spec.signature_name = "encode"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    response = predict(exported["paths"]["vae"], request)
    assert isinstance(response, predict_pb2.PredictResponse)
    assert response.model_spec.signature_name == "encode"
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["latent"]),
                               vae.encode(images).numpy(), atol=1e-5, rtol=0)

    seg = exported["models"]["seg3d"]
    x = exported["inputs"]["seg3d"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "seg3d"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(x))
    request.output_filter.append("labels")
    response = predict(exported["paths"]["seg3d"], request)
    assert set(response.outputs) == {"labels"}
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["labels"]),
                                  np.argmax(seg(x).numpy(), axis=-1))
    # A request the signature cannot take is refused with the names.
    bad = predict_pb2.PredictRequest()
    bad.model_spec.signature_name = "decode"
    bad.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    with pytest.raises(ValueError, match="latent"):
        predict(exported["paths"]["vae"], bad)


def test_models_config_batching_and_metadata(exported):
    config = read_models_config(os.path.join(exported["base"], "models.config"))
    entries = {c.name: c for c in config.model_config_list.config}
    assert set(entries) == {"seg2d", "seg3d", "vae"}
    for name, entry in entries.items():
        assert entry.base_path == f"/models/{name}"
        assert entry.model_platform == "tensorflow"
    batching = open(os.path.join(exported["base"], "batching.config")).read()
    assert "max_batch_size { value: 16 }" in batching
    assert "batch_timeout_micros" in batching
    for name, path in exported["paths"].items():
        assert path == os.path.join(exported["base"], name, "1")
        for part in ("saved_model.pb", "variables/variables.index",
                     "assets.extra/tf_serving_warmup_requests"):
            assert os.path.isfile(os.path.join(path, part)), (name, part)
        metadata = read_metadata(path)
        model = exported["models"][name]
        assert metadata["model"]["class_name"] == type(model).__name__
        assert metadata["family"] == {"seg2d": "segmentation", "seg3d": "segmentation",
                                      "vae": "vae"}[name]
        assert metadata["parameters"] == model.count_params()
        json.dumps(metadata)
    # The exported config rebuilds the same architecture.
    rebuilt = keras.saving.deserialize_keras_object(read_metadata(exported["paths"]["seg3d"])["model"])
    assert rebuilt.get_config() == exported["models"]["seg3d"].get_config()


def test_next_version_overwrite_and_flags_restored(exported, tmp_path):
    model = exported["models"]["seg3d"]
    base = str(tmp_path)
    first = export_saved_model(model, base, "seg", warmup_requests=False)
    second = export_saved_model(model, base, "seg", warmup_requests=False)
    assert (first, second) == (os.path.join(base, "seg", "1"), os.path.join(base, "seg", "2"))
    assert model.hyperbolic.memory_efficient  # switched off only while tracing
    before = _snapshot(base)
    with pytest.raises(ValueError, match="already exists"):
        export_saved_model(model, base, "seg", version=1)
    assert _snapshot(base) == before
    assert export_saved_model(model, base, "seg", version=1, overwrite=True) == first
    config = read_models_config(os.path.join(base, "models.config"))
    assert [c.name for c in config.model_config_list.config] == ["seg"]
    assert not [e for e in os.listdir(os.path.join(base, "seg")) if "partial" in e]


def test_bad_input_changes_nothing(exported, tmp_path):
    base = tmp_path / "serving"
    unbuilt = HyperbolicSegmenter.from_preset("tiny_2d", num_classes=2)
    with pytest.raises(ValueError, match="not built"):
        export_saved_model(unbuilt, str(base), "seg")
    assert not base.exists()
    model = exported["models"]["seg2d"]
    with pytest.raises(ValueError, match="name"):
        export_saved_model(model, str(base), "bad/name")
    with pytest.raises(ValueError, match="version"):
        export_saved_model(model, str(base), "seg", version=0)
    with pytest.raises(ValueError, match="base_path_prefix"):
        export_saved_model(model, str(base), "seg", base_path_prefix="relative/path")
    with pytest.raises(TypeError, match="keras.Model"):
        export_saved_model("model.keras", str(base), "seg")
    assert not base.exists()


def test_flow_signatures_log_prob_and_sample(tmp_path):
    from keras_hyperbolic.models import ConvFlow

    flow = ConvFlow((8, 8, 1), levels=1, depth=1, num_bins=17)
    _perturb(flow, 0.02)
    path = export_saved_model(flow, str(tmp_path), "flow")
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"log_prob", "sample", "serving_default"}
    x = (np.random.default_rng(0).integers(0, 17, (3, 8, 8, 1)) / 17).astype(np.float32)
    out = loaded.signatures["log_prob"](images=x)
    expected = flow.log_prob(x).numpy()
    np.testing.assert_allclose(out["log_prob"].numpy(), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out["bits_per_dim"].numpy(),
                               flow.bits_per_dim_of_density(expected), rtol=1e-5)
    seeds = np.array([4, 9], dtype=np.int64)
    z = tf.reshape(sample_latent(seeds, 64), (-1,) + flow.latent_shape)
    np.testing.assert_allclose(loaded.signatures["sample"](seeds=seeds)["images"].numpy(),
                               flow.inverse(z).numpy(), atol=1e-5)
    for log in read_warmup_requests(path):
        predict(loaded, log.predict_log.request)


class Denoiser(keras.Model):
    """A user's model that declares its own signatures (two, the second not for TFLite)."""

    serving_family = "denoising"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(2, 3, padding="same")

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, inputs, training=None):
        return inputs - self.conv(inputs)

    def get_config(self):
        return {"name": self.name}

    def serving_endpoints(self, input_shape=None, dynamic_spatial=True, batch_size=None):
        spec, examples = serving.image_input(self, input_shape, dynamic_spatial, batch_size)

        def denoise(images):
            return {"denoised": self(images, training=False)}

        def noise_energy(images):
            residual = images - self(images, training=False)
            return {"energy": tf.reduce_sum(tf.square(residual), axis=[1, 2, 3])}

        return {
            "denoise": serving.Endpoint("denoise", denoise, [spec], examples, ("denoised",)),
            "noise_energy": serving.Endpoint("noise_energy", noise_energy, [spec], examples,
                                             ("energy",), tflite=False),
        }


def test_user_model_exports_the_signatures_it_declares(tmp_path):
    keras.utils.set_random_seed(3)
    model = Denoiser()
    model.build((None, 8, 8, 2))
    path = export_saved_model(model, str(tmp_path), "denoiser")
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"denoise", "noise_energy", "serving_default"}
    default = loaded.signatures["serving_default"]
    assert set(default.structured_outputs) == {"denoised"}  # the first declared endpoint
    assert default.structured_input_signature[1]["images"].shape.as_list() == [None, None, None, 2]
    x = np.random.default_rng(0).random((3, 12, 4, 2), dtype=np.float32)
    np.testing.assert_allclose(default(images=x)["denoised"].numpy(), model(x).numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(loaded.signatures["noise_energy"](images=x)["energy"].numpy(),
                               np.sum(np.square(model.conv(x).numpy()), axis=(1, 2, 3)),
                               rtol=1e-5)
    assert read_metadata(path)["family"] == "denoising"
    assert {log.predict_log.request.model_spec.signature_name
            for log in read_warmup_requests(path)} == {"denoise", "noise_energy"}
    # TFLite takes the endpoints the model marks `tflite=True`.
    from ai_edge_litert.interpreter import Interpreter

    tflite = export_tflite(model, str(tmp_path / "denoiser.tflite"))
    assert set(Interpreter(model_path=tflite).get_signature_list()) == {"denoise"}


def test_model_without_serving_endpoints_gets_the_generic_signature(tmp_path):
    """Only `serving_endpoints` matters: not the class name, not VAE-like methods."""

    class HyperbolicVAE(keras.Model):  # a package model's name, on purpose
        latent_dim = 4

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(3)

        def build(self, input_shape):
            self.dense.build(input_shape)

        def call(self, inputs, training=None):
            return self.dense(inputs)

        def encode(self, x, training=False):
            return self(x)

        def decode(self, z, training=False):
            return z

        def get_config(self):
            return {"name": self.name}

    model = HyperbolicVAE()
    model.build((None, 5))
    assert model_family(model) == "generic"
    path = export_saved_model(model, str(tmp_path), "impostor", warmup_requests=False)
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default"}
    function = loaded.signatures["serving_default"]
    assert function.structured_input_signature[1]["inputs"].shape.as_list() == [None, 5]
    x = np.random.default_rng(1).random((2, 5), dtype=np.float32)
    np.testing.assert_allclose(function(inputs=x)["outputs"].numpy(), model(x).numpy(),
                               atol=1e-6)
    assert read_metadata(path)["family"] == "generic"


def test_renamed_subclass_keeps_its_family_signatures():
    renamed = type("MyRenamedNet", (HyperbolicSegmenter,), {})
    model = renamed(num_classes=2, rank=2, width=4, units=[(1, "down"), (1, "up")])
    model.build((None, 16, 16, 1))
    assert model_family(model) == "segmentation"
    (endpoint,) = endpoints(model).values()
    assert endpoint.name == "serving_default"
    assert endpoint.output_names == ("probabilities", "labels")


def test_bad_serving_endpoints_are_refused_before_writing(tmp_path):
    class Broken(Denoiser):
        def serving_endpoints(self, **kwargs):
            return {"a": lambda images: images}

    model = Broken()
    model.build((None, 4, 4, 2))
    with pytest.raises(TypeError, match="serving_endpoints"):
        export_saved_model(model, str(tmp_path / "serving"), "broken", warmup_requests=False)
    assert not (tmp_path / "serving").exists()


def test_missing_serving_api_message_names_a_real_argument(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(ImportError) as error:
        warmup.serving_apis()
    named = re.findall(r"pass `?(\w+)=False", str(error.value))
    assert named, str(error.value)
    assert set(named) <= set(inspect.signature(export_saved_model).parameters)
