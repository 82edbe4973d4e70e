"""The main job's learning rates, picked by a small sweep per network.

Trains the main job's segmenter (`HyperbolicSegmenter`, `FULL.preset`) or its
U-Net baseline (`BaselineUNet`, `FULL.unet_filters` filters, group norm,
`FULL.unet_levels` levels) on the main job's video (`FULL`'s size, labels on 3
frames) through the main job's stages (`video_segmentation.train_network`: the
same flips, loss, Adam with cosine decay and number of steps for both) once per
learning rate, and prints the mean IoU over all frames of each. The best one is
the default of `keras_hyperbolic.tasks.segmentation_settings.FULL.learning_rate`
(segmenter) or `FULL.unet_learning_rate` (U-Net).

Run:  python benchmarks/lr_sweep.py                        (both networks, 3 rates each)
      python benchmarks/lr_sweep.py --networks unet --rates 1e-3 3e-3 --steps 100
"""

import argparse
import json
import tempfile

from keras_hyperbolic import runtime  # imports no TensorFlow

# oneDNN on before TensorFlow is imported, unless the user chose.
runtime.prefer_onednn()

import keras  # noqa: E402

from keras_hyperbolic.tasks.segmentation_pipeline import build_network  # noqa: E402
from keras_hyperbolic.tasks.segmentation_settings import FULL, NETWORKS  # noqa: E402
from keras_hyperbolic.tasks.video_segmentation import make_video, train_network  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--rates", nargs="+", type=float, default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--steps", type=int, default=FULL.steps)
    parser.add_argument("--json", default="benchmark_lr_sweep.json")
    args = parser.parse_args()
    data = make_video()
    results = []
    for network in args.networks:
        for rate in args.rates:
            keras.utils.set_random_seed(0)
            model = build_network(network, 2, FULL)
            settings = FULL.override(steps=args.steps, learning_rate=rate, unet_learning_rate=rate)
            with tempfile.TemporaryDirectory() as run_dir:
                run, _ = train_network(network, model, data, settings, run_dir, verbose=0,
                                       measure_memory=False)
            iou = {k: run[k] for k in ("mean_iou", "positive_iou", "negative_iou")}
            results.append({"network": network, "learning_rate": rate, **iou,
                            "final_loss": run["final_loss"],
                            "seconds_per_step": run["seconds_per_step"]})
            print(f"{network} lr {rate:g}: mean IoU {iou['mean_iou']:.1f} (positive "
                  f"{iou['positive_iou']:.1f}, negative {iou['negative_iou']:.1f}), final loss "
                  f"{run['final_loss']:.4f}", flush=True)
        best = max((r for r in results if r["network"] == network), key=lambda r: r["mean_iou"])
        print(f"best for {network}: lr {best['learning_rate']:g} (mean IoU "
              f"{best['mean_iou']:.1f}) with {model.count_params():,} parameters, "
              f"{args.steps} steps", flush=True)
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
