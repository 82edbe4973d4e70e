"""The `keras-hyperbolic` command: --help everywhere, train/export/inspect/serving-config,
benchmark forwarding, each task's flags built from what it declares, and clear errors that leave
the disk untouched."""

import dataclasses
import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hyperbolic import cli
from keras_hyperbolic.profiling import memory_estimate
from keras_hyperbolic.tasks import NO_BASELINE, TASKS, TIME_BUDGET, Option, Task, memory_benchmark
from keras_hyperbolic.tasks import run_task
from keras_hyperbolic.tasks.segmentation_settings import SEGMENT
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
    small = memory_estimate(model, (16, 16, 3))
    large = memory_estimate(model, (32, 32, 3), batch_size=2)
    assert large["input_bytes"] == 8 * small["input_bytes"]
    assert large["stream_bytes_plain_autodiff"] == 8 * small["stream_bytes_plain_autodiff"]
    assert small["stream_bytes_memory_efficient"] < small["stream_bytes_plain_autodiff"]
    assert small["weights_bytes"] == 4 * model.count_params()


def test_benchmark_memory_forwards_options(monkeypatch, capsys):
    seen = {}

    def fake_benchmark(*args):
        seen["args"] = args

    monkeypatch.setattr(memory_benchmark, "run_memory_benchmark", fake_benchmark)
    status, _, _ = _run(["benchmark", "memory", "--quick", "--depths", "2", "4",
                         "--modes", "plain", "reversible", "--json", "out.json"], capsys)
    assert status == 0
    assert seen["args"] == (["2d"], [2, 4], ["plain", "reversible"], 3, "out.json", True)


def test_train_quick_task_and_export(tmp_path, capsys):
    output, served = str(tmp_path / "out"), str(tmp_path / "served")
    status, out, err = _run(["train", "video-segmentation", "--quick", "--no-baseline",
                             "--steps", "2", "--output", output, "--export", served], capsys)
    assert status == 0, err
    with open(os.path.join(output, "metrics.json")) as handle:
        metrics = json.load(handle)
    assert metrics["hyperbolic"]["steps"] == metrics["settings"]["steps"] == 2
    assert metrics["hyperbolic"]["stopped_by_time_budget"] is False
    assert "unet" not in metrics
    version = os.path.join(served, "video_segmenter", "1")
    assert os.path.isfile(os.path.join(version, "saved_model.pb"))
    assert f"exported {os.path.join(output, 'hyperbolic_segmenter.keras')}" in out


def test_time_budget_cut_is_reported(tmp_path, capsys):
    output = str(tmp_path / "out")
    status, out, err = _run(["train", "video-segmentation", "--quick", "--no-baseline",
                             "--steps", "4", "--time-budget", "1e-6", "--output", output], capsys)
    assert status == 0, err
    with open(os.path.join(output, "metrics.json")) as handle:
        metrics = json.load(handle)
    planned = metrics["settings"]["steps"]
    assert planned == 4
    assert metrics["hyperbolic"]["steps"] == 1  # the budget is checked after each step
    assert metrics["hyperbolic"]["stopped_by_time_budget"] is True
    assert f"STOPPED BY THE TIME BUDGET after 1 of {planned} steps" in out
    assert "NOTE: hyperbolic was cut by the time budget" in out


@pytest.mark.parametrize("argv,message", [
    (["train", "irevnet-digits", "--time-budget", "10"],
     "the task irevnet-digits has no --time-budget option (its options: none)"),
    (["train", "iunet-segmentation", "--no-baseline"],
     "the task iunet-segmentation has no --no-baseline option (its options: --time-budget)"),
    (["train", "video-segmentation", "--time-budget", "0"], "--time-budget must be > 0, got 0"),
    (["train", "vae-digits", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["train", "video-segmentation", "--steps", "0"], "--steps must be >= 1, got 0"),
    (["train", "video-segmentation", "--epochs", "3"],
     "the task video-segmentation counts steps: give --steps, not --epochs"),
    (["train", "flow-digits", "--steps", "3"],
     "the task flow-digits counts epochs: give --epochs, not --steps"),
])
def test_task_options_refused_before_training(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, _, err = _run(argv + ["--output", "out"], capsys)
    assert status == 2 and message in err, err
    assert os.listdir(tmp_path) == []


# === Each task's flags come from its declaration ===


@pytest.fixture
def calls(monkeypatch):
    """Every task function replaced by a recorder: the CLI's mapping without training."""
    seen = []

    def record(output, **kwargs):
        seen.append((output, kwargs))
        return {"model": None, "metrics": {}, "model_path": None}

    monkeypatch.setattr(Task, "load", lambda self: record)
    return seen


@pytest.mark.parametrize("argv,expected", [
    (["train", "video-segmentation", "--steps", "7", "--no-baseline", "--time-budget", "2.5"],
     {"steps": 7, "train_unet": False, "time_budget": 2.5}),
    (["train", "iunet-segmentation", "--steps", "4"], {"steps": 4}),
    (["train", "vae-digits", "--epochs", "2"], {"epochs": 2}),
    (["train", "flow-digits"], {}),  # no count given: the task's default
])
def test_train_passes_the_declared_count_and_options(argv, expected, calls, capsys):
    status, _, err = _run(argv + ["--quick", "--seed", "5", "--verbose", "0", "--output", "o"],
                          capsys)
    assert status == 0, err
    assert calls == [("o", {"quick": True, "seed": 5, "verbose": 0, **expected})]


def test_flags_follow_the_declarations(calls, monkeypatch, capsys):
    """A task registered with its own option gets a flag; other tasks refuse the flag."""
    monkeypatch.setenv("COLUMNS", "250")  # help lines unwrapped
    rate = Option("learning_rate", float, "Adam's rate", default="1e-3", positive=True)
    monkeypatch.setitem(TASKS, "stub-task", Task("stub", "train_stub", "stub", "a stub",
                                                 unit="steps", options=(rate, NO_BASELINE)))
    status, out, _ = _run(["train", "--help"], capsys)
    assert status == 0
    assert "stub-task: a stub\n    flags: --steps, --learning-rate, --no-baseline" in out
    assert "stub-task: Adam's rate (default: 1e-3)" in out
    status, _, err = _run(["train", "stub-task", "--steps", "3", "--learning-rate", "0.5",
                           "--no-baseline", "--output", "o"], capsys)
    assert status == 0, err
    assert calls[-1][1] == {"quick": False, "seed": 0, "verbose": 1, "steps": 3,
                            "learning_rate": 0.5, "train_unet": False}
    status, _, err = _run(["train", "stub-task", "--learning-rate", "-1"], capsys)
    assert status == 2 and "--learning-rate must be > 0, got -1.0" in err
    status, _, err = _run(["train", "vae-faces", "--learning-rate", "0.5"], capsys)
    assert status == 2 and "the task vae-faces has no --learning-rate option" in err
    assert len(calls) == 1


def test_every_task_declares_a_unit_and_options():
    for name, task in TASKS.items():
        assert task.unit == ("steps" if name.endswith("segmentation") else "epochs"), name
        assert all(isinstance(option, Option) for option in task.options), name
    assert TASKS["video-segmentation"].options == (TIME_BUDGET, NO_BASELINE)
    with pytest.raises(ValueError, match="unit='frames'"):
        Task("m", "f", "s", "d", unit="frames")


def test_two_different_options_with_one_flag_are_refused(monkeypatch, capsys):
    other = dataclasses.replace(TIME_BUDGET, type=int)
    monkeypatch.setitem(TASKS, "stub-task", Task("stub", "f", "s", "d", options=(other,)))
    with pytest.raises(ValueError, match="two different options --time-budget"):
        cli.build_parser()


def test_run_task_passes_the_count_under_its_unit(calls):
    run_task("iunet-segmentation", steps=3, quick=True)
    run_task("irevnet-digits", output="here", epochs=2)
    assert calls == [("outputs/iunet_segmentation", {"quick": True, "seed": 0, "verbose": 1,
                                                     "steps": 3}),
                     ("here", {"quick": False, "seed": 0, "verbose": 1, "epochs": 2})]
    with pytest.raises(ValueError, match="counts steps; pass `steps=` instead"):
        run_task("video-segmentation", epochs=3)
    with pytest.raises(ValueError, match="counts epochs; pass `epochs=` instead"):
        run_task("vae-digits", steps=3)
    with pytest.raises(ValueError, match="name='nope'"):
        run_task("nope")
    assert len(calls) == 2


def test_segment_help_states_the_default_learning_rates(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "250")
    status, out, _ = _run(["segment", "--help"], capsys)
    assert status == 0
    assert (f"default: {SEGMENT.learning_rate_of('hyperbolic'):g} hyperbolic, "
            f"{SEGMENT.learning_rate_of('unet'):g} unet") in out


def _bad_model_files(directory):
    text = os.path.join(directory, "notes.keras")
    with open(text, "w") as handle:
        handle.write("not a model")
    empty_zip = os.path.join(directory, "empty.keras")
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.txt", "no config")
    inputs = keras.Input((4,))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda t: 2.0 * t)(inputs))
    with_lambda = os.path.join(directory, "lambda.keras")
    lambda_model.save(with_lambda)
    h5 = os.path.join(directory, "model.h5")
    with open(h5, "w") as handle:
        handle.write("x")
    return {"not a zip archive": text, "has no config.json": empty_zip,
            "refused by Keras's safe mode": with_lambda, "expected a .keras file": h5}


@pytest.mark.parametrize("command", ["export", "inspect"])
def test_bad_model_files_are_one_line_errors(command, tmp_path, capsys):
    for reason, path in _bad_model_files(str(tmp_path)).items():
        argv = [command, path] + (["--saved-model", str(tmp_path / "served")]
                                  if command == "export" else [])
        status, out, err = _run(argv, capsys)
        assert status == 2, (reason, out)
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert path in err and reason in err, err
    assert not os.path.exists(tmp_path / "served")


def test_unsafe_flag_loads_a_trusted_lambda(tmp_path, capsys):
    path = _bad_model_files(str(tmp_path))["refused by Keras's safe mode"]
    status, out, err = _run(["inspect", path, "--unsafe"], capsys)
    assert status == 0, err
    assert "parameters: 0" in out


def test_wrong_input_shape_is_a_one_line_error(keras_file, tmp_path, capsys):
    path, _ = keras_file
    status, _, err = _run(["inspect", path, "--input-shape", "15,16,3"], capsys)
    assert status == 2 and "Traceback" not in err and err.count("\n") == 1
    assert path in err and "15" in err
    status, _, err = _run(["export", path, "--tflite", str(tmp_path / "m.tflite"),
                           "--input-shape", "15,16,3"], capsys)
    assert status == 2 and "Traceback" not in err and path in err
    assert not os.path.exists(tmp_path / "m.tflite")


def _command_onednn(env_value, tmp_path):
    """What `keras-hyperbolic` reports for oneDNN with TF_ENABLE_ONEDNN_OPTS=env_value (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    output = str(tmp_path / f"out_{env_value}")
    completed = subprocess.run(
        [CONSOLE_SCRIPT, "train", "video-segmentation", "--quick", "--no-baseline",
         "--verbose", "0", "--output", output],
        capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(os.path.join(output, "metrics.json")) as handle:
        return json.load(handle)["onednn"], completed.stderr


def test_command_turns_onednn_on_when_unset(tmp_path):
    onednn, _ = _command_onednn(None, tmp_path)
    assert onednn is True


def test_command_keeps_a_users_onednn_off(tmp_path):
    onednn, stderr = _command_onednn("0", tmp_path)
    assert onednn is False
    assert "oneDNN CPU path is off" in stderr  # the one-time warning, with the remedy
    assert "TF_ENABLE_ONEDNN_OPTS=1" in stderr


def test_installed_package_trains_and_exports_without_the_checkout(tmp_path):
    """`pip install .` (not editable) and the command run from elsewhere: no checkout needed."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
    target = str(tmp_path / "site")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", target, root], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": target}
    where = subprocess.run(
        [sys.executable, "-c", "import keras_hyperbolic, sys; print(keras_hyperbolic.__file__); "
         "print(any(p.endswith('examples') for p in sys.path))"],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(work))
    assert where.stdout.splitlines()[-2].startswith(target), where.stdout
    assert not os.path.exists(os.path.join(target, "examples"))
    completed = subprocess.run(
        [os.path.join(target, "bin", "keras-hyperbolic"), "train", "video-segmentation",
         "--quick", "--no-baseline", "--verbose", "0", "--export", "served"],
        capture_output=True, text=True, timeout=600, env=env, cwd=str(work))
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert os.path.isfile(work / "served" / "video_segmenter" / "1" / "saved_model.pb")
    assert os.path.isfile(work / "outputs" / "video_segmentation" / "metrics.json")
