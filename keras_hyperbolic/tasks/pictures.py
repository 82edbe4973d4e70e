"""PNG figures of the generative tasks (PIL only: matplotlib is not a dependency)."""

import math

import numpy as np
from PIL import Image, ImageDraw


def save_grid(images, rows, cols, path, scale=3):
    """`images` (rows*cols, h, w, 1) uint8 -> one PNG with 2-pixel white gaps."""
    h, w = images.shape[1:3]
    canvas = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2), 255, np.uint8)
    for index, image in enumerate(images[: rows * cols]):
        r, c = divmod(index, cols)
        canvas[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = image[..., 0]
    Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale),
                                   Image.NEAREST).save(path)


def save_histograms(projections, target_std, path, bins=30, panel=(160, 110)):
    """16 histograms (4x4) of projected latent codes, each with the target Gaussian's density."""
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
            (x0 + (t + lim) / (2 * lim) * w,
             y0 + h - peak * math.exp(-0.5 * (t / target_std) ** 2) / top * h)
            for t in np.linspace(-lim, lim, 80)
        ]
        draw.line(curve, fill=(200, 30, 30), width=2)
        draw.rectangle([x0, y0, x0 + w, y0 + h], outline=(0, 0, 0))
        draw.text((x0 + 2, y0 + h + 2), f"direction {index}", fill=(0, 0, 0))
    image.save(path)
