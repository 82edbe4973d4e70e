"""A real-image video with exact masks: handwritten digits moving over a real texture.

The hyperbolic paper's headline experiment (Lensink, Peters, Haber, section
6.1.2) segments one DAVIS video from three labelled time slices. DAVIS cannot
be downloaded here, so this module composes a video of the same kind from real
data that ships inside installed packages: scikit-learn's handwritten digits
(`load_digits`, upsampled) move over a real scikit-image texture (`brick`,
`grass` or `gravel`) that pans like a moving camera. Because the video is
composed, the mask of every frame is exact.
"""

import numpy as np

from keras_hyperbolic.validation import check_choice, check_positive_int, invalid

TEXTURES = ("brick", "grass", "gravel")


def _texture(name):
    import skimage.data

    image = getattr(skimage.data, name)()
    return image.astype(np.float32) / 255.0


def _digit_sprites(count, size, rng):
    from skimage.transform import resize
    from sklearn.datasets import load_digits

    digits = load_digits()
    indices = rng.choice(len(digits.images), size=count, replace=False)
    sprites = []
    for index in indices:
        ink = digits.images[index] / 16.0
        ink = resize(ink, (size, size), order=1, mode="edge", anti_aliasing=False)
        sprites.append((ink.astype(np.float32), int(digits.target[index])))
    return sprites


def make_digit_video(
    frames=32,
    height=64,
    width=64,
    num_digits=3,
    digit_size=24,
    texture="brick",
    texture_zoom=0.25,
    labelled_frames=None,
    seed=0,
):
    """A video of handwritten digits moving over a panning real texture, with exact masks.

    Each digit is a real scikit-learn handwritten digit (8x8, upsampled to
    `digit_size`), drawn dark or bright with a mild tint of its own and shaded by its ink, moving with
    a constant velocity and bouncing off the borders. The background is a crop
    of a real scikit-image texture, scaled by `texture_zoom`, tinted, and
    panned by about one pixel per frame. A pixel belongs to the foreground
    (class 1) exactly when a digit's stroke covers it.

    Args:
        frames: number of frames (>= 3).
        height: frame height in pixels.
        width: frame width in pixels.
        num_digits: number of moving digits.
        digit_size: side of a digit sprite in pixels (<= height and width).
        texture: "brick", "grass" or "gravel" (scikit-image textures).
        texture_zoom: scale applied to the 512x512 texture before cropping
            (smaller values give finer texture detail per pixel).
        labelled_frames: the frame indices whose masks are given for training;
            `None` picks three spread over the video as in the paper (its
            slices 5, 30 and 69 of 72, scaled to `frames`).
        seed: seed of the digits chosen, their colours, paths and the pan.

    Returns:
        A dict with `video` (float32, `(frames, height, width, 3)`, values in
        [0, 1]), `masks` (int32, `(frames, height, width)`, 0 background, 1
        digit), `instances` (int32, same shape: 0 background, `i + 1` where
        the `i`-th digit drawn covers the pixel, the later digit where two
        overlap: one class per digit), `labelled_frames` (tuple of ints),
        `digits` (the digit classes drawn) and `weights` (float32, `(frames, height, width)`: 1 on the
        labelled frames, 0 elsewhere, for a loss masked to those frames).

    Raises:
        ValueError: for a non-positive size, `frames < 3`, a digit larger than
            the frame, an unknown texture or a labelled frame out of range.

    Example:
    >>> data = make_digit_video(frames=32, height=64, width=64)
    >>> data["video"].shape, data["masks"].shape, data["labelled_frames"]
    ((32, 64, 64, 3), (32, 64, 64), (2, 13, 31))

    Reference:
        Lensink, Peters, Haber, "Fully Hyperbolic Convolutional Neural
        Networks" (2022), section 6.1.2.
    """
    frames = check_positive_int(frames, "frames", minimum=3)
    height = check_positive_int(height, "height")
    width = check_positive_int(width, "width")
    num_digits = check_positive_int(num_digits, "num_digits")
    digit_size = check_positive_int(digit_size, "digit_size", minimum=2)
    if digit_size > min(height, width):
        raise invalid("digit_size", digit_size, f"at most min(height, width) = {min(height, width)}")
    texture = check_choice(texture, TEXTURES, "texture")
    if not (isinstance(texture_zoom, (int, float)) and 0 < texture_zoom <= 4):
        raise invalid("texture_zoom", texture_zoom, "a number in (0, 4]")
    labelled_frames = _check_labelled_frames(labelled_frames, frames)

    # One generator, drawn in a fixed order (background, then digits): a seed gives one video.
    rng = np.random.default_rng(seed)
    background = _PanningBackground(texture, texture_zoom, frames, (height, width), rng)
    digits = _MovingDigits(num_digits, digit_size, (height, width), rng)
    video = np.empty((frames, height, width, 3), np.float32)
    instances = np.zeros((frames, height, width), np.int32)
    for t in range(frames):
        video[t] = background.frame(t)
        digits.draw(video[t], instances[t])
        digits.move()

    weights = np.zeros((frames, height, width), np.float32)
    weights[list(labelled_frames)] = 1.0
    return {
        "video": np.clip(video, 0.0, 1.0),
        "masks": (instances > 0).astype(np.int32),
        "instances": instances,
        "labelled_frames": labelled_frames,
        "digits": tuple(label for _, label in digits.sprites),
        "weights": weights,
    }


def _check_labelled_frames(labelled_frames, frames):
    if labelled_frames is None:
        # The paper labels slices 5, 30, 69 of 72.
        return tuple(sorted({min(frames - 1, round(s * frames / 72)) for s in (5, 30, 69)}))
    labelled_frames = tuple(int(f) for f in labelled_frames)
    if not labelled_frames or any(f < 0 or f >= frames for f in labelled_frames):
        raise invalid("labelled_frames", labelled_frames, f"frame indices in [0, {frames})")
    return labelled_frames


class _PanningBackground:
    """A tinted crop of a texture that pans by about one pixel per frame."""

    def __init__(self, texture, zoom, frames, size, rng):
        from skimage.transform import rescale

        background = _texture(texture)
        if zoom != 1:
            background = rescale(background, zoom, order=1, anti_aliasing=True)
        self.pan = rng.uniform(0.6, 1.2, size=2) * rng.choice([-1, 1], size=2)
        span = np.abs(self.pan) * (frames - 1)
        need = (size[0] + int(np.ceil(span[0])) + 1, size[1] + int(np.ceil(span[1])) + 1)
        if background.shape[0] < need[0] or background.shape[1] < need[1]:
            reps = (-(-need[0] // background.shape[0]), -(-need[1] // background.shape[1]))
            background = np.tile(background, reps)
        self.start = np.array(
            [
                rng.integers(0, background.shape[0] - need[0] + 1),
                rng.integers(0, background.shape[1] - need[1] + 1),
            ],
            dtype=np.float64,
        ) + np.where(self.pan < 0, span, 0.0)
        self.tint = rng.uniform(0.7, 1.0, size=3).astype(np.float32)
        self.background, self.size = background, size

    def frame(self, t):
        """Frame `t`, `(height, width, 3)` float32."""
        top, left = np.round(self.start + self.pan * t).astype(int)
        grey = self.background[top : top + self.size[0], left : left + self.size[1]]
        return grey[..., None] * self.tint


class _MovingDigits:
    """Digit sprites with a colour each, moving at constant velocity and bouncing off the borders."""

    def __init__(self, count, digit_size, size, rng):
        self.sprites = _digit_sprites(count, digit_size, rng)
        # Dark or bright ink with a mild tint: bright digits compete with the
        # texture's bright mortar lines, so shape and context matter, not colour alone.
        grey = np.where(rng.random(count) < 0.5, rng.uniform(0.05, 0.3, count),
                        rng.uniform(0.7, 0.95, count))
        colours = np.clip(grey[:, None] + rng.uniform(-0.12, 0.12, size=(count, 3)), 0, 1)
        self.colours = colours.astype(np.float32)
        self.positions = np.stack(
            [
                rng.uniform(0, size[0] - digit_size, size=count),
                rng.uniform(0, size[1] - digit_size, size=count),
            ],
            axis=1,
        )
        speed = rng.uniform(0.8, 1.8, size=count)
        angle = rng.uniform(0, 2 * np.pi, size=count)
        self.velocities = np.stack([speed * np.sin(angle), speed * np.cos(angle)], axis=1)
        self.digit_size, self.size = digit_size, size

    def draw(self, frame, instances):
        """Draws the digits into `frame` and their indices (+1) into `instances`, in place."""
        d = self.digit_size
        for index, ((ink, _), colour, position) in enumerate(
            zip(self.sprites, self.colours, self.positions)
        ):
            y, x = np.round(position).astype(int)
            stroke = ink > 0.35  # exact mask: these pixels show the digit
            patch = frame[y : y + d, x : x + d]
            shade = (0.55 + 0.45 * ink[..., None]) * colour
            patch[stroke] = shade[stroke]
            instances[y : y + d, x : x + d][stroke] = index + 1

    def move(self):
        """One frame's step, bouncing off the borders."""
        self.positions += self.velocities
        for axis in (0, 1):
            limit = self.size[axis] - self.digit_size
            low = self.positions[:, axis] < 0
            high = self.positions[:, axis] > limit
            self.velocities[low | high, axis] *= -1
            self.positions[:, axis] = np.clip(self.positions[:, axis], 0, limit)


def segmentation_iou(masks, predictions):
    """Positive, negative and mean IoU (in %) of binary `predictions` against `masks`.

    Positive IoU is the IoU of the foreground class, negative IoU that of the
    background, and the mean IoU their average (the paper's three figures).

    Args:
        masks: integer array of 0/1 labels.
        predictions: integer array of 0/1 predictions, same shape.

    Returns:
        A dict with `mean_iou`, `positive_iou`, `negative_iou` as floats in [0, 100].
    """
    masks = np.asarray(masks).astype(bool)
    predictions = np.asarray(predictions).astype(bool)
    if masks.shape != predictions.shape:
        raise ValueError(
            f"`masks` and `predictions` must have the same shape. "
            f"Received: masks.shape={masks.shape}, predictions.shape={predictions.shape}"
        )

    def iou(a, b):
        union = np.logical_or(a, b).sum()
        return 100.0 if union == 0 else 100.0 * np.logical_and(a, b).sum() / union

    positive = iou(masks, predictions)
    negative = iou(~masks, ~predictions)
    return {
        "mean_iou": float((positive + negative) / 2),
        "positive_iou": float(positive),
        "negative_iou": float(negative),
    }
