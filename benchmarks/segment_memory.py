"""How long a video `keras-hyperbolic segment` trains on whole within a memory budget.

For frames of H x W (RGB, 4 classes), the largest number of frames whose
estimated training step (`keras_hyperbolic.profiling.training_step_estimate`,
what `segment` plans with) fits the budget, for the reversible
`HyperbolicSegmenter` (preset `video_cpu`), the same network on plain
autodiff, and the plain 3D U-Net baseline (`BaselineUNet`, `unet_filters` filters, 2
levels), all built as `segment` builds them (`segmentation_settings.SEGMENT`);
then one measured training step at that size
(`profiling.training_step_memory`, TensorFlow's allocator peak) checks the
estimate against the budget.

Run:  python benchmarks/segment_memory.py --budget 1024          (a few minutes on 2 cores)
      python benchmarks/segment_memory.py --budget 64 --size 16  (seconds)
"""

import argparse
import json

from keras_hyperbolic import runtime  # imports no TensorFlow

# oneDNN on before TensorFlow is imported, unless the user chose: allocator statistics need it.
runtime.prefer_onednn()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1024, help="MB (default 1024)")
    parser.add_argument("--size", type=int, default=64, help="height and width (default 64)")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--no-measure", action="store_true", help="estimates only")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from keras_hyperbolic.profiling import training_step_estimate, training_step_memory
    from keras_hyperbolic.tasks.segmentation_pipeline import build_network, largest_frames
    from keras_hyperbolic.tasks.segmentation_settings import SEGMENT

    def networks():
        rev = build_network("hyperbolic", args.classes, SEGMENT)
        plain = type(rev).from_config({**rev.get_config(), "memory_efficient": False})
        unet = build_network("unet", args.classes, SEGMENT)
        return [("reversible HyperbolicSegmenter", rev), ("same network, plain autodiff", plain),
                ("plain 3D U-Net (BaselineUNet)", unet)]

    results = []
    for name, model in networks():
        frames = largest_frames(model, args.size, args.size, 3, args.budget, model.input_multiple)
        row = {"network": name, "frames": frames, "parameters": None}
        if frames:
            shape = (frames, args.size, args.size, 3)
            row["estimate_mb"] = training_step_estimate(model, shape)["total_bytes"] / 2**20
            model.build((None,) + shape)
            row["parameters"] = int(model.count_params())
            if not args.no_measure:
                model.compile(optimizer=keras.optimizers.Adam(1e-3),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
                rng = np.random.default_rng(0)
                x = rng.random((1,) + shape, dtype=np.float32)
                y = rng.integers(0, args.classes, (1,) + shape[:-1])
                w = np.ones((1,) + shape[:-1], np.float32)
                row["measured"] = training_step_memory(model, x, y, w)
        results.append(row)
        measured = row.get("measured")
        print(f"{name:<32} {frames:>5} frames x {args.size} x {args.size}: estimate "
              f"{row.get('estimate_mb', 0):7.0f} MB"
              + (f", measured step peak {measured['peak_mb']:7.0f} MB "
                 f"({'within' if measured['peak_mb'] <= args.budget else 'OVER'} the "
                 f"{args.budget:g} MB budget; {measured['source']})" if measured else ""),
              flush=True)
    base = results[0]["frames"]
    for row in results[1:]:
        if row["frames"]:
            print(f"reversible / {row['network']}: {base / row['frames']:.1f}x the frames")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"budget_mb": args.budget, "size": args.size, "results": results}, handle,
                      indent=2)


if __name__ == "__main__":
    main()
