"""The digit-over-texture video: exact masks, motion, labelled frames, IoU."""

import numpy as np
import pytest

from keras_hyperbolic.data import make_digit_video, segmentation_iou


def test_video_shapes_masks_and_labels():
    data = make_digit_video(frames=12, height=32, width=32, digit_size=12, seed=3)
    video, masks, weights = data["video"], data["masks"], data["weights"]
    assert video.shape == (12, 32, 32, 3) and video.dtype == np.float32
    assert masks.shape == (12, 32, 32) and set(np.unique(masks)) == {0, 1}
    assert 0.0 <= video.min() and video.max() <= 1.0
    assert len(data["labelled_frames"]) == 3
    labelled = np.zeros(12, bool)
    labelled[list(data["labelled_frames"])] = True
    assert np.all(weights[labelled] == 1) and np.all(weights[~labelled] == 0)
    # Digits move: the masks of consecutive frames differ.
    assert all((masks[t] != masks[t + 1]).any() for t in range(11))
    # The background pans too: unlabelled frames are not copies of labelled ones.
    assert not np.allclose(video[0], video[-1])


def test_video_is_deterministic_per_seed():
    a = make_digit_video(frames=4, height=16, width=16, digit_size=8, seed=1)
    b = make_digit_video(frames=4, height=16, width=16, digit_size=8, seed=1)
    c = make_digit_video(frames=4, height=16, width=16, digit_size=8, seed=2)
    np.testing.assert_array_equal(a["video"], b["video"])
    assert not np.array_equal(a["masks"], c["masks"])


@pytest.mark.parametrize(
    "kwargs, name",
    [({"frames": 2}, "frames"), ({"digit_size": 40, "height": 32}, "digit_size"),
     ({"texture": "wood"}, "texture"), ({"labelled_frames": (0, 99)}, "labelled_frames")],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_digit_video(**kwargs)


def test_iou():
    masks = np.array([[1, 1, 0, 0]])
    scores = segmentation_iou(masks, np.array([[1, 0, 0, 0]]))
    assert scores["positive_iou"] == pytest.approx(50.0)
    assert scores["negative_iou"] == pytest.approx(100 * 2 / 3)
    assert scores["mean_iou"] == pytest.approx((50.0 + 100 * 2 / 3) / 2)
    with pytest.raises(ValueError, match="shape"):
        segmentation_iou(masks, np.zeros((2, 2)))
