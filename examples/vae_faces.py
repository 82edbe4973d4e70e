"""HyperbolicVAE on scikit-image's `lfw_subset` faces (the paper's Celeb-A experiment, small).

The 100 face crops (25x25) that ship with scikit-image, resized to 32x32 and
normalised by the training split's mean and std; 80 for training, 20 held out.
Same two-stage training and the same report as `vae_digits.py`: latent dimensions
kept, held-out reconstruction error against PCA with as many dimensions, normality
statistics on 16 random directions, and PNGs of samples, interpolations and histograms.

    python examples/vae_faces.py --out vae_faces_out
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vae_digits import parser, train_and_report  # noqa: E402

from keras_hyperbolic.data import load_faces  # noqa: E402


def main():
    args = parser(
        {"out": "vae_faces_out", "max_dims": 32, "epochs_select": 60, "epochs_refine": 80, "alpha": 20.0}
    ).parse_args()
    *data, stats = load_faces(size=args.size, return_stats=True)
    train_and_report(tuple(data), stats, args, "faces")


if __name__ == "__main__":
    main()
