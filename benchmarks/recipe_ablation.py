"""One change at a time: what the recipe and the architecture do to the segmenter on the main job.

The table of issue "reversible without regret" (docs/guides/networks.md,
"Learning rates and the recipe") comes from this script: the main job's video
(`segmentation_settings.FULL`, seed 0), 300 steps, Adam with cosine decay, the
loss on the labelled frames only, IoU over ALL frames; each line changes one
thing against the segmenter as it was (`video_cpu` with weight norm, the
linear closing, flips only):

  --cfg '{"normalization": "layer"}'   a HyperbolicSegmenter setting (any constructor argument)
  --shift                              random circular time shifts beside the flips
  --space-shift                        random circular shifts of height and width too
  --loss ce_dice                       cross-entropy plus soft Dice (both on the labelled pixels)
  --head 32                            a nonlinear closing head (`head_channels=32`)
  --clip 1.0 / --warmup 30             gradient clipping / linear warm-up
  --ema 0.99                           predict with a moving average of the weights
  --net unet                           the U-Net baseline under the same recipe

For each learning rate it prints the mean IoU over all frames, over the labelled
frames only (a network that fits those but not the rest memorised them), and the
positive IoU of every frame.

Run:  python benchmarks/recipe_ablation.py --cfg '{"normalization": "weight"}'
      python benchmarks/recipe_ablation.py --cfg '{"normalization": "layer"}' --shift
Cost: one learning rate is 300 steps of the main job's segmenter (2-5 minutes on 2 cores).
"""

import argparse
import json
import time

from keras_hyperbolic import runtime  # imports no TensorFlow

runtime.prefer_onednn()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_hyperbolic.data import segmentation_iou  # noqa: E402
from keras_hyperbolic.models import BaselineUNet, HyperbolicSegmenter  # noqa: E402
from keras_hyperbolic.models.presets import get_preset  # noqa: E402
from keras_hyperbolic.tasks.segmentation_settings import FULL  # noqa: E402
from keras_hyperbolic.tasks.video_segmentation import make_video  # noqa: E402


def build(args, config):
    if args.net == "unet":
        return BaselineUNet(num_classes=2, rank=3, **{"filters": FULL.unet_filters,
                                                      "levels": FULL.unet_levels, **config})
    preset = get_preset(FULL.preset)["config"]
    # The segmenter before the changes: weight norm, the linear closing.
    preset.update(normalization="weight", head_channels=args.head or None)
    return HyperbolicSegmenter(num_classes=2, **{**preset, **config})


def masked_loss(args):
    """Cross-entropy (and soft Dice) on the pixels whose weight (channel 1 of y) is 1."""
    def loss(y, logits):
        mask, weight = tf.cast(y[..., 0], tf.int32), y[..., 1]
        ce = keras.losses.sparse_categorical_crossentropy(mask, logits, from_logits=True)
        ce = tf.reduce_sum(ce * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)
        if args.loss == "ce":
            return ce
        prob, onehot, w = tf.nn.softmax(logits, -1), tf.one_hot(mask, 2), weight[..., None]
        inter = tf.reduce_sum(prob * onehot * w, axis=[0, 1, 2, 3])
        total = tf.reduce_sum((prob + onehot) * w, axis=[0, 1, 2, 3])
        return ce + 1.0 - tf.reduce_mean((2 * inter + 1.0) / (total + 1.0))
    return loss


def dataset(args, video, y):
    def augment(x, y):
        for axis in (1, 2, 3):
            flip = tf.random.uniform(()) < 0.5
            x, y = (tf.cond(flip, lambda t=t: tf.reverse(t, [axis]), lambda t=t: t)
                    for t in (x, y))
        if args.shift:
            shift = tf.random.uniform((), 0, tf.shape(x)[1], tf.int32)
            x, y = tf.roll(x, shift, 1), tf.roll(y, shift, 1)
        if args.space_shift:
            for axis in (2, 3):
                shift = tf.random.uniform((), 0, tf.shape(x)[axis], tf.int32)
                x, y = tf.roll(x, shift, axis), tf.roll(y, shift, axis)
        return x, y

    return tf.data.Dataset.from_tensors((video[None], y[None])).repeat().map(augment).prefetch(2)


def run(args, config, rate, data):
    keras.utils.set_random_seed(args.seed)
    model = build(args, config)
    model.build((None,) + data["video"].shape)
    schedule = keras.optimizers.schedules.CosineDecay(rate, args.steps, alpha=0.05)
    if args.warmup:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, args.steps - args.warmup, alpha=0.05, warmup_target=rate,
            warmup_steps=args.warmup)
    model.compile(optimizer=keras.optimizers.Adam(schedule, global_clipnorm=args.clip,
                                                  use_ema=bool(args.ema),
                                                  ema_momentum=args.ema or 0.99),
                  loss=masked_loss(args))
    y = np.stack([data["masks"].astype("float32"), data["weights"]], -1)
    start = time.perf_counter()
    model.fit(dataset(args, data["video"], y), steps_per_epoch=args.steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    labels = np.argmax(model.predict(data["video"][None], verbose=0)[0], -1)
    masks, labelled = data["masks"], list(data["labelled_frames"])
    extra = {}
    if args.tta:  # the softmax averaged over the 8 flips of time, height and width
        flips = [[a for a, bit in zip((1, 2, 3), (i & 1, i & 2, i & 4)) if bit] for i in range(8)]
        mean = sum(np.flip(tf.nn.softmax(model.predict(np.flip(data["video"][None], f),
                                                          verbose=0)).numpy(), f)
                   for f in flips) / 8
        extra["tta_mean_iou"] = segmentation_iou(masks, np.argmax(mean[0], -1))["mean_iou"]
    return {"config": config, "shift": args.shift, "space_shift": args.space_shift,
            "loss": args.loss, "head": args.head,
            "clip": args.clip, "warmup": args.warmup, "ema": args.ema, "network": args.net,
            "learning_rate": rate, **segmentation_iou(masks, labels),
            "labelled_frames_mean_iou": segmentation_iou(masks[labelled],
                                                         labels[labelled])["mean_iou"],
            "per_frame_positive_iou": [segmentation_iou(masks[t:t + 1], labels[t:t + 1])
                                       ["positive_iou"] for t in range(len(masks))],
            "seconds_per_step": seconds / args.steps, **extra}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--net", choices=("hyperbolic", "unet"), default="hyperbolic")
    parser.add_argument("--cfg", default="{}", help="JSON: constructor arguments to change")
    parser.add_argument("--rates", nargs="+", type=float, default=[1e-3, 3e-3, 9e-3])
    parser.add_argument("--shift", action="store_true", help="random circular time shifts")
    parser.add_argument("--space-shift", action="store_true",
                        help="random circular shifts of height and width (after the time shift)")
    parser.add_argument("--loss", choices=("ce", "ce_dice"), default="ce")
    parser.add_argument("--head", type=int, default=0)
    parser.add_argument("--clip", type=float, default=None)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--tta", action="store_true",
                        help="also score the prediction averaged over the 8 flips")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="keep an exponential moving average of the weights (this momentum)")
    parser.add_argument("--steps", type=int, default=FULL.steps)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow threads (0: its default); runs side by side use 1 each")
    parser.add_argument("--json", default="benchmark_recipe_ablation.jsonl")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    data = make_video(FULL, args.seed)
    for rate in args.rates:
        result = run(args, json.loads(args.cfg), rate, data)
        with open(args.json, "a") as handle:
            handle.write(json.dumps(result) + "\n")
        frames = " ".join(f"{v:.0f}" for v in result["per_frame_positive_iou"])
        print(f"{args.net} {args.cfg} shift={args.shift} space_shift={args.space_shift} "
              f"loss={args.loss} head={args.head} "
              f"lr {rate:g}: mean IoU {result['mean_iou']:.1f} (labelled frames "
              f"{result['labelled_frames_mean_iou']:.1f}); positive IoU per frame: {frames}"
              + (f"; with flips averaged {result['tta_mean_iou']:.1f}" if args.tta else ""),
              flush=True)


if __name__ == "__main__":
    main()
