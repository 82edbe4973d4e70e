"""iUNet on the main job's task: segment a whole digit video from three labelled frames.

A 3D `InvertibleUNet` (learnable orthogonal up/down-sampling, additive
couplings, identity at initialisation; memory-efficient by default) with a
linear convolution in (RGB -> 8 channels) and out (-> 2 class logits), trained
the main job's way (`video_segmentation`: the loss masked to three labelled
frames, IoU over all frames) on the main job's kind of video, made longer and
larger: 32 x 64 x 64 (the main job's is 16 x 48 x 48). Settings:
`segmentation_settings.IUNET` (`IUNET_QUICK` for `--quick`).
"""

import os

import keras

from keras_hyperbolic.tasks import segmentation_pipeline as pipeline
from keras_hyperbolic.tasks.pictures import write_slices_png
from keras_hyperbolic.tasks.segmentation_settings import IUNET, IUNET_QUICK
from keras_hyperbolic.tasks.video_segmentation import make_video, train_network

MODEL_FILE = "invertible_unet.keras"


def train_iunet_segmentation(output="outputs/iunet_segmentation", steps=None, quick=False,
                             seed=0, verbose=1, *, learning_rate=None, time_budget=None):
    """Trains the iUNet on the video task; returns `{"model", "metrics", "model_path"}`.

    Args:
        output: directory for the model, `slices.png`, `metrics.json` and the run log.
        steps: training steps (one step = the whole video once; default 200, quick 3).
        quick: a CI-sized run (8 x 16 x 16 video, seconds).
        seed: seed of the video and of the weights.
        verbose: Keras progress verbosity.
        learning_rate: the initial learning rate (default 3e-3, cosine decay).
        time_budget: seconds after which training stops early (None: never).
    """
    settings = (IUNET_QUICK if quick else IUNET).override(
        steps=steps, learning_rate=learning_rate).check()
    keras.utils.set_random_seed(seed)
    os.makedirs(output, exist_ok=True)
    data = make_video(settings, seed)
    model = pipeline.build_network("iunet", 2, settings)
    if verbose:
        print(f"InvertibleUNet on a {data['video'].shape} video, labelled frames "
              f"{data['labelled_frames']}")
    result, labels = train_network("iunet", model, data, settings, os.path.join(output, "run"),
                                   verbose, time_budget)
    model_path = os.path.join(output, MODEL_FILE)
    model.save(model_path)
    write_slices_png(os.path.join(output, "slices.png"), data["video"], data["masks"],
                     {f"InvertibleUNet\nmean IoU {result['mean_iou']:.1f}": labels},
                     data["labelled_frames"])
    pipeline.write_metrics(output, result)
    if verbose:
        print(f"{pipeline.describe_training(result)}; IoU over all frames: mean "
              f"{result['mean_iou']:.1f}, positive {result['positive_iou']:.1f}, negative "
              f"{result['negative_iou']:.1f}; training-step peak {result['memory']['peak_mb']:.1f} "
              f"MB ({result['memory']['source']})")
    return {"model": model, "metrics": result, "model_path": model_path}
