"""HyperbolicVAE on scikit-learn's digits: the nonlinear truncated SVD against PCA.

Same as `keras-hyperbolic train vae-digits`: `--protocol two-stage` (default:
column selection with the group norm, pruning, refinement) or `--protocol paper`
(one joint SGD run, energy distance to N(0, 0.1^2), columns of P whose entries
are all below 1e-3 removed); report against PCA with as many dimensions; PNGs
of samples, interpolations and latent histograms.

Run:
    python examples/vae_digits.py
    python examples/vae_digits.py --block hyperbolic --protocol paper
    python examples/vae_digits.py --quick
"""

import os

# oneDNN on before TensorFlow is imported, unless the user chose (keras_hyperbolic.runtime).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from common import arguments  # noqa: E402  (examples/common.py)

from keras_hyperbolic.tasks.vae import train_vae_digits  # noqa: E402


def options(parser):
    parser.add_argument("--block", default=None, choices=["additive", "hyperbolic"],
                        help="reversible blocks of F (default: the task's)")
    parser.add_argument("--protocol", default=None, choices=["two-stage", "paper"],
                        help="training protocol (default: two-stage)")


if __name__ == "__main__":
    args = arguments(__doc__, "outputs/vae_digits", options)
    extra = {key: value for key, value in [("block", args.block), ("protocol", args.protocol)]
             if value is not None}
    train_vae_digits(args.output, epochs=args.epochs, quick=args.quick, seed=args.seed,
                     verbose=args.verbose, **extra)
