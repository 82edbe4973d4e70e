"""Training tasks on real data that ships with installed packages: what `keras-hyperbolic train` runs.

Every task is a function with one signature,

    train_<task>(output, epochs=None, quick=False, seed=0, verbose=1, **task_options)

that trains, reports (printed when `verbose`), writes its files under
`output`, and returns `{"model": ..., "metrics": {...}, "model_path": ...}`.
`epochs=None` means the task's documented default; for the video tasks one
epoch is one training step on the whole video. `quick=True` is a CI-sized run
(seconds). The command (`keras_hyperbolic.cli`) and the scripts in `examples/`
call these functions; nothing here reads the command line.

`segment_video` (keras_hyperbolic.tasks.segment, `keras-hyperbolic segment`)
trains on the user's own video instead; it is not a registered task, and is
imported on first use so that this module stays light.
"""

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Task:
    """A registered task: where its function lives, and how its model is served."""

    module: str  # keras_hyperbolic.tasks.<module>
    function: str
    serving_name: str  # the model's directory name when exported
    description: str
    unit: str = "epochs"  # what `epochs` counts, for help texts

    def load(self):
        """The task's function (importing its module: TensorFlow, the models)."""
        module = importlib.import_module(f"keras_hyperbolic.tasks.{self.module}")
        return getattr(module, self.function)


TASKS = {
    "video-segmentation": Task(
        "video_segmentation", "train_video_segmentation", "video_segmenter",
        "the main job: 3D HyperbolicSegmenter on a digit video labelled on 3 frames, "
        "against a plain 3D U-Net trained the same way", unit="steps"),
    "iunet-segmentation": Task(
        "iunet_segmentation", "train_iunet_segmentation", "iunet_segmenter",
        "3D InvertibleUNet on the same video task", unit="steps"),
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


def run_task(name, output=None, epochs=None, quick=False, seed=0, verbose=1, **options):
    """Runs the task registered as `name` (see `TASKS`); returns its result dict."""
    if name not in TASKS:
        raise ValueError(f"Invalid value for argument `name`. Expected one of {sorted(TASKS)}. "
                         f"Received: name={name!r}")
    output = output or f"outputs/{name.replace('-', '_')}"
    return TASKS[name].load()(output, epochs=epochs, quick=quick, seed=seed, verbose=verbose,
                              **options)


def __getattr__(name):
    # `segment_video` is imported on first use: the command's parser reads TASKS without TensorFlow.
    if name == "segment_video":
        from keras_hyperbolic.tasks.segment import segment_video

        return segment_video
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
