"""The options every example takes (the same as `keras-hyperbolic train`'s)."""

import argparse


def arguments(doc, output, add_options=None):
    """Parses --output, --epochs, --quick, --seed, --verbose (and what `add_options(parser)` adds)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--output", default=output, help=f"output directory (default {output})")
    parser.add_argument("--epochs", "--steps", dest="epochs", type=int, default=None,
                        help="training epochs (video tasks: steps); default: the task's")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    if add_options is not None:
        add_options(parser)
    return parser.parse_args()
