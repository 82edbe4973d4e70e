"""Presets of the package's networks, as plain data.

Each preset is the keyword arguments of a model constructor plus, where the
paper fixes it, the input shape it was used with. Build one with
`HyperbolicSegmenter.from_preset(name, num_classes=...)`.

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

PRESETS = {
    "lensink_video": {
        "description": "Lensink et al. (2022) Table 2, video (DAVIS) network: 19 layers, "
        "two 3D Haar steps up front, 3x3x3 kernels.",
        "model": "HyperbolicSegmenter",
        "input_shape": (240, 424, 72, 6),
        "config": {
            "rank": 3,
            "width": 6,
            "units": [(5, "up"), (6, "up"), (8, None)],
            "input_pooling_levels": 2,
            "pooling": "haar",
            "kernel_size": 3,
            "h": 0.1,
        },
    },
    "lensink_hyperspectral": {
        "description": "Lensink et al. (2022) Table 2, time-lapse hyperspectral network "
        "(the same network as the video one).",
        "model": "HyperbolicSegmenter",
        "input_shape": (304, 240, 152, 2),
        "config": {
            "rank": 3,
            "width": 6,
            "units": [(5, "up"), (6, "up"), (8, None)],
            "input_pooling_levels": 2,
            "pooling": "haar",
            "kernel_size": 3,
            "h": 0.1,
        },
    },
    "video_cpu": {
        "description": "Small 3D video segmenter for 2 CPU cores (the main job, keras_hyperbolic.tasks.video_segmentation): "
        "32 x 64 x 64 video.",
        "model": "HyperbolicSegmenter",
        "input_shape": (32, 64, 64, 3),
        "config": {
            "rank": 3,
            "width": 8,
            "units": [(2, "down"), (2, "down"), (2, "up"), (2, "up"), (2, None)],
            "input_pooling_levels": 0,
            "pooling": "haar",
            "kernel_size": 3,
            "hidden_channels": 16,
            "h": 0.5,
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
}


def get_preset(name):
    """A deep copy of preset `name` (a dict with `model`, `config`, `input_shape`, `description`)."""
    if name not in PRESETS:
        raise ValueError(
            f"Invalid value for argument `preset`. Expected one of {sorted(PRESETS)}. "
            f"Received: preset={name!r}"
        )
    return copy.deepcopy(PRESETS[name])
