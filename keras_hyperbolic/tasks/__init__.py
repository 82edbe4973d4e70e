"""Training tasks on real data that ships with installed packages: what `keras-hyperbolic train` runs.

Every task is a function with one signature,

    train_<task>(output, <count>=None, quick=False, seed=0, verbose=1, **task_options)

that trains, reports (printed when `verbose`), writes its files under
`output`, and returns `{"model": ..., "metrics": {...}, "model_path": ...}`.
`<count>` is the task's `unit`: `steps` for the video tasks (one step = the
whole video once), `epochs` for the others; None means the task's documented
default. `quick=True` is a CI-sized run (seconds). Each `Task` declares the
options the command offers for it (`Task.options`); the command
(`keras_hyperbolic.cli`) builds its flags from those declarations, and it and
the scripts in `examples/` call these functions; nothing here reads the
command line.

The task functions are served here on first use (`from keras_hyperbolic.tasks
import train_video_segmentation`), as is `segment_video`
(keras_hyperbolic.tasks.segment, `keras-hyperbolic segment`), which trains on
the user's own video and is not a registered task: importing this module
imports neither TensorFlow nor the models.
"""

import dataclasses
import importlib

#: What a task's count may count, and so the keyword its function takes the count as.
UNITS = ("epochs", "steps")


@dataclasses.dataclass(frozen=True)
class Option:
    """An option of a task offered on the command line and passed to its function as `name=`.

    `type` is int, float or str (a flag with a value), or bool: a switch that
    passes `value` when given. `default` says, for help texts, what the task
    does without the option.
    """

    name: str  # the task function's keyword argument
    type: type
    help: str
    default: str = "the task's"
    flag: str = ""  # default: `--` and `name` with dashes
    value: object = None  # what a switch (type bool) passes
    positive: bool = False  # a number that must be > 0
    metavar: str = ""  # the value's name in help texts (default: `name` in capitals)

    @property
    def cli_flag(self):
        return self.flag or "--" + self.name.replace("_", "-")


TIME_BUDGET = Option(
    "time_budget", float, "stop training after this many seconds; the summary says when it "
    "cut training", default="never", positive=True, metavar="SECONDS")
NO_BASELINE = Option(
    "train_unet", bool, "skip the baseline network", default="train it too",
    flag="--no-baseline", value=False)


@dataclasses.dataclass(frozen=True)
class Task:
    """A registered task: its function, what it counts, its options, how its model is served."""

    module: str  # keras_hyperbolic.tasks.<module>
    function: str
    serving_name: str  # the model's directory name when exported
    description: str
    unit: str = "epochs"  # what the count counts: the keyword the function takes it as
    options: tuple = ()  # the `Option`s the command offers besides the shared ones

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"Invalid value for argument `unit`. Expected one of {UNITS}. "
                             f"Received: unit={self.unit!r}")

    def load(self):
        """The task's function (importing its module: TensorFlow, the models)."""
        module = importlib.import_module(f"keras_hyperbolic.tasks.{self.module}")
        return getattr(module, self.function)


TASKS = {
    "video-segmentation": Task(
        "video_segmentation", "train_video_segmentation", "video_segmenter",
        "the main job: 3D HyperbolicSegmenter on a digit video labelled on 3 frames, "
        "against a plain 3D U-Net trained the same way", unit="steps",
        options=(TIME_BUDGET, NO_BASELINE)),
    "iunet-segmentation": Task(
        "iunet_segmentation", "train_iunet_segmentation", "iunet_segmenter",
        "3D InvertibleUNet on the same video task", unit="steps", options=(TIME_BUDGET,)),
    "irevnet-digits": Task(
        "irevnet_digits", "train_irevnet_digits", "irevnet_digits",
        "i-RevNet classifier on scikit-learn digits"),
    "vae-digits": Task(
        "vae", "train_vae_digits", "digits_vae",
        "HyperbolicVAE (nonlinear truncated SVD) on scikit-learn digits against PCA "
        "(epochs: of each of its two stages)"),
    "vae-faces": Task(
        "vae", "train_vae_faces", "faces_vae",
        "HyperbolicVAE on scikit-image's LFW face crops (epochs: of each stage)"),
    "flow-digits": Task(
        "flow_digits", "train_flow_digits", "digits_flow",
        "ConvFlow normalising flow on scikit-learn digits (dequantised maximum likelihood)"),
}


def run_task(name, output=None, quick=False, seed=0, verbose=1, **options):
    """Runs the task registered as `name` (see `TASKS`); returns its result dict.

    The count goes under the task's unit (`steps=` for the video tasks,
    `epochs=` for the others); `options` are passed to the task's function.
    """
    if name not in TASKS:
        raise ValueError(f"Invalid value for argument `name`. Expected one of {sorted(TASKS)}. "
                         f"Received: name={name!r}")
    task = TASKS[name]
    for unit in UNITS:
        if unit != task.unit and unit in options:
            raise ValueError(f"Invalid argument `{unit}` for the task {name!r}: it counts "
                             f"{task.unit}; pass `{task.unit}=` instead. Received: "
                             f"{unit}={options[unit]!r}")
    output = output or f"outputs/{name.replace('-', '_')}"
    return task.load()(output, quick=quick, seed=seed, verbose=verbose, **options)


#: The names served on first use, and the module each comes from.
_LAZY = {task.function: task.module for task in TASKS.values()} | {"segment_video": "segment"}
# Written out (not derived from _LAZY) so that tools reading the source see the lazy names;
# tests/test_package_root.py keeps the two equal.
__all__ = ["UNITS", "Option", "TIME_BUDGET", "NO_BASELINE", "Task", "TASKS", "run_task",
           "train_video_segmentation", "train_iunet_segmentation", "train_irevnet_digits",
           "train_vae_digits", "train_vae_faces", "train_flow_digits", "segment_video"]


def __getattr__(name):
    # Imported on first use: the command's parser reads TASKS without TensorFlow.
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
