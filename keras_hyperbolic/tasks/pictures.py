"""PNG figures of the tasks (PIL only: matplotlib is not a dependency)."""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Colours of the video figure: truth, prediction, and the frame around a labelled frame.
TRUTH_COLOUR, PREDICTION_COLOUR, LABELLED_COLOUR = (0, 1, 0), (1, 0, 0), (255, 170, 0)


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


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _overlay(frame, mask, colour):
    out = frame.copy()
    out[mask.astype(bool)] = 0.45 * out[mask.astype(bool)] + 0.55 * np.asarray(colour)
    return out


def write_slices_png(path, video, masks, predictions, labelled_frames, scale=3):
    """Frames of a segmented video in columns; rows: the video, the truth, each network.

    Rows are titled: "video", "truth" (true mask in green) and each key of
    `predictions` (`{title: (T, H, W) labels}`, prediction in red; a title may
    hold a line break). Up to 8 frames spread over the video are shown, plus
    every labelled frame; each column is headed by its frame index, and the
    labelled frames (whose masks the loss saw) are framed in orange and headed
    "labelled". Returns the frames shown.
    """
    frames, height, width = video.shape[:3]
    picked = sorted({int(t) for t in np.linspace(0, frames - 1, 8).round()} | set(labelled_frames))
    rows = {"video": [video[t] for t in picked],
            "truth": [_overlay(video[t], masks[t], TRUTH_COLOUR) for t in picked]}
    for title, labels in predictions.items():
        rows[title] = [_overlay(video[t], labels[t], PREDICTION_COLOUR) for t in picked]
    tile_h, tile_w, gap = height * scale, width * scale, 8
    size = max(11, tile_h // 11)  # the captions' font size; titles are a little larger
    font, small = _font(size + 2), _font(size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_width = 12 + max(measure.multiline_textbbox((0, 0), t, font=font)[2] for t in rows)
    header, footer = 2 * size + 12, size + 12
    legend = ("green: true mask   red: prediction   orange frame: a labelled frame (the loss saw "
              "only these masks)")
    image = Image.new("RGB", (max(title_width + len(picked) * (tile_w + gap) + gap,
                                  measure.textbbox((0, 0), legend, font=small)[2] + 12),
                              header + len(rows) * (tile_h + gap) + footer), "white")
    draw = ImageDraw.Draw(image)
    for r, (title, tiles) in enumerate(rows.items()):
        y = header + r * (tile_h + gap)
        draw.multiline_text((6, y + tile_h // 2), title, fill="black", font=font, anchor="lm")
        for c, tile in enumerate(tiles):
            pixels = (np.clip(tile, 0, 1) * 255).astype(np.uint8)
            tile_image = Image.fromarray(pixels).resize((tile_w, tile_h), Image.NEAREST)
            image.paste(tile_image, (title_width + c * (tile_w + gap), y))
    bottom = header + len(rows) * (tile_h + gap) - gap
    for c, t in enumerate(picked):
        x = title_width + c * (tile_w + gap)
        draw.text((x + tile_w // 2, 4), f"frame {t}", fill="black", font=small, anchor="mt")
        if t in labelled_frames:
            draw.text((x + tile_w // 2, size + 6), "labelled", fill=LABELLED_COLOUR, font=small,
                      anchor="mt")
            draw.rectangle([x - 4, header - 4, x + tile_w + 3, bottom + 3],
                           outline=LABELLED_COLOUR, width=3)
    draw.text((6, bottom + 10), legend, fill=(60, 60, 60), font=small)
    image.save(path)
    return picked
