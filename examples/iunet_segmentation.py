"""iUNet on the main job's task: segment the whole digit video from three labelled frames.

Same as `keras-hyperbolic train iunet-segmentation`: a 3D `InvertibleUNet`
trained on the main job's video, IoU over all frames.

Run:
    python examples/iunet_segmentation.py            (~5 min on 2 cores)
    python examples/iunet_segmentation.py --quick    (seconds)
"""

import os

# oneDNN on before TensorFlow is imported, unless the user chose (keras_hyperbolic.runtime).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from common import arguments  # noqa: E402  (examples/common.py)

from keras_hyperbolic.tasks.iunet_segmentation import train_iunet_segmentation  # noqa: E402

if __name__ == "__main__":
    args = arguments(__doc__, "outputs/iunet_segmentation")
    train_iunet_segmentation(args.output, epochs=args.epochs, quick=args.quick, seed=args.seed,
                             verbose=args.verbose)
