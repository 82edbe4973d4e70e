"""The package root is light: `import keras_hyperbolic` (and the command's module, a task
module's argument checks, `--help`, argument errors) imports no TensorFlow; sub-packages and the
task functions come on first use; the command turns oneDNN on in `main()` however it is started;
and `.keras` files of every model kind load in a fresh process once `keras_hyperbolic.models` is
imported, or through `keras_hyperbolic.load_model`."""

import importlib
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_hyperbolic
from keras_hyperbolic import layers, tasks
from keras_hyperbolic.models import (
    BaselineUNet,
    ConvFlow,
    HyperbolicSegmenter,
    HyperbolicVAE,
    InvertibleUNet,
    IRevNet,
)
from keras_hyperbolic.reversible import ReversibleSequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, *args, cwd=None, **env):
    """Stdout lines of `python -c code args` in a fresh process, this checkout first on the path."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    environment["PYTHONPATH"] = os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])
    environment.update({k: v for k, v in env.items() if v is not None})
    completed = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                               text=True, timeout=600, env=environment, cwd=cwd)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()


# === No TensorFlow on import ===


@pytest.mark.parametrize("modules", [
    "keras_hyperbolic",
    "keras_hyperbolic, keras_hyperbolic.tasks.segment",  # the check
    "keras_hyperbolic.cli",
    "keras_hyperbolic.tasks, keras_hyperbolic.runtime, keras_hyperbolic.data.media",
])
def test_imports_load_no_tensorflow(modules):
    out = _python(f"import {modules}, sys\n"
                  "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert out[-1] == "False False"


@pytest.mark.parametrize("argv,status", [
    (["--help"], 0),
    (["train", "--help"], 0),
    (["segment", "--help"], 0),
    (["benchmark", "memory", "--help"], 0),
    (["train", "no-such-task"], 2),
    (["train", "vae-digits", "--steps", "3"], 2),
    (["train", "video-segmentation", "--time-budget", "0"], 2),
    (["export", "missing.keras", "--saved-model", "served"], 2),
    (["inspect", "missing.keras"], 2),
    (["serving-config", "missing"], 2),
    (["segment", "missing.gif", "--labels", "x", "--out", "o"], 2),
])
def test_command_answers_help_and_bad_arguments_without_tensorflow(argv, status, tmp_path):
    code = ("import sys\nfrom keras_hyperbolic import cli\ntry:\n"
            f"    print('status', cli.main({argv!r}))\nexcept SystemExit as exit_:\n"
            "    print('status', exit_.code)\nprint('tensorflow' in sys.modules)")
    out = _python(code, cwd=str(tmp_path))
    assert out[-2:] == [f"status {status}", "False"]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("user_value,expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_main_turns_onednn_on_however_started(user_value, expected):
    """`python -m keras_hyperbolic.cli` (runpy, as `-m` does): a process not named for the command."""
    code = ("import os, runpy, sys\nsys.argv = [sys.executable, 'serving-config', 'missing']\n"
            "try:\n"
            "    runpy.run_module('keras_hyperbolic.cli', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exit_:\n    print('status', exit_.code)\n"
            "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))")
    out = _python(code, TF_ENABLE_ONEDNN_OPTS=user_value)
    assert out[-2:] == ["status 2", expected]


# === On first use ===


def test_subpackages_come_on_first_use():
    out = _python("import sys, keras_hyperbolic as kh\nprint('tensorflow' in sys.modules)\n"
                  "print(kh.layers.AdditiveCoupling.__name__, kh.__version__)\n"
                  "print('tensorflow' in sys.modules)")
    assert out[-3:] == ["False", "AdditiveCoupling 0.1.0", "True"]
    for name in keras_hyperbolic.SUBMODULES:
        module = importlib.import_module(f"keras_hyperbolic.{name}")
        assert getattr(keras_hyperbolic, name) is module
        assert name in dir(keras_hyperbolic)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_module'"):
        keras_hyperbolic.no_such_module  # noqa: B018


def test_tasks_serve_their_functions():
    from keras_hyperbolic.tasks import segment_video, train_video_segmentation
    from keras_hyperbolic.tasks.segment import segment_video as defined
    from keras_hyperbolic.tasks.video_segmentation import train_video_segmentation as trainer

    assert train_video_segmentation is trainer and segment_video is defined
    for task in tasks.TASKS.values():
        assert getattr(tasks, task.function) is task.load()
        assert task.function in dir(tasks)
    # `__all__` is written out for tools that read the source: it names every lazy export.
    assert set(tasks._LAZY) <= set(tasks.__all__)
    assert all(hasattr(tasks, name) for name in tasks.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'train_nothing'"):
        tasks.train_nothing  # noqa: B018
    out = _python("import sys\nfrom keras_hyperbolic.tasks import TASKS\n"
                  "print('tensorflow' in sys.modules)\n"
                  "from keras_hyperbolic.tasks import train_flow_digits\n"
                  "print(train_flow_digits.__module__)")
    assert out[-2:] == ["False", "keras_hyperbolic.tasks.flow_digits"]


# === .keras files load once the package's classes are registered ===


def _functional_stack():
    inputs = keras.Input((8, 8, 4))
    stack = ReversibleSequence([
        layers.AdditiveCoupling(rank=2), layers.AffineCoupling(rank=2),
        layers.HyperbolicBlock(rank=2), layers.Invertible1x1Conv(seed=0), layers.SneakyReLU(),
        layers.WaveletPooling2D(wavelet="learnable"), layers.OrthogonalPooling2D(),
        layers.InvertibleConv2D(), layers.PixelShuffleUnpooling2D(),
    ])
    return keras.Model(inputs, stack(inputs))


KINDS = {
    "segmenter": (lambda: HyperbolicSegmenter(
        num_classes=2, rank=2, width=4, units=[(1, "down"), (1, "up"), (1, None)], h=0.5,
        hidden_channels=4), (2, 8, 8, 3)),
    "baseline_unet": (lambda: BaselineUNet(num_classes=2, rank=3, filters=2, levels=1),
                      (1, 4, 4, 4, 2)),
    "iunet": (lambda: InvertibleUNet(rank=2, channels=4, levels=2, blocks_per_level=1,
                                     project_input=True, output_channels=2), (2, 8, 8, 3)),
    "irevnet": (lambda: IRevNet(num_classes=3, input_shape=(8, 8, 1), stages=(1, 1),
                                normalization="layer"), (2, 8, 8, 1)),
    "vae": (lambda: HyperbolicVAE((8, 8, 1), levels=2, depth=1, hidden_channels=4), (3, 8, 8, 1)),
    "flow": (lambda: ConvFlow((4, 4, 1), levels=1, depth=1, kernel_size=3, num_bins=17),
             (3, 4, 4, 1)),
    "functional_stack": (_functional_stack, (2, 8, 8, 4)),
}

_LOAD_ALL = """
import json, sys
import numpy as np
files = json.load(open(sys.argv[1]))
{refused}
{setup}
import keras
for name, (path, x_path) in files.items():
    model = load(path)
    outputs = keras.tree.flatten(model(np.load(x_path)))
    np.savez(path + ".loaded.npz", *[keras.ops.convert_to_numpy(o) for o in outputs])
    print("loaded", name, type(model).__name__)
"""

# Without the package's classes registered, Keras cannot rebuild them: what the setups provide.
_REFUSED = """
import keras
try:
    keras.saving.load_model(files["segmenter"][0])
    print("loaded without registration")
except Exception as error:
    print("refused", type(error).__name__)
"""


@pytest.fixture(scope="module")
def saved_kinds(tmp_path_factory):
    """Every model kind saved (the VAE compiled: its RoutedOptimizer too), with its outputs."""
    directory = tmp_path_factory.mktemp("kinds")
    files, expected = {}, {}
    rng = np.random.default_rng(0)
    for name, (make, shape) in KINDS.items():
        keras.utils.set_random_seed(1)
        model = make()
        x = rng.random(shape).astype("float32")
        model(x)
        for variable in model.trainable_variables:  # off the identity start
            variable.assign(variable + 0.05 * rng.standard_normal(variable.shape).astype("float32"))
        if name == "vae":
            model.compile(optimizer=keras.optimizers.SGD(1e-3))
        path, x_path = str(directory / f"{name}.keras"), str(directory / f"{name}.npy")
        model.save(path)
        np.save(x_path, x)
        files[name] = (path, x_path)
        expected[name] = [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(model(x))]
    spec = str(directory / "files.json")
    with open(spec, "w") as handle:
        json.dump(files, handle)
    return spec, files, expected


@pytest.mark.parametrize("setup", [
    "import keras_hyperbolic.models\nload = keras.saving.load_model",
    "import keras_hyperbolic\nload = keras_hyperbolic.load_model",
])
def test_every_model_kind_loads_in_a_fresh_process(setup, saved_kinds):
    spec, files, expected = saved_kinds
    code = _LOAD_ALL.format(refused=_REFUSED if "models" in setup else "", setup=setup)
    # The same oneDNN setting as this process, so both compute on the same math path.
    out = _python(code, spec, TF_ENABLE_ONEDNN_OPTS=os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
    if "models" in setup:
        assert out[0].startswith("refused"), out
    assert [line.split()[1] for line in out if line.startswith("loaded")] == list(KINDS)
    for name, (path, _) in files.items():
        with np.load(path + ".loaded.npz") as loaded:
            got = [loaded[f"arr_{i}"] for i in range(len(loaded.files))]
        assert len(got) == len(expected[name]), name
        for a, b in zip(got, expected[name]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
