"""iUNet on the main job's task: segment the whole digit video from three labelled frames.

A 3D `InvertibleUNet` (learnable orthogonal up/down-sampling, additive
couplings, identity at initialisation; memory-efficient by default) with a
linear convolution in (RGB -> `channels`) and out (-> 2 class logits), trained
on the same real-image video as the main job (`video_segmentation`) with the
loss masked to the three labelled frames; IoU over all frames.
"""

import json
import os

import keras

from keras_hyperbolic.models import InvertibleUNet
from keras_hyperbolic.profiling import training_step_memory
from keras_hyperbolic.tasks import video_training
from keras_hyperbolic.tasks.video_segmentation import make_video
from keras_hyperbolic.validation import check_positive_int

MODEL_FILE = "invertible_unet.keras"


def train_iunet_segmentation(output="outputs/iunet_segmentation", epochs=None, quick=False,
                             seed=0, verbose=1, *, learning_rate=3e-3, time_budget=None):
    """Trains the iUNet on the video task; returns `{"model", "metrics", "model_path"}`.

    Args:
        output: directory for the model, `slices.png`, `metrics.json` and the run log.
        epochs: training steps (one step = the whole video once; default 200, quick 3).
        quick: a CI-sized run (seconds).
        seed: seed of the video and of the weights.
        verbose: Keras progress verbosity.
        learning_rate: Adam's initial learning rate (cosine decay).
        time_budget: seconds after which training stops early (None: never).
    """
    steps = check_positive_int(epochs if epochs is not None else (3 if quick else 200), "epochs")
    keras.utils.set_random_seed(seed)
    os.makedirs(output, exist_ok=True)
    size = (8, 16, 16) if quick else (32, 64, 64)
    data = make_video(dict(zip(("frames", "height", "width"), size)), seed)
    video, masks, weights = data["video"], data["masks"], data["weights"]
    model = InvertibleUNet(rank=3, channels=8, levels=3, blocks_per_level=2, hidden_channels=16,
                           project_input=True, output_channels=2)
    model.build((None,) + video.shape)
    if verbose:
        print(f"InvertibleUNet: {model.count_params():,} parameters, labelled frames "
              f"{data['labelled_frames']} of {len(video)}")
    result = video_training.train_for_steps(
        model, (video, masks, weights), steps, learning_rate,
        run_dir=os.path.join(output, "run"), verbose=verbose, time_budget=time_budget)
    result["memory"] = training_step_memory(model, video[None], masks[None], weights[None])
    labels, iou = video_training.evaluate(model, video, masks)
    result.update(iou, parameters=int(model.count_params()))
    model_path = os.path.join(output, MODEL_FILE)
    model.save(model_path)
    video_training.write_slices_png(os.path.join(output, "slices.png"), video, masks,
                                    {"iunet": labels}, data["labelled_frames"])
    with open(os.path.join(output, "metrics.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    if verbose:
        print(f"{video_training.describe_training(result)}; IoU over all frames: mean "
              f"{iou['mean_iou']:.1f}, positive {iou['positive_iou']:.1f}, negative "
              f"{iou['negative_iou']:.1f}; training-step peak {result['memory']['peak_mb']:.1f} MB "
              f"({result['memory']['source']})")
    return {"model": model, "metrics": result, "model_path": model_path}
