"""What one training step of a video-segmentation run sees: the whole video, windows or crops.

The plan is made before training from two numbers that do not depend on the
machine's speed: the network's estimated training-step memory
(`profiling.training_step_estimate`) against what the video's own arrays
(`resident_mb`) leave of the memory budget, and the voxels a step convolves
against `max_step_voxels` (the time of a step grows with them). The padded
video `(T, H, W)` is trained on

- whole, when both fit;
- otherwise on crops of `(t, h, w)`, each side a multiple of the network's
  input multiple: the largest `s` such that the crop `(min(T, s), min(H, s),
  min(W, s))` fits both (every side as long as the others, where the video
  allows: a long video of small frames keeps whole frames, *windows*; a large
  one is cut in space and time, *crops*).

A crop size can also be given (`crop`); it is checked against the network's
input multiple and the input's size. Crops and windows train on plain
autodiff when that step fits the budget too (`memory_efficient` False): a
crop is small by design, so rebuilding its activations by inversion would
save memory nobody needs, at about a fifth of the step's time where oneDNN
runs on AVX2 (measured on the DAVIS-size plan's crops; within noise with
AVX-512). The whole video trains memory-efficiently. Training crops are
drawn around labelled pixels, one class after another (`crop_origins`):
every crop holds a labelled frame, and the classes are drawn evenly however
rare one is in the labels. Prediction covers the video with overlapping
tiles, the largest water-filled ones (at least the crop) whose training
step would fit that remainder (`segmentation_pipeline.blend_tiles`).
"""

import math
import random

import numpy as np


class BudgetTooSmall(ValueError):
    """Not even the smallest crop's estimated training step fits the memory budget."""


class BadCrop(ValueError):
    """A given crop size that the network or the input cannot take; the message names it."""


def _estimator(model, plain=False):
    """`estimate_mb(shape)`: the estimated training-step MB of `model` on `(t, h, w, c)`, cached.

    With `plain`, of the step on plain autodiff (`reversible.plain_autodiff`).

    The estimates build copies of the model, drawing Keras's initialiser seeds from Python's
    generator; it is put back so that the model's own weights do not depend on the plan.
    """
    from keras_hyperbolic.profiling import training_step_estimate

    cache = {}

    def estimate_mb(shape):
        shape = tuple(int(s) for s in shape)
        if shape not in cache:
            state = random.getstate()
            cache[shape] = training_step_estimate(model, shape, plain=plain)["total_bytes"] / 2**20
            random.setstate(state)
        return cache[shape]

    return estimate_mb


def water_fill(shape, side):
    """`shape` with every side cut to at most `side`: `(min(T, s), min(H, s), min(W, s))`."""
    return tuple(min(int(n), int(side)) for n in shape)


def largest_crop(shape, multiple, fits):
    """The water-filled crop of the largest side (a multiple of `multiple`) for which `fits`.

    `fits(crop)` must hold for a crop when it holds for a larger one; it is
    tried on about log2(max(shape) / multiple) sides. None when not even
    `multiple` fits.
    """
    sides = sorted({water_fill(shape, s) for s in range(multiple, max(shape) + multiple,
                                                          multiple)}, key=math.prod)
    return last_fitting(sides, fits)


def last_fitting(candidates, fits):
    """The last of `candidates` (smallest first) for which `fits`, by bisection; None if none.

    `fits` must be monotone: true up to some candidate, false after it.
    """
    if not candidates or not fits(candidates[0]):
        return None
    low, high = 0, len(candidates) - 1
    while low < high:  # candidates[low] fits
        middle = (low + high + 1) // 2
        if fits(candidates[middle]):
            low = middle
        else:
            high = middle - 1
    return candidates[low]


def check_crop(crop, padded, size, multiple):
    """`crop` as a tuple, or BadCrop naming it: sides are multiples of `multiple`, within the input."""
    crop = tuple(int(c) for c in crop)
    text = ",".join(map(str, crop))
    if len(crop) != len(padded):
        raise BadCrop(f"--crop {text}: expected {len(padded)} sizes (frames, height, width)")
    for c in crop:
        if c < multiple or c % multiple:
            raise BadCrop(f"--crop {text}: {c} is not a multiple of {multiple}, the network's "
                          "input multiple")
    if any(c > p for c, p in zip(crop, padded)):
        raise BadCrop(f"--crop {text}: larger than the input, {' x '.join(map(str, size))} "
                      f"(padded to {' x '.join(map(str, padded))}, multiples of {multiple})")
    return crop


def mode_of(crop, padded):
    """"whole" (the crop is the video), "windows" (whole frames) or "crops" (cut in space)."""
    crop, padded = tuple(crop), tuple(padded)
    if crop == padded:
        return "whole"
    return "windows" if crop[1:] == padded[1:] else "crops"


def resident_mb(padded_shape, num_classes):
    """MB of the arrays a run holds beside its steps, for a padded video `(T, H, W, C)`.

    Per voxel: the video as read and padded (float32, twice), the labels'
    targets and weights as given and padded (4 + 4 bytes, twice), and what
    prediction accumulates (float32 probabilities of each class, the argmax
    and its int32 copy). Counted from the shapes, not measured: with it the
    DAVIS- and CT-size runs of `benchmarks/segment_scale.py` peaked within
    the budget, TensorFlow included.
    """
    channels, voxels = padded_shape[-1], math.prod(padded_shape[:-1])
    return voxels * (2 * 4 * channels + 2 * 8 + 4 * num_classes + 8 + 4) / 2**20


def plan_training(model, padded_shape, multiple, budget_mb, max_voxels, crop=None, size=None,
                  resident=0.0):
    """The plan of a video of `padded_shape` `(T, H, W, C)` (see the module docstring).

    Args:
        model: the 3D network (its estimates are made on copies of it).
        padded_shape: the padded video's shape.
        multiple: the network's input multiple.
        budget_mb: the memory to plan for: the arrays of the video (`resident`)
            plus one training step (or one batch of prediction tiles).
        max_voxels: the most voxels of one training step.
        crop: a crop size to use instead of choosing one (checked with `check_crop`).
        size: the video's `(T, H, W)` before padding (for the messages).
        resident: MB of the arrays held beside the steps (`resident_mb`):
            the steps plan for `budget_mb - resident`.

    Returns:
        A dict: `mode` ("whole", "windows" or "crops"), `crop` `[t, h, w]`,
        `window` (its frames), `step_voxels`, `estimate_mb` (the crop's step),
        `whole_video_estimate_mb`, `memory_budget_mb`, `resident_mb`,
        `step_budget_mb` (the budget less `resident`), `max_step_voxels`,
        `crop_given`, `memory_efficient` (whether the steps rebuild activations
        by inversion: the whole video, or a crop whose plain step does not
        fit), `plain_estimate_mb` and `inversion_estimate_mb` (the crop's step
        each way; `estimate_mb` is the one that runs), `tile` (the prediction's
        tiles: `_prediction_tile`) and
        `predict_batch` (tiles predicted at once: as many as the step budget
        holds of their training steps, at most 8).

    Raises:
        BudgetTooSmall: the video's arrays alone exceed the budget, or not even a
            crop of `multiple` voxels a side fits what they leave of it.
        BadCrop: a given crop the network or the input cannot take.
    """
    channels, spatial = padded_shape[-1], tuple(int(s) for s in padded_shape[:-1])
    given = crop is not None
    estimate_mb = _estimator(model)
    steps_mb = budget_mb - resident
    if steps_mb <= 0:
        raise BudgetTooSmall(
            f"the memory budget of {budget_mb:g} MB is too small: the video's arrays alone "
            f"(the frames, the labels and the prediction) take about {resident:.0f} MB; "
            "raise --memory-budget or give a smaller video")
    whole = estimate_mb(spatial + (channels,))
    if crop is not None:
        crop = check_crop(crop, spatial, size or spatial, multiple)
    elif whole <= steps_mb and math.prod(spatial) <= max_voxels:
        crop = spatial
    else:
        crop = largest_crop(spatial, multiple,
                            lambda c: math.prod(c) <= max_voxels
                            and estimate_mb(c + (channels,)) <= steps_mb)
        if crop is None:
            smallest = water_fill(spatial, multiple)
            raise BudgetTooSmall(
                f"the memory budget of {budget_mb:g} MB is too small: one training step on a "
                f"crop of {' x '.join(map(str, smallest))} needs about "
                f"{estimate_mb(smallest + (channels,)):.0f} MB (whole video: {whole:.0f} MB)"
                + (f" beside the video's arrays ({resident:.0f} MB)" if resident else "")
                + "; raise --memory-budget or give a smaller video")
    inversion = estimate_mb(crop + (channels,))
    reversible = _trains_by_inversion(model)
    plain = _estimator(model, plain=True)(crop + (channels,)) if reversible else inversion
    efficient = reversible and (crop == spatial or plain > steps_mb)
    estimate = inversion if efficient else plain
    tile = _prediction_tile(spatial, crop, multiple, steps_mb,
                            lambda c: estimate_mb(tuple(c) + (channels,)))
    tile_mb = estimate_mb(tile + (channels,))
    return {"mode": mode_of(crop, spatial), "crop": list(crop), "window": crop[0],
            "step_voxels": math.prod(crop), "estimate_mb": estimate,
            "whole_video_estimate_mb": whole, "memory_budget_mb": budget_mb,
            "resident_mb": resident, "step_budget_mb": steps_mb,
            "max_step_voxels": max_voxels, "crop_given": given,
            "memory_efficient": efficient, "plain_estimate_mb": plain,
            "inversion_estimate_mb": inversion, "tile": list(tile),
            "predict_batch": int(max(1, min(8, steps_mb // max(tile_mb, 1e-9))))}


def _trains_by_inversion(model):
    """Whether `model` holds a memory-efficient reversible stack."""
    from keras_hyperbolic.reversible import reversible_layers

    return any(stack.memory_efficient for stack in reversible_layers(model))


def _prediction_tile(spatial, crop, multiple, budget_mb, estimate_mb):
    """The largest water-filled tile, at least `crop`, whose *training* step fits the budget.

    Prediction keeps no activations for a backward pass, so a tile whose
    training step fits the budget predicts well within it; larger tiles
    overlap less of the video twice. The estimate is nearly affine in the
    voxels: it is interpolated between the crop's and the whole video's,
    and the chosen tile checked (a smaller one taken while it does not fit).
    """
    if crop == spatial:
        return crop
    low_v, low = math.prod(crop), estimate_mb(crop)
    high_v, high = math.prod(spatial), estimate_mb(spatial)
    slope = (high - low) / max(high_v - low_v, 1)
    sides = sorted({tuple(max(a, b) for a, b in zip(water_fill(spatial, s), crop))
                    for s in range(multiple, max(spatial) + multiple, multiple)}, key=math.prod)
    sides = [c for c in sides if low + slope * (math.prod(c) - low_v) <= budget_mb] or [crop]
    while len(sides) > 1 and estimate_mb(sides[-1]) > budget_mb:
        sides.pop()
    return sides[-1] if estimate_mb(sides[-1]) <= budget_mb else crop


def largest_frames(model, height, width, channels, budget_mb, multiple, limit=4096):
    """The most frames (a multiple of `multiple`, at most `limit`) whose estimated step fits.

    The estimate is affine in the number of frames (weights plus per-frame
    activations), so two estimates place the answer; it is then checked, and
    moved by `multiple` frames until it fits and the next size does not.
    Returns 0 when not even `multiple` frames fit.
    """
    estimate = _estimator(model)

    def estimate_mb(frames):
        return estimate((frames, height, width, channels))

    limit = limit // multiple * multiple
    small, large = multiple, 2 * multiple
    slope = (estimate_mb(large) - estimate_mb(small)) / multiple
    guess = small + (budget_mb - estimate_mb(small)) / max(slope, 1e-12)
    frames = int(min(max(guess // multiple * multiple, multiple), limit))
    while frames > multiple and estimate_mb(frames) > budget_mb:
        frames -= multiple
    while frames + multiple <= limit and estimate_mb(frames + multiple) <= budget_mb:
        frames += multiple
    return frames if estimate_mb(frames) <= budget_mb else 0


def crop_origins(targets, weights, crop, count, seed=0):
    """`count` crop corners `(count, rank)` drawn around labelled pixels, the classes in turn.

    Each draw picks a class uniformly among those the labels hold (weighted
    pixels only), then one of its labelled pixels, then a corner that puts
    the crop around that pixel (uniformly, moved inside the video at its
    edges). So every crop holds a labelled pixel, and a rare class is drawn
    as often as the background.

    Args:
        targets: `(T, H, W)` (any rank) class ids.
        weights: the same shape: > 0 where labelled.
        crop: the crop's size, one per axis.
        count: how many corners.
        seed: the seed of the draws.
    """
    shape = np.asarray(targets.shape)
    crop = np.asarray(crop)
    labelled = weights > 0
    classes = {int(c): np.flatnonzero(labelled & (targets == c))
               for c in np.unique(targets[labelled])}
    if not classes:
        raise ValueError("Invalid value for argument `weights`: no labelled pixel to crop around")
    rng = np.random.default_rng(seed)
    names = sorted(classes)
    picked = rng.choice(len(names), size=count)
    origins = np.empty((count, len(shape)), np.int64)
    for i, which in enumerate(picked):
        pixels = classes[names[which]]
        centre = np.array(np.unravel_index(pixels[rng.integers(len(pixels))], shape))
        corner = centre - rng.integers(0, crop)
        origins[i] = np.clip(corner, 0, shape - crop)
    return origins
