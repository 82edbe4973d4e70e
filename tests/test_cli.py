"""The `keras-hyperbolic` command: --help everywhere, train/export/inspect/serving-config,
benchmark forwarding, and clear errors that leave the disk untouched."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic import cli
from keras_hyperbolic.export.serving_config import read_models_config
from keras_hyperbolic.models import HyperbolicSegmenter

CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "keras-hyperbolic")


def _run(argv, capsys):
    """(exit status, stdout, stderr) of `keras-hyperbolic argv` run in this process."""
    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status or 0, captured.out, captured.err


def _listing(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = HyperbolicSegmenter.from_preset("tiny_2d", num_classes=2)
    model.build((None, 16, 16, 3))
    path = str(tmp_path_factory.mktemp("model") / "segmenter.keras")
    model.save(path)
    return path, model


@pytest.mark.parametrize(
    "argv,expected",
    [
        ([], "Train, export, benchmark and inspect"),
        (["train"], "Tasks:"),
        (["export"], "--saved-model"),
        (["serving-config"], "models.config"),
        (["benchmark"], "memory"),
        (["benchmark", "memory"], "--depths"),
        (["inspect"], "--input-shape"),
    ],
)
def test_help_everywhere(argv, expected, capsys):
    status, out, _ = _run(argv + ["--help"], capsys)
    assert status == 0
    assert expected in out


def test_console_script_is_installed():
    completed = subprocess.run([CONSOLE_SCRIPT, "train", "--help"], capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    for task in cli.TASKS:
        assert task in completed.stdout


def test_unknown_task_and_missing_files_change_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, _, err = _run(["train", "no-such-task", "--export", "served"], capsys)
    assert status == 2
    assert "invalid choice: 'no-such-task'" in err and "video-segmentation" in err
    status, _, err = _run(["export", "missing.keras", "--saved-model", "served"], capsys)
    assert status == 2 and "no such file: missing.keras" in err
    status, _, err = _run(["export", "missing.keras", "--tflite", "m.tflite"], capsys)
    assert status == 2 and "no such file" in err
    status, _, err = _run(["inspect", "missing.keras"], capsys)
    assert status == 2 and "no such file or directory: missing.keras" in err
    status, _, err = _run(["serving-config", "served"], capsys)
    assert status == 2 and "no such directory" in err
    assert os.listdir(tmp_path) == []


def test_export_inspect_and_serving_config(keras_file, tmp_path, capsys):
    path, model = keras_file
    served = str(tmp_path / "served")
    status, out, err = _run(["export", path, "--saved-model", served, "--name", "seg"], capsys)
    assert status == 0, err
    version = os.path.join(served, "seg", "1")
    assert os.path.isfile(os.path.join(version, "assets.extra", "tf_serving_warmup_requests"))
    x = np.random.default_rng(0).random((1, 8, 32, 3), dtype=np.float32)
    loaded = tf.saved_model.load(version).signatures["serving_default"]
    np.testing.assert_allclose(loaded(images=x)["probabilities"].numpy(),
                               tf.nn.softmax(model(x)).numpy(), atol=1e-5)

    # An existing version without --overwrite: an error, nothing changed.
    before = _listing(served)
    status, _, err = _run(["export", path, "--saved-model", served, "--name", "seg",
                           "--version", "1"], capsys)
    assert status == 2 and "already exists" in err
    assert _listing(served) == before

    status, out, _ = _run(["inspect", served], capsys)
    assert status == 0
    assert "signature 'serving_default'" in out
    assert "input  images: float32 (?, ?, ?, 3)" in out
    assert "output probabilities: float32 (?, ?, ?, 2)" in out
    assert f"{model.count_params():,} parameters" in out
    assert "warmup records: 1" in out

    status, out, _ = _run(["serving-config", served], capsys)
    assert status == 0
    config = read_models_config(os.path.join(served, "models.config"))
    assert config.model_config_list.config[0].base_path == os.path.abspath(served) + "/seg"

    tflite = str(tmp_path / "seg.tflite")
    status, out, err = _run(["export", path, "--tflite", tflite, "--input-shape", "8,8,3"],
                            capsys)
    assert status == 0, err
    assert "Flex" not in out
    status, out, _ = _run(["inspect", tflite], capsys)
    assert status == 0 and "input  images: float32 (1, 8, 8, 3)" in out

    status, out, _ = _run(["inspect", path, "--input-shape", "64,64,3", "--batch-size", "2"],
                          capsys)
    assert status == 0
    assert f"parameters: {model.count_params():,}" in out
    assert "memory estimate for input (2, 64, 64, 3)" in out
    assert "plain autodiff >=" in out and "memory-efficient ~" in out


def test_memory_estimate_scales_with_input(keras_file):
    _, model = keras_file
    small = cli.memory_estimate(model, (16, 16, 3))
    large = cli.memory_estimate(model, (32, 32, 3), batch_size=2)
    assert large["input_bytes"] == 8 * small["input_bytes"]
    assert large["stream_bytes_plain_autodiff"] == 8 * small["stream_bytes_plain_autodiff"]
    assert small["stream_bytes_memory_efficient"] < small["stream_bytes_plain_autodiff"]
    assert small["weights_bytes"] == 4 * model.count_params()


def test_benchmark_memory_forwards_options(monkeypatch, capsys):
    seen = {}

    class FakeBenchmark:
        @staticmethod
        def main(argv):
            seen["argv"] = argv

    monkeypatch.setattr(cli, "_load_script", lambda path: FakeBenchmark)
    status, _, _ = _run(["benchmark", "memory", "--quick", "--depths", "2", "4",
                         "--modes", "plain", "reversible", "--json", "out.json"], capsys)
    assert status == 0
    assert seen["argv"] == ["--quick", "--depths", "2", "4", "--modes", "plain", "reversible",
                            "--repeats", "3", "--json", "out.json"]
    assert os.path.isfile(os.path.join(cli.repository_root(), "benchmarks", "memory.py"))


def test_train_quick_task_and_export(tmp_path, capsys):
    output, served = str(tmp_path / "out"), str(tmp_path / "served")
    status, out, err = _run(["train", "video-segmentation", "--quick", "--no-baseline",
                             "--epochs", "2", "--output", output, "--export", served], capsys)
    assert status == 0, err
    with open(os.path.join(output, "metrics.json")) as handle:
        metrics = json.load(handle)
    assert metrics["hyperbolic"]["steps"] == 2
    assert "unet" not in metrics
    version = os.path.join(served, "video_segmenter", "1")
    assert os.path.isfile(os.path.join(version, "saved_model.pb"))
    assert f"exported {os.path.join(output, 'hyperbolic_segmenter.keras')}" in out


def test_task_without_quick_mode_is_refused_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, _, err = _run(["train", "vae-digits", "--quick", "--output", "out"], capsys)
    assert status == 2 and "no quick mode" in err
    assert os.listdir(tmp_path) == []
