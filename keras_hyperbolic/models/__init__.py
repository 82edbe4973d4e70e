"""Whole networks of the papers, trained with `model.fit`.

Presets are plain data in `presets.py`; a model builds its own with
`Model.from_preset(name, **overrides)` and lists them with `Model.presets()` (`PresetMixin`).
"""

from keras_hyperbolic.models.hyperbolic_segmenter import HyperbolicSegmenter  # noqa: F401
from keras_hyperbolic.models.unet_baseline import BaselineUNet  # noqa: F401
from keras_hyperbolic.models.presets import PRESETS, get_preset  # noqa: F401
from keras_hyperbolic.models.preset_mixin import PresetMixin  # noqa: F401
from keras_hyperbolic.models.invertible_unet import InvertibleUNet  # noqa: F401
from keras_hyperbolic.models.irevnet import IRevNet  # noqa: F401
from keras_hyperbolic.models.hyperbolic_vae import HyperbolicVAE  # noqa: F401
from keras_hyperbolic.models.conv_flow import ConvFlow  # noqa: F401
