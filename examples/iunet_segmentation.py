"""iUNet on the main job's task: segment the whole digit video from three labelled frames.

Trains a 3D `InvertibleUNet` (learnable orthogonal up/down-sampling, additive
couplings, identity at initialisation; memory-efficient by default) with a
linear convolution in (RGB -> `channels`) and out (-> 2 class logits) on the
same real-image video as examples/video_segmentation.py, the loss masked to
the three labelled frames, and prints the IoUs over all frames.

Run:
    python examples/iunet_segmentation.py            (~5 min on 2 cores)
    python examples/iunet_segmentation.py --quick    (seconds)
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from keras_hyperbolic.data import make_digit_video  # noqa: E402
from keras_hyperbolic.models import InvertibleUNet  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from video_segmentation import evaluate, step_memory, train_one, write_png  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--time-budget", type=float, default=420.0)
    parser.add_argument("--output", default="outputs/iunet_segmentation")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    os.makedirs(args.output, exist_ok=True)
    size = (8, 16, 16) if args.quick else (32, 64, 64)
    steps = args.steps or (3 if args.quick else 200)
    data = make_digit_video(frames=size[0], height=size[1], width=size[2],
                            digit_size=min(24, size[1] // 2), seed=0)
    video, masks, weights = data["video"], data["masks"], data["weights"]
    model = InvertibleUNet(rank=3, channels=8, levels=3, blocks_per_level=2, hidden_channels=16,
                           project_input=True, output_channels=2)
    model.build((None,) + video.shape)
    print(f"InvertibleUNet: {model.count_params():,} parameters, labelled frames "
          f"{data['labelled_frames']} of {len(video)}")
    result = train_one(model, (video, masks, weights), steps, args.learning_rate,
                       args.time_budget, verbose=0 if args.quick else 2,
                       run_dir=os.path.join(args.output, "run"))
    memory = step_memory(model, video, masks, weights)
    predictions, iou = evaluate(model, video, masks)
    model.save(os.path.join(args.output, "invertible_unet.keras"))
    write_png(os.path.join(args.output, "slices.png"), video, masks, {"iunet": predictions},
              data["labelled_frames"])
    print(f"{result['steps']} steps in {result['train_seconds']:.0f} s; IoU over all frames: "
          f"mean {iou['mean_iou']:.1f}, positive {iou['positive_iou']:.1f}, negative "
          f"{iou['negative_iou']:.1f}; training-step peak {memory['peak_mb']:.1f} MB")
    return iou


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
