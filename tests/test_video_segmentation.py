"""The main job and the iUNet task called directly: `steps`, metrics, models and slices.png."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_hyperbolic.tasks import pictures
from keras_hyperbolic.tasks.iunet_segmentation import train_iunet_segmentation
from keras_hyperbolic.tasks.segmentation_settings import QUICK
from keras_hyperbolic.tasks.video_segmentation import train_video_segmentation

MAIN_JOB_KEYS = {"settings", "labelled_frames", "onednn", "hyperbolic", "unet", "png"}
NETWORK_KEYS = {"steps", "steps_planned", "train_seconds", "seconds_per_step",
                "stopped_by_time_budget", "final_loss", "learning_rate", "memory", "mean_iou",
                "positive_iou", "negative_iou", "parameters"}


def test_main_job_trains_both_networks_the_given_steps(tmp_path):
    output = str(tmp_path / "main")
    result = train_video_segmentation(output, steps=2, quick=True, verbose=0)
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert set(metrics) == MAIN_JOB_KEYS
    for name in ("hyperbolic", "unet"):
        assert NETWORK_KEYS <= set(metrics[name]), name
        assert metrics[name]["steps"] == metrics[name]["steps_planned"] == 2
    assert "memory_plain_autodiff" in metrics["hyperbolic"]
    assert metrics["settings"]["steps"] == 2 and metrics["settings"]["preset"] == QUICK.preset
    assert metrics["hyperbolic"]["learning_rate"] == QUICK.learning_rate
    assert metrics["unet"]["learning_rate"] == QUICK.unet_learning_rate
    for name in ("hyperbolic_segmenter.keras", "unet_baseline.keras", "slices.png"):
        assert os.path.isfile(os.path.join(output, name)), name
    assert result["model_path"] == os.path.join(output, "hyperbolic_segmenter.keras")


def test_iunet_task_takes_steps(tmp_path):
    output = str(tmp_path / "iunet")
    result = train_iunet_segmentation(output, steps=1, quick=True, verbose=0)
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert metrics["steps"] == 1 and 0 <= metrics["mean_iou"] <= 100
    assert os.path.isfile(result["model_path"])
    assert os.path.isfile(os.path.join(output, "slices.png"))


@pytest.mark.parametrize("bad", [0, -3, 1.5])
def test_video_tasks_refuse_bad_steps_before_work(bad, tmp_path):
    for train in (train_video_segmentation, train_iunet_segmentation):
        with pytest.raises(ValueError, match="argument `steps`"):
            train(str(tmp_path / "out"), steps=bad, quick=True, verbose=0)
    assert not os.path.exists(tmp_path / "out")


def test_slices_png_titles_rows_and_frames_labelled_columns(tmp_path):
    rng = np.random.default_rng(0)
    video = rng.random((12, 16, 16, 3)).astype(np.float32) * 0.5  # dark: no orange in the frames
    masks = (rng.random((12, 16, 16)) > 0.5).astype(np.int32)
    path = str(tmp_path / "slices.png")
    shown = pictures.write_slices_png(path, video, masks, {"NetA": masks, "NetB\nIoU 1": masks},
                                      labelled_frames=[1, 7])
    assert {1, 7} <= set(shown)
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    orange = np.all(image == pictures.LABELLED_COLOUR, axis=-1)
    columns = np.flatnonzero(orange.any(axis=0))
    # Two framed columns, one per labelled frame; the frame runs down all four rows.
    groups = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    assert len(groups) == 2
    rows = np.flatnonzero(orange.any(axis=1))
    assert rows.max() - rows.min() > 4 * 16 * 3
    assert (image[40:, 6:20] < 100).any()  # the row titles, left of the frames
