"""The settings of the video-segmentation pipeline, in one place and free of TensorFlow.

One frozen dataclass, `SegmentationSettings`, holds what the pipeline
(`segmentation_pipeline`) reads: the networks' sizes, the training steps and
learning rates, the memory budget that decides between training on the whole
video and on windows, and the size of the main job's composed video. Its
instances are the runs:

- `FULL`: the main job (`keras-hyperbolic train video-segmentation`);
- `QUICK`: the main job's CI-sized run (`--quick`, seconds);
- `SEGMENT`: `keras-hyperbolic segment` on the user's own video. It IS `FULL`:
  segment trains the main job's networks the main job's way (the video size
  fields are the main job's; segment reads the user's video instead);
- `IUNET`, `IUNET_QUICK`: the iUNet task on the main job's kind of video.

Overrides: `settings.override(steps=100, preset=None)` (`dataclasses.replace`
where None keeps the value), then `settings.check()` refuses bad values,
naming the argument.
"""

import dataclasses
import numbers

from keras_hyperbolic.validation import check_positive_int, invalid

#: The networks of the main job (and the choices of `segment --network`).
NETWORKS = ("hyperbolic", "unet")

#: Frames per second of `segment`'s overlay animation.
OVERLAY_FPS = 8


@dataclasses.dataclass(frozen=True)
class SegmentationSettings:
    """How one video is segmented: the networks, their training, the memory plan.

    Attributes:
        steps: training steps of each network (one step: the whole video, or
            one window of it, once).
        learning_rate: the `HyperbolicSegmenter`'s (and the iUNet's) initial
            Adam rate; it decays (cosine) to 5 % over `steps`.
        unet_learning_rate: the `BaselineUNet`'s.
        preset: the `HyperbolicSegmenter` preset.
        unet_filters: the U-Net's channels at full resolution.
        unet_levels: the U-Net's downsamplings.
        memory_budget_mb: memory to plan for, TensorFlow itself aside: the
            video's arrays and the estimated training step; the whole video
            when its step fits (and `max_step_voxels` holds it), else crops
            that fit (`segmentation_plan`).
        max_step_voxels: the most voxels one training step convolves (the
            time of a step grows with them): a larger video trains on crops.
        frames, height, width: the main job's composed video.
    """

    # 16 frames of 48 x 48 (labels on frames 1, 7, 15), 300 steps per network: the README's
    # first command took 4.2 minutes on 2 Xeon cores (6.0 with oneDNN held to AVX2; README).
    steps: int = 300
    # Rates of both networks from their own sweeps on benchmarks/segmentation_suite.py (300
    # steps, random flips and circular shifts; docs/guides/networks.md, "Several videos"): on
    # the main job's video (seed 0) the segmenter (`video_cpu`) reached 94.1 / 94.9 / 93.2 mean
    # IoU at 1e-3 / 3e-3 / 9e-3, the U-Net 93.2 / 95.3 / 93.8 at 3.3e-4 / 1e-3 / 3e-3; with time
    # shifts only, the U-Net did better at 1e-3 than at 3e-3 on every case of the suite.
    learning_rate: float = 3e-3
    unet_learning_rate: float = 1e-3
    preset: str = "video_cpu"
    # 24 filters: about the segmenter's parameter count ("similar size": 874k against 852k).
    unet_filters: int = 24
    unet_levels: int = 2
    memory_budget_mb: float = 4096.0
    # 2**18 voxels (64 x 64 x 64, or 16 x 128 x 128): 7 times the main job's whole video
    # (16 x 48 x 48: 0.50 s a step of the video_cpu segmenter on 2 CPU cores, docs/benchmarks.md), so that 300
    # steps take minutes whatever the video's size. The main job's videos (16 x 48 x 48, the
    # iUNet's 32 x 64 x 64) are below it: trained whole. Not tuned by a measurement at this size.
    max_step_voxels: int = 2**18
    frames: int = 16
    height: int = 48
    width: int = 48

    def override(self, **values):
        """A copy with `values` set; a value of None keeps the current one."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})

    def learning_rate_of(self, network):
        """The initial learning rate of `network` ("unet": the U-Net's; others: the segmenter's)."""
        return self.unet_learning_rate if network == "unet" else self.learning_rate

    def check(self):
        """Returns these settings (numbers as floats) or raises naming the bad argument."""
        for name in ("steps", "unet_filters", "unet_levels", "frames", "height", "width",
                     "max_step_voxels"):
            check_positive_int(getattr(self, name), name)
        values = {}
        for name, expected in (("learning_rate", "a positive number"),
                               ("unet_learning_rate", "a positive number"),
                               ("memory_budget_mb", "a positive number of megabytes")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                raise invalid(name, value, expected)
            values[name] = float(value)
        return dataclasses.replace(self, **values)


FULL = SegmentationSettings()
QUICK = FULL.override(frames=8, height=16, width=16, steps=3, learning_rate=1e-2,
                     preset="tiny_3d", unet_filters=2)
SEGMENT = FULL
# The iUNet task: a longer, larger video (32 x 64 x 64) and 200 steps at the segmenter's rate.
IUNET = FULL.override(frames=32, height=64, width=64, steps=200)
IUNET_QUICK = QUICK.override(learning_rate=3e-3)
