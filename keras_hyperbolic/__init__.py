"""Memory-efficient reversible and invertible convolutional networks for Keras 3 on TensorFlow.

Sub-packages, in the order data flows through them:
`ops` (stateless maths) -> `layers` (invertible Keras layers) -> `reversible`
(the memory-efficient gradient engine) -> `models` -> `export`.
"""

__version__ = "0.1.0"

from keras_hyperbolic import layers  # noqa: F401  (registers serialisable layers)
from keras_hyperbolic import reversible  # noqa: F401,E402
from keras_hyperbolic import callbacks  # noqa: F401,E402
