"""What every example shares: oneDNN on, and the options of `keras-hyperbolic train`.

Imported first by each example, so the environment is set before TensorFlow
is imported (see keras_hyperbolic.runtime); a user's own value is kept.
"""

import argparse
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def run(train, doc, output, add_options=None, task_options=None, unit="epochs"):
    """Parses --output, --epochs (or --steps), --quick, --seed, --verbose; calls `train` with them.

    `unit` is what the task counts, and the name of the option and of `train`'s
    argument: "epochs", or "steps" for the video tasks. `add_options(parser)` adds
    an example's own flags; `task_options(args)` turns them into keyword
    arguments of `train`.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--output", default=output, help=f"output directory (default {output})")
    parser.add_argument(f"--{unit}", type=int, default=None,
                        help=f"training {unit}; default: the task's")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    if add_options is not None:
        add_options(parser)
    args = parser.parse_args()
    extra = task_options(args) if task_options is not None else {}
    return train(args.output, quick=args.quick, seed=args.seed, verbose=args.verbose,
                 **{unit: getattr(args, unit)}, **extra)
