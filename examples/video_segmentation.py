"""The main job: segment a whole video from three labelled frames with a 3D HyperbolicSegmenter.

Same as `keras-hyperbolic train video-segmentation`: trains the segmenter and,
as the baseline, a plain 3D U-Net the same number of steps on the same video
(labels on three frames), prints the IoUs over all frames and the training-step
memory of both, and writes the models, `slices.png` and `metrics.json`.

Run:
    python examples/video_segmentation.py                 # the full job
    python examples/video_segmentation.py --quick         # CI-sized (seconds)
    python examples/video_segmentation.py --output DIR --steps 300
"""

from common import run  # examples/common.py: first, it turns oneDNN on before TensorFlow loads

from keras_hyperbolic.tasks.video_segmentation import train_video_segmentation  # noqa: E402

if __name__ == "__main__":
    run(train_video_segmentation, __doc__, "outputs/video_segmentation", unit="steps")
