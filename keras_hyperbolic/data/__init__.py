"""Small real data sets built from what ships inside installed packages (nothing is downloaded)."""

from keras_hyperbolic.data.video import make_digit_video, segmentation_iou  # noqa: F401
from keras_hyperbolic.data.images import load_digits, load_faces  # noqa: F401
