"""ConvFlow on scikit-learn's digits: held-out bits/dim against a factorised baseline.

Same as `keras-hyperbolic train flow-digits`.

Run:
    python examples/flow_digits.py
    python examples/flow_digits.py --quick
"""

from common import run  # examples/common.py: first, it turns oneDNN on before TensorFlow loads

from keras_hyperbolic.tasks.flow_digits import train_flow_digits  # noqa: E402

if __name__ == "__main__":
    run(train_flow_digits, __doc__, "outputs/flow_digits")
