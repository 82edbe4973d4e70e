"""i-RevNet on real handwritten digits: classify, rebuild the input from the final features, interpolate.

A bijective `IRevNet` on scikit-learn's digits (8x8, upsampled to 16x16):
held-out accuracy, `inverse(features(x))` against the held-out images (every
map up to the final features is bijective), and a PNG of an interpolation
between two digits made in feature space, as in the i-RevNet paper.
"""

import os

import keras
import numpy as np

from keras_hyperbolic.models import IRevNet
from keras_hyperbolic.training import standard_callbacks
from keras_hyperbolic.validation import check_positive_int

MODEL_FILE = "irevnet_digits.keras"


def load_digits_16():
    """scikit-learn's digits upsampled to 16x16 in [0, 1], with their labels."""
    from skimage.transform import resize
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([resize(im / 16.0, (16, 16), order=1, mode="edge") for im in digits.images])
    return images[..., None].astype("float32"), digits.target.astype("int32")


def train_irevnet_digits(output="outputs/irevnet_digits", epochs=None, quick=False, seed=0,
                         verbose=1):
    """Trains the classifier; returns `{"model", "metrics", "model_path"}`.

    Args:
        output: directory for the model, `interpolation.png` and the run log.
        epochs: training epochs (default 15, quick 1).
        quick: a CI-sized run (128 training images, seconds).
        seed: seed of the split and of the weights.
        verbose: Keras progress verbosity.
    """
    epochs = check_positive_int(epochs if epochs is not None else (1 if quick else 15), "epochs")
    keras.utils.set_random_seed(seed)
    os.makedirs(output, exist_ok=True)
    x, y = load_digits_16()
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]
    if quick:
        x_train, y_train, x_test, y_test = x_train[:128], y_train[:128], x_test[:64], y_test[:64]

    model = IRevNet(num_classes=10, input_shape=(16, 16, 1), stages=(2, 2, 2),
                    hidden_channels=32)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    if verbose:
        print(f"IRevNet: {model.count_params():,} parameters, features {model.feature_shape} "
              f"({int(np.prod(model.feature_shape))} values for {16 * 16} input values)")
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=verbose,
              validation_data=(x_test, y_test),
              callbacks=standard_callbacks(os.path.join(output, "run")))
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)

    features = model.features(x_test)
    rebuilt = model.inverse(features).numpy()
    error = float(np.abs(rebuilt - x_test).max())
    relative = float(np.linalg.norm(rebuilt - x_test) / np.linalg.norm(x_test))

    # Interpolate between two held-out digits of different classes in feature space.
    a = 0
    b = int(np.flatnonzero(y_test != y_test[a])[0])
    ts = np.linspace(0, 1, 9, dtype="float32")
    za, zb = features[a].numpy(), features[b].numpy()
    images = np.clip(model.inverse(np.stack([(1 - t) * za + t * zb for t in ts])).numpy()[..., 0],
                     0, 1)
    from PIL import Image

    strip = np.concatenate([np.pad(im, 1, constant_values=1) for im in images], axis=1)
    png = os.path.join(output, "interpolation.png")
    Image.fromarray((strip * 255).astype(np.uint8)).resize(
        (strip.shape[1] * 8, strip.shape[0] * 8), Image.NEAREST).save(png)
    model_path = os.path.join(output, MODEL_FILE)
    model.save(model_path)
    metrics = {"accuracy": float(accuracy), "max_abs_error": error, "relative_error": relative}
    if verbose:
        print(f"held-out accuracy {100 * accuracy:.1f}%; input rebuilt from the final features: "
              f"max abs error {error:.2e}, relative {relative:.2e}")
        print(f"interpolation {y_test[a]} -> {y_test[b]} in feature space written to {png}")
    return {"model": model, "metrics": metrics, "model_path": model_path}
