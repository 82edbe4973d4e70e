"""i-RevNet on real handwritten digits: classify, rebuild the input from the final features, interpolate.

Same as `keras-hyperbolic train irevnet-digits`.

Run:
    python examples/irevnet_digits.py            (~2 min on 2 cores)
    python examples/irevnet_digits.py --quick    (seconds)
"""

from common import run  # examples/common.py: first, it turns oneDNN on before TensorFlow loads

from keras_hyperbolic.tasks.irevnet_digits import train_irevnet_digits  # noqa: E402

if __name__ == "__main__":
    run(train_irevnet_digits, __doc__, "outputs/irevnet_digits")
