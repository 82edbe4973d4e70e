"""HyperbolicVAE on scikit-learn's digits: the nonlinear truncated SVD against PCA.

Same as `keras-hyperbolic train vae-digits` (two stages: column selection with
the group norm, pruning, refinement; report against PCA with as many
dimensions; PNGs of samples, interpolations and latent histograms).

Run:
    python examples/vae_digits.py
    python examples/vae_digits.py --block hyperbolic
    python examples/vae_digits.py --quick
"""

from common import run  # examples/common.py: first, it turns oneDNN on before TensorFlow loads

from keras_hyperbolic.tasks.vae import train_vae_digits  # noqa: E402


def options(parser):
    parser.add_argument("--block", default=None, choices=["additive", "hyperbolic"])


def task_options(args):
    return {"block": args.block} if args.block else {}


if __name__ == "__main__":
    run(train_vae_digits, __doc__, "outputs/vae_digits", options, task_options)
