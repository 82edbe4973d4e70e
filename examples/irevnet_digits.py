"""i-RevNet on real handwritten digits: classify, rebuild the input from the final features, interpolate.

Same as `keras-hyperbolic train irevnet-digits`.

Run:
    python examples/irevnet_digits.py            (~2 min on 2 cores)
    python examples/irevnet_digits.py --quick    (seconds)
"""

import os

# oneDNN on before TensorFlow is imported, unless the user chose (keras_hyperbolic.runtime).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from common import arguments  # noqa: E402  (examples/common.py)

from keras_hyperbolic.tasks.irevnet_digits import train_irevnet_digits  # noqa: E402

if __name__ == "__main__":
    args = arguments(__doc__, "outputs/irevnet_digits")
    train_irevnet_digits(args.output, epochs=args.epochs, quick=args.quick, seed=args.seed,
                         verbose=args.verbose)
