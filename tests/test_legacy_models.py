"""`.keras` files written by earlier code load and give the outputs they gave then.

The fixtures in `tests/data/legacy/` (written by `make_fixtures.py` there)
were saved before the models' invertible layers moved to
`keras_hyperbolic/layers/` and before `from_preset` became one mechanism
(issue 23): the registered Keras names and the weights' layout must not change.
"""

import os

import keras
import numpy as np
import pytest

import keras_hyperbolic.models  # noqa: F401  (registers the classes)

LEGACY = os.path.join(os.path.dirname(__file__), "data", "legacy")
FIXTURES = {
    "irevnet": "IRevNet",
    "invertible_unet": "InvertibleUNet",
    "hyperbolic_segmenter": "HyperbolicSegmenter",
    "hyperbolic_vae": "HyperbolicVAE",
    "conv_flow": "ConvFlow",
    # The networks' own layers, saved in a functional model from their old modules.
    "network_layers": "Functional",
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_legacy_keras_file_loads_and_reproduces_its_outputs(name):
    model = keras.saving.load_model(os.path.join(LEGACY, f"{name}.keras"))
    assert type(model).__name__ == FIXTURES[name]
    stored = np.load(os.path.join(LEGACY, f"{name}.npz"))
    outputs = keras.ops.convert_to_numpy(model(stored["inputs"], training=False))
    # Written with oneDNN on; the suite also runs with it off (other summation orders).
    np.testing.assert_allclose(outputs, stored["outputs"], rtol=1e-4, atol=1e-5)


def test_legacy_fixtures_are_small():
    total = sum(os.path.getsize(os.path.join(LEGACY, f)) for f in os.listdir(LEGACY))
    assert total < 1_000_000, f"tests/data/legacy holds {total} bytes"
