"""HyperbolicVAE on scikit-learn's digits: the nonlinear truncated SVD against PCA.

Same as `keras-hyperbolic train vae-digits`: hyperbolic (leapfrog) blocks by
default, `--block additive` for additive couplings; `--protocol two-stage` (default:
column selection with the group norm, pruning, refinement) or `--protocol paper`
(one joint SGD run, energy distance to N(0, 0.1^2), columns of P whose entries
are all below 1e-3 removed); report against PCA with as many dimensions; PNGs
of samples, interpolations and latent histograms.

Run:
    python examples/vae_digits.py
    python examples/vae_digits.py --protocol paper
    python examples/vae_digits.py --block additive
    python examples/vae_digits.py --quick
"""

from common import run  # examples/common.py: first, it turns oneDNN on before TensorFlow loads

from keras_hyperbolic.tasks.vae import train_vae_digits  # noqa: E402


def options(parser):
    parser.add_argument("--block", default=None, choices=["additive", "hyperbolic"],
                        help="reversible blocks of F (default: the task's, hyperbolic)")
    parser.add_argument("--protocol", default=None, choices=["two-stage", "paper"],
                        help="training protocol (default: two-stage)")


def task_options(args):
    return {key: value for key, value in [("block", args.block), ("protocol", args.protocol)]
            if value is not None}


if __name__ == "__main__":
    run(train_vae_digits, __doc__, "outputs/vae_digits", options, task_options)
