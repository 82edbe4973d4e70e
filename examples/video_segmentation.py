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

import os

# oneDNN on before TensorFlow is imported, unless the user chose (keras_hyperbolic.runtime).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from common import arguments  # noqa: E402  (examples/common.py)

from keras_hyperbolic.tasks.video_segmentation import train_video_segmentation  # noqa: E402

if __name__ == "__main__":
    args = arguments(__doc__, "outputs/video_segmentation")
    train_video_segmentation(args.output, epochs=args.epochs, quick=args.quick, seed=args.seed,
                             verbose=args.verbose)
