"""What every example shares: oneDNN on, and the options of `keras-hyperbolic train`.

Imported first by each example, so the environment is set before TensorFlow
is imported (see keras_hyperbolic.runtime); a user's own value is kept.
"""

import argparse

from keras_hyperbolic import runtime  # imports no TensorFlow

# oneDNN on before TensorFlow is imported, unless the user chose.
runtime.prefer_onednn()


def run(train, doc, output, add_options=None, task_options=None):
    """Parses --output, the task's count, --quick, --seed, --verbose and calls `train` with them.

    The count is the one the task declares (`keras_hyperbolic.tasks.TASKS`):
    `--steps` (passed as `steps=`) for the video tasks, `--epochs` for the
    others. `add_options(parser)` adds an example's own flags; `task_options(args)`
    turns them into keyword arguments of `train`.
    """
    from keras_hyperbolic.tasks import TASKS

    unit = next(t.unit for t in TASKS.values() if t.function == train.__name__)
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--output", default=output, help=f"output directory (default {output})")
    parser.add_argument(f"--{unit}", dest="count", type=int, default=None, metavar=unit.upper(),
                        help=f"training {unit}; default: the task's")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    if add_options is not None:
        add_options(parser)
    args = parser.parse_args()
    extra = task_options(args) if task_options is not None else {}
    if args.count is not None:
        extra[unit] = args.count
    return train(args.output, quick=args.quick, seed=args.seed, verbose=args.verbose, **extra)
