"""Memory-efficient reversible and invertible convolutional networks for Keras 3 on TensorFlow.

Sub-packages, in the order data flows through them:
`ops` (stateless maths) -> `layers` (invertible Keras layers) -> `reversible`
(the memory-efficient gradient engine) -> `models` -> `export`.
"""

__version__ = "0.1.0"

from keras_hyperbolic import runtime  # noqa: E402  (imports nothing heavy)

# The command owns its process: turn oneDNN on before TensorFlow is imported
# (unless the user chose), see `keras_hyperbolic.runtime`.
if runtime.launched_as_command():
    runtime.configure_command_process()

from keras_hyperbolic import layers  # noqa: F401  (registers serialisable layers)
from keras_hyperbolic import reversible  # noqa: F401,E402
from keras_hyperbolic import callbacks  # noqa: F401,E402
