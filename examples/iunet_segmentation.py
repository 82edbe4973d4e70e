"""iUNet on the main job's task: segment the whole digit video from three labelled frames.

Same as `keras-hyperbolic train iunet-segmentation`: a 3D `InvertibleUNet`
trained the main job's way on the main job's kind of video at 32 x 64 x 64
(the main job's is 16 x 48 x 48), IoU over all frames.

Run:
    python examples/iunet_segmentation.py            (~5 min on 2 cores)
    python examples/iunet_segmentation.py --quick    (seconds)
"""

from common import run  # examples/common.py: first, it turns oneDNN on before TensorFlow loads

from keras_hyperbolic.tasks.iunet_segmentation import train_iunet_segmentation  # noqa: E402

if __name__ == "__main__":
    run(train_iunet_segmentation, __doc__, "outputs/iunet_segmentation")
