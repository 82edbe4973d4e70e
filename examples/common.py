"""What every example shares: oneDNN on, and the options of `keras-hyperbolic train`.

Imported first by each example, so the environment is set before TensorFlow
is imported (see keras_hyperbolic.runtime); a user's own value is kept.
"""

import argparse
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def run(train, doc, output, add_options=None, task_options=None):
    """Parses --output, --epochs/--steps, --quick, --seed, --verbose and calls `train` with them.

    `add_options(parser)` adds an example's own flags; `task_options(args)` turns them
    into keyword arguments of `train`.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--output", default=output, help=f"output directory (default {output})")
    parser.add_argument("--epochs", "--steps", dest="epochs", type=int, default=None,
                        help="training epochs (video tasks: steps); default: the task's")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    if add_options is not None:
        add_options(parser)
    args = parser.parse_args()
    extra = task_options(args) if task_options is not None else {}
    return train(args.output, epochs=args.epochs, quick=args.quick, seed=args.seed,
                 verbose=args.verbose, **extra)
