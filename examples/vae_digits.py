"""HyperbolicVAE on scikit-learn's digits: the nonlinear truncated SVD against PCA.

Lensink, Peters & Haber, section 4 / 6.2.1: digits resized to 32x32 and normalised
with the MNIST mean/std (0.1307, 0.3081); `z = P^T F(x)` with `F` reversible and `P`
starting as the identity. Training runs in two stages:

1. selection: reconstruction + alpha * ||P||_{1,2}, alpha ramped up from 0 so that the
   columns of P can turn towards the data before the group norm removes the weak
   ones (P by plain gradient descent, as in the paper; the network by Adam);
2. `prune(threshold)` (at most `--max-dims` columns are kept), then refinement of the
   pruned model: reconstruction + beta * energy distance to N(0, latent_std^2 I),
   everything by Adam.

Prints the number of latent dimensions kept, the held-out reconstruction error
(sum of squares per image, normalised units) of the VAE and of PCA (and of an
uncentred truncated SVD) with the same number of dimensions fitted on the training
set, and normality statistics of the latent codes on 16 random directions (Fig. 9).
Writes PNGs: 64 samples (8x8 grid), interpolations between held-out pairs, and the
16 projected histograms against the target Gaussian.

    python examples/vae_digits.py --out vae_digits_out
"""

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from keras_hyperbolic.data import load_digits  # noqa: E402
from keras_hyperbolic.models import HyperbolicVAE  # noqa: E402
from keras_hyperbolic.ops.statistics import normality_statistics  # noqa: E402
from keras_hyperbolic.training import standard_callbacks  # noqa: E402


# === Baselines ===


def pca_errors(x_train, x_test, k):
    """Held-out reconstruction error (mean over images of the sum of squares) of
    PCA (centred) and of the uncentred truncated SVD, both with k components
    fitted on the training set."""
    a = x_train.reshape(len(x_train), -1).astype(np.float64)
    b = x_test.reshape(len(x_test), -1).astype(np.float64)
    mean = a.mean(axis=0)
    _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
    v = vt[:k].T
    pca = float((((b - mean) @ v @ v.T - (b - mean)) ** 2).sum(axis=1).mean())
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    v = vt[:k].T
    tsvd = float(((b @ v @ v.T - b) ** 2).sum(axis=1).mean())
    return pca, tsvd


def reconstruction_error(model, x):
    rebuilt = model.predict(x, verbose=0, batch_size=256)
    return float(((rebuilt - x) ** 2).reshape(len(x), -1).sum(axis=1).mean())


# === Pictures (PIL only: matplotlib is not a dependency) ===


def to_uint8(images, stats):
    pixels = images * stats["std"] + stats["mean"]
    return (np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8)


def save_grid(images, rows, cols, path, scale=3):
    """`images` (rows*cols, h, w, 1) uint8 -> one PNG with 2-pixel gaps."""
    h, w = images.shape[1:3]
    canvas = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2), 255, np.uint8)
    for index, image in enumerate(images[: rows * cols]):
        r, c = divmod(index, cols)
        canvas[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = image[..., 0]
    Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST).save(path)


def save_histograms(projections, target_std, path, bins=30, panel=(160, 110)):
    """16 histograms (4x4) of the projected codes, each with the target Gaussian's density."""
    pw, ph = panel
    image = Image.new("RGB", (4 * pw, 4 * ph), "white")
    draw = ImageDraw.Draw(image)
    lim = 4.0 * target_std
    edges = np.linspace(-lim, lim, bins + 1)
    width = edges[1] - edges[0]
    peak = 1.0 / (target_std * math.sqrt(2 * math.pi))
    for index in range(projections.shape[1]):
        r, c = divmod(index, 4)
        x0, y0 = c * pw + 6, r * ph + 6
        w, h = pw - 12, ph - 18
        counts, _ = np.histogram(np.clip(projections[:, index], -lim, lim), bins=edges)
        density = counts / (counts.sum() * width)
        top = max(peak, density.max()) * 1.1
        for b, d in enumerate(density):
            left = x0 + b * w / bins
            draw.rectangle(
                [left, y0 + h - d / top * h, left + w / bins - 1, y0 + h], fill=(120, 150, 220)
            )
        curve = [
            (x0 + (t + lim) / (2 * lim) * w, y0 + h - peak * math.exp(-0.5 * (t / target_std) ** 2) / top * h)
            for t in np.linspace(-lim, lim, 80)
        ]
        draw.line(curve, fill=(200, 30, 30), width=2)
        draw.rectangle([x0, y0, x0 + w, y0 + h], outline=(0, 0, 0))
        draw.text((x0 + 2, y0 + h + 2), f"direction {index}", fill=(0, 0, 0))
    image.save(path)


# === Training and report ===


class AlphaRamp(keras.callbacks.Callback):
    """alpha grows linearly to its final value over the first half of the epochs."""

    def __init__(self, alpha, epochs):
        super().__init__()
        self.alpha, self.epochs = alpha, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.model.alpha = self.alpha * min(1.0, 2.0 * (epoch + 1) / self.epochs)


def train_and_report(data, stats, args, name):
    (x_train, _), (x_test, _) = data
    keras.utils.set_random_seed(args.seed)
    shape = x_train.shape[1:]
    model = HyperbolicVAE(
        shape,
        levels=args.levels,
        depth=args.depth,
        block=args.block,
        hidden_channels=args.hidden,
        alpha=0.0,
        beta=0.0,
        projection_learning_rate=args.p_lr,
    )
    print(f"{name}: {len(x_train)} training / {len(x_test)} held-out images of shape {shape}; "
          f"F has {model.encoder_network.count_params()} weights, P is {tuple(model.projection.shape)}")
    z_before = model.encode(x_test).numpy()
    start = time.time()

    # Stage 1: select columns of P with the group norm.
    model.compile(optimizer=keras.optimizers.Adam(args.lr))
    model.fit(x_train, epochs=args.epochs_select, batch_size=args.batch_size, verbose=args.verbose,
              callbacks=[AlphaRamp(args.alpha, args.epochs_select)]
              + standard_callbacks(os.path.join(args.out, "run_select")))
    norms = np.sort(model.column_norms())[::-1]
    threshold = args.threshold
    if len(norms) > args.max_dims and norms[args.max_dims] >= threshold:
        threshold = float(norms[args.max_dims]) * (1 + 1e-6)
    kept = model.prune(threshold)
    k = len(kept)
    print(f"stage 1 ({args.epochs_select} epochs, alpha -> {args.alpha}): prune(threshold={threshold:.4g}) "
          f"keeps {k} of {len(norms)} columns; largest norms {' '.join(f'{n:.3f}' for n in norms[:k + 2])}")
    err_pruned = reconstruction_error(model, x_test)

    # Stage 2: refine the pruned model, with the Gaussianity penalty.
    codes = model.encode(x_train).numpy()
    model.latent_std = float(codes.std())
    model.alpha = 0.0
    model.beta = args.beta
    model.projection_learning_rate = None
    model.compile(optimizer=keras.optimizers.Adam(args.lr))
    model.fit(x_train, epochs=args.epochs_refine, batch_size=args.batch_size, verbose=args.verbose,
              callbacks=standard_callbacks(os.path.join(args.out, "run_refine")))
    elapsed = time.time() - start

    err_vae = reconstruction_error(model, x_test)
    pca, tsvd = pca_errors(x_train, x_test, k)
    print(f"latent dimensions kept: {k} (data dimension {model.data_dim})")
    print(f"held-out reconstruction error (sum of squares per image, normalised units):")
    print(f"  HyperbolicVAE after pruning, before refinement: {err_pruned:.3f}")
    print(f"  HyperbolicVAE (k={k}):                          {err_vae:.3f}")
    print(f"  PCA, centred (k={k}, fitted on training set):   {pca:.3f}")
    print(f"  truncated SVD, uncentred (k={k}):               {tsvd:.3f}")
    print(f"  VAE / PCA = {err_vae / pca:.3f}  ({'VAE better' if err_vae < pca else 'PCA better'})")
    print(f"training time {elapsed:.0f} s; latent_std (target) = {model.latent_std:.3f}")

    # Fig. 9: codes projected on 16 random unit directions.
    rng = np.random.default_rng(args.seed)
    directions = rng.standard_normal((k, 16))
    directions /= np.linalg.norm(directions, axis=0)
    z_test = model.encode(np.concatenate([x_train, x_test])).numpy()
    projected = z_test @ directions
    gaussian = rng.standard_normal((len(z_test), k)) * model.latent_std @ directions
    before = z_before[:, :k] @ directions  # the first k coordinates at initialisation (P = I)
    print(f"normality of codes on 16 random directions (n={len(z_test)}; target N(0, {model.latent_std:.3f}^2)):")
    print("  sample        mean(|skew|)  mean(|ex.kurt|)  mean(KS)  mean(std/target)")
    for label, sample in [("Gaussian", gaussian), ("before training", before), ("trained codes", projected)]:
        s = normality_statistics(sample)
        print(f"  {label:<15} {np.abs(s['skewness']).mean():10.3f} {np.abs(s['excess_kurtosis']).mean():14.3f} "
              f"{s['ks'].mean():9.3f} {np.mean(s['std']) / model.latent_std:12.3f}")

    os.makedirs(args.out, exist_ok=True)
    save_grid(to_uint8(model.sample(64, seed=args.seed), stats), 8, 8, os.path.join(args.out, "samples.png"))
    pairs = model.interpolate(x_test[:4], x_test[4:8], steps=8)  # (8, 4, ...)
    save_grid(to_uint8(pairs.reshape((-1,) + shape), stats), 8, 4, os.path.join(args.out, "interpolations.png"))
    save_histograms(projected, model.latent_std, os.path.join(args.out, "histograms.png"))
    model.save(os.path.join(args.out, "vae.keras"))
    print(f"wrote {args.out}/samples.png, interpolations.png, histograms.png, vae.keras")
    return {"k": k, "vae": err_vae, "pca": pca, "tsvd": tsvd}


def parser(defaults):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=defaults.get("size", 32))
    p.add_argument("--levels", type=int, default=defaults.get("levels", 3))
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--block", default="additive", choices=["additive", "hyperbolic"])
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--alpha", type=float, default=defaults.get("alpha", 40.0))
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--p-lr", type=float, default=defaults.get("p_lr", 2.5e-4))
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--threshold", type=float, default=0.05)
    p.add_argument("--max-dims", type=int, default=defaults.get("max_dims", 16))
    p.add_argument("--epochs-select", type=int, default=defaults.get("epochs_select", 30))
    p.add_argument("--epochs-refine", type=int, default=defaults.get("epochs_refine", 40))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=0, help="Keras fit verbosity (2: one line per epoch)")
    p.add_argument("--out", default=defaults.get("out", "vae_digits_out"))
    return p


def main():
    args = parser({}).parse_args()
    *data, stats = load_digits(size=args.size, return_stats=True)
    train_and_report(tuple(data), stats, args, "digits")


if __name__ == "__main__":
    main()
