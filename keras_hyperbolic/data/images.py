"""Small real image sets that ship inside installed packages (no download).

- `load_digits`: scikit-learn's 1797 handwritten digits (8x8, 0..16), resized to
  `size x size` and normalised like the hyperbolic paper's MNIST setup
  (channel mean 0.1307, standard deviation 0.3081, section 6.2.1).
- `load_faces`: scikit-image's `data/lfw_subset.npy` (200 real 25x25 crops from
  Labeled Faces in the Wild: 100 faces then 100 non-faces), resized to
  `size x size` and normalised by the training split's mean and standard deviation.

Both return `(x_train, y_train), (x_test, y_test)` with images of shape
`(n, size, size, 1)` (float32, channels_last), split by a fixed seeded permutation,
and a `stats` dict `{"mean": m, "std": s}` that undoes the normalisation
(`pixels = x * std + mean`, in [0, 1]).
"""

import os

import numpy as np

from keras_hyperbolic.validation import check_positive_int, invalid

#: Normalisation of the hyperbolic paper's MNIST experiment (section 6.2.1).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def _check_fraction(test_fraction):
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not (
        0.0 < test_fraction < 1.0
    ):
        raise invalid("test_fraction", test_fraction, "a number strictly between 0 and 1")
    return float(test_fraction)


def _resize(images, size):
    """Bilinear (antialiased) resize of `(n, h, w)` images in [0, 1] to `(n, size, size, 1)`."""
    import tensorflow as tf  # here: `keras_hyperbolic.data` (the readers of `segment`) stays light

    x = tf.convert_to_tensor(images[..., None], dtype=tf.float32)
    x = tf.image.resize(x, (size, size), method="bilinear", antialias=True)
    return np.clip(x.numpy(), 0.0, 1.0).astype(np.float32)


def _split(x, y, test_fraction, seed):
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def load_digits(size=32, test_fraction=0.2, seed=0, return_stats=False):
    """scikit-learn's handwritten digits, resized and normalised as the paper's MNIST.

    Args:
        size: output side length (the paper resizes MNIST to 32, the nearest power of 2).
        test_fraction: share of the 1797 images held out.
        seed: seed of the split permutation.
        return_stats: also return `{"mean", "std"}` to undo the normalisation.

    Returns:
        `(x_train, y_train), (x_test, y_test)` (and `stats` if asked), images of shape
        `(n, size, size, 1)` float32, labels int64 digits 0..9.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_digits(size=32)
    >>> x_train.shape
    (1438, 32, 32, 1)
    """
    size = check_positive_int(size, "size", minimum=2)
    test_fraction = _check_fraction(test_fraction)
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    pixels = _resize(digits.images.astype(np.float32) / 16.0, size)
    x = (pixels - MNIST_MEAN) / MNIST_STD
    out = _split(x.astype(np.float32), digits.target.astype(np.int64), test_fraction, seed)
    if return_stats:
        return out + ({"mean": MNIST_MEAN, "std": MNIST_STD},)
    return out


def lfw_subset_path():
    """Path of scikit-image's `data/lfw_subset.npy` inside the installed package."""
    import skimage

    path = os.path.join(os.path.dirname(skimage.__file__), "data", "lfw_subset.npy")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"scikit-image's lfw_subset.npy was not found at {path}; this scikit-image "
            "installation does not ship its data files."
        )
    return path


def load_faces(size=32, faces_only=True, test_fraction=0.2, seed=0, return_stats=False):
    """scikit-image's `lfw_subset` face crops, resized and normalised.

    Args:
        size: output side length (25x25 originals; 32 lets three 2x poolings apply).
        faces_only: keep only the 100 faces (label 1); otherwise also the 100
            non-face crops (label 0).
        test_fraction: share held out.
        seed: seed of the split permutation.
        return_stats: also return `{"mean", "std"}` to undo the normalisation.

    Returns:
        `(x_train, y_train), (x_test, y_test)` (and `stats` if asked), images of shape
        `(n, size, size, 1)` float32, normalised by the training split's mean and std.
    """
    size = check_positive_int(size, "size", minimum=2)
    test_fraction = _check_fraction(test_fraction)
    images = np.load(lfw_subset_path()).astype(np.float32)
    labels = np.concatenate([np.ones(100, np.int64), np.zeros(len(images) - 100, np.int64)])
    if faces_only:
        images, labels = images[:100], labels[:100]
    pixels = _resize(images, size)
    (x_train, y_train), (x_test, y_test) = _split(pixels, labels, test_fraction, seed)
    mean, std = float(x_train.mean()), float(x_train.std())
    x_train = ((x_train - mean) / std).astype(np.float32)
    x_test = ((x_test - mean) / std).astype(np.float32)
    out = (x_train, y_train), (x_test, y_test)
    if return_stats:
        return out + ({"mean": mean, "std": std},)
    return out
