"""Presets of the package's networks, as plain data.

Each preset is the keyword arguments of a model constructor (`config`) plus,
where the paper fixes it, the input shape it was used with, and is registered
to the model class named by its `model`. That class builds it with
`from_preset(name, **overrides)` and lists its presets with `presets()`
(`keras_hyperbolic.models.preset_mixin.PresetMixin`), e.g.
`HyperbolicSegmenter.from_preset("video_cpu", num_classes=2)`,
`IRevNet.from_preset("irevnet_b")`, `HyperbolicVAE.from_preset("lensink_mnist")`.

`lensink_video` and `lensink_hyperspectral` replicate Table 2 of Lensink,
Peters & Haber, "Fully Hyperbolic Convolutional Neural Networks": 19
hyperbolic layers with 3x3x3 kernels; two 3D Haar transforms are applied to
the data up front (`input_pooling_levels=2`), so the network starts at the
coarsest level and has two up-steps:

    video, input 240 x 424 x 72 x 6 (RGB repeated twice):
      layers 1-5    60 x 106 x 18, 384 channels  (6 * 8**2)
      layers 6-11  120 x 212 x 36,  48 channels  (6 * 8)
      layers 12-19 240 x 424 x 72,   6 channels
    hyperspectral, input 304 x 240 x 152 x 2: the same network.

The `width` is the channel count at full resolution (6 in the paper), made by
an opening convolution from the data's channels; the pair state of the
hyperbolic network holds two such states.

`irevnet_a` and `irevnet_b` are the i-RevNets of Jacobsen's thesis
(section 6.3.2, Table 9) on ImageNet (224 x 224 x 3, 1000 classes):

    (a) injective, 56 layers: a 4 x 4 squeeze (3 -> 48 channels) and zero
        padding to 96; 18 blocks, down-sampling at blocks 5, 9 and 15
        (1-based); halves of 48, 192, 768, 3072 channels. Thesis: 181M parameters.
    (b) bijective, 300 layers: a 2 x 2 squeeze (3 -> 12 channels); 100 blocks,
        down-sampling at blocks 1, 7, 23 and 95; halves of 24, 96, 384, 1536
        channels. Thesis: 29M parameters.

The block counts per stage come from the down-sampling depths the thesis
gives (`3j = 15, 27, 45` and `3j = 3, 21, 69, 285`, three layers a block);
(b)'s agree with the reference code's `--nBlocks 6 16 72 6`. `irevnet_cifar`
is the reference code's CIFAR-10 model (no squeeze, 3 channels zero-padded
to 32, stages of 18 blocks). docs/papers.md sets the parameter counts these
presets build next to the thesis's.

`lensink_mnist` is the VAE of section 6.2.1 (`HyperbolicVAE.from_preset`):
32x32 MNIST, 5 units of 3 hyperbolic layers, h = 1e-2, energy distance to
N(0, 0.1^2); its `training` entry is the paper's protocol (one SGD run,
batch 512, learning rate 1e-2 for the network and 5e-3 for P, 100 epochs,
then the columns of P whose entries are all below 1e-3 are removed;
`keras_hyperbolic.tasks.vae` runs it with `protocol="paper"`). The paper
gives neither alpha and beta nor how the squared error is normalised: the
values here are the task's (mean over pixels; plain SGD at these step sizes
diverges with the sum).

The `*_cpu` presets are the small configurations the examples and tests train
on two CPU cores.
"""

import copy

# Table 2's network, which the paper uses for both its video and its
# hyperspectral data (`get_preset` hands out copies).
_LENSINK_TABLE2 = {
    "rank": 3,
    "width": 6,
    "units": [(5, "up"), (6, "up"), (8, None)],
    "input_pooling_levels": 2,
    "pooling": "haar",
    "kernel_size": 3,
    "h": 0.1,
}

PRESETS = {
    "lensink_video": {
        "description": "Lensink et al. (2022) Table 2, video (DAVIS) network: 19 layers, "
        "two 3D Haar steps up front, 3x3x3 kernels.",
        "model": "HyperbolicSegmenter",
        "input_shape": (240, 424, 72, 6),
        "config": _LENSINK_TABLE2,
    },
    "lensink_hyperspectral": {
        "description": "Lensink et al. (2022) Table 2, time-lapse hyperspectral network "
        "(the same network as the video one).",
        "model": "HyperbolicSegmenter",
        "input_shape": (304, 240, 152, 2),
        "config": _LENSINK_TABLE2,
    },
    "video_cpu": {
        "description": "Small 3D video segmenter for 2 CPU cores (the main job, keras_hyperbolic.tasks.video_segmentation): "
        "16 x 48 x 48 video.",
        "model": "HyperbolicSegmenter",
        "input_shape": (16, 48, 48, 3),
        "config": {
            "rank": 3,
            # Width 12, h = 0.25 and instance norm in the blocks: the recipe table
            # (docs/guides/networks.md, "Learning rates and the recipe"): per-channel
            # statistics bound each hidden channel's force (no divergence at 9e-3)
            # without mixing the channels' scales as layer norm does; width 12
            # (852k parameters; the U-Net it is compared with has 24 filters,
            # 874k) and h = 0.25 gave the most over seeds 0-2 of the main job's video;
            # with the spatial shifts a nonlinear closing head (32 channels) gained
            # 0.4 over those seeds, for no measured growth of the step's peak.
            "width": 12,
            "units": [(2, "down"), (2, "down"), (2, "up"), (2, "up"), (2, None)],
            "input_pooling_levels": 0,
            "pooling": "haar",
            "kernel_size": 3,
            "hidden_channels": 16,
            "h": 0.25,
            "normalization": "instance",
            "head_channels": 32,
        },
    },
    "lensink_mnist": {
        "description": "Lensink et al. (2022) section 6.2.1, the MNIST VAE: 5 units x 3 "
        "hyperbolic layers, h = 1e-2, 32x32 input.",
        "model": "HyperbolicVAE",
        "input_shape": (32, 32, 1),
        "config": {
            "levels": 5,
            "depth": 3,
            "block": "hyperbolic",
            "wavelet": "haar",
            "h": 0.01,
            "gaussianity": "energy",
            "latent_std": 0.1,
            "reconstruction": "mean",
            "alpha": 0.05,
            "beta": 0.01,
            "projection_learning_rate": 5e-3,
        },
        "training": {
            "optimizer": "SGD",
            "learning_rate": 1e-2,
            "batch_size": 512,
            "epochs": 100,
            "prune_entries_below": 1e-3,
        },
    },
    "tiny_2d": {
        "description": "Tiny 2D segmenter for tests.",
        "model": "HyperbolicSegmenter",
        "input_shape": (16, 16, 3),
        "config": {
            "rank": 2,
            "width": 4,
            "units": [(1, "down"), (1, "up"), (1, None)],
            "pooling": "haar",
            "kernel_size": 3,
            "h": 0.5,
        },
    },
    "tiny_3d": {
        "description": "Tiny 3D segmenter for tests.",
        "model": "HyperbolicSegmenter",
        "input_shape": (8, 8, 8, 2),
        "config": {
            "rank": 3,
            "width": 2,
            "units": [(1, "down"), (1, "up"), (1, None)],
            "pooling": "haar",
            "kernel_size": 3,
            "hidden_channels": 4,
            "h": 0.5,
        },
    },
    "irevnet_a": {
        "description": "Jacobsen's thesis, i-RevNet (a): injective, 56 layers, 4x4 squeeze "
        "and zero padding 48 -> 96 channels (thesis: 181M parameters).",
        "model": "IRevNet",
        "input_shape": (224, 224, 3),
        "num_classes": 1000,
        "config": {
            "stages": (4, 4, 6, 4),
            "strides": (1, 2, 2, 2),
            "init_squeeze": 4,
            "injective": True,
            "stem_channels": 96,
            "kernel_size": 3,
            "normalization": "batch",
        },
    },
    "irevnet_b": {
        "description": "Jacobsen's thesis, i-RevNet (b): bijective, 300 layers, 2x2 squeeze "
        "3 -> 12 channels (thesis: 29M parameters).",
        "model": "IRevNet",
        "input_shape": (224, 224, 3),
        "num_classes": 1000,
        "config": {
            "stages": (6, 16, 72, 6),
            "strides": (2, 2, 2, 2),
            "init_squeeze": 2,
            "kernel_size": 3,
            "normalization": "batch",
        },
    },
    "irevnet_cifar": {
        "description": "The reference code's CIFAR-10 i-RevNet: injective, no squeeze, "
        "3 -> 32 channels by zero padding, stages of 18 blocks (halves 16, 64, 256).",
        "model": "IRevNet",
        "input_shape": (32, 32, 3),
        "num_classes": 10,
        "config": {
            "stages": (18, 18, 18),
            "strides": (1, 2, 2),
            "init_squeeze": 1,
            "injective": True,
            "stem_channels": 32,
            "kernel_size": 3,
            "normalization": "batch",
        },
    },
}


def get_preset(name):
    """A deep copy of preset `name` (a dict with `model`, `config`, `input_shape`, `description`)."""
    if name not in PRESETS:
        raise ValueError(
            f"Invalid value for argument `preset`. Expected one of {sorted(PRESETS)}. "
            f"Received: preset={name!r}"
        )
    return copy.deepcopy(PRESETS[name])
