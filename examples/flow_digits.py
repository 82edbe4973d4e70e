"""ConvFlow on scikit-learn's digits: held-out bits/dim against a factorised baseline.

Same as `keras-hyperbolic train flow-digits`.

Run:
    python examples/flow_digits.py
    python examples/flow_digits.py --quick
"""

import os

# oneDNN on before TensorFlow is imported, unless the user chose (keras_hyperbolic.runtime).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from common import arguments  # noqa: E402  (examples/common.py)

from keras_hyperbolic.tasks.flow_digits import train_flow_digits  # noqa: E402

if __name__ == "__main__":
    args = arguments(__doc__, "outputs/flow_digits")
    train_flow_digits(args.output, epochs=args.epochs, quick=args.quick, seed=args.seed,
                      verbose=args.verbose)
