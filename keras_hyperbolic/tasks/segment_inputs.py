"""Reading and checking what `keras-hyperbolic segment` is given, before any work and without TensorFlow.

The video (or volume), the masks of the labelled frames, the truth masks and
the settings are read and checked here; a bad one raises `SegmentError` (a
`ValueError`) with one line naming the file or the argument, the frame and
the value, or `ValueError` naming a bad setting.

Void labels: pixels whose mask holds `ignore_index` (255 by default, the
"void" of DAVIS and Pascal VOC palette masks) are labelled with nothing: they
count neither in the loss nor, in a truth mask, in the IoU. Class ids are the
other values, numbered 0 to K-1; an ignore index among them is refused. A mask
stack (`.npy`, multi-page TIFF, NIfTI label map) labels every frame that is
not void throughout, or the frames listed in `labelled_slices`.

A NIfTI volume (`keras_hyperbolic.data.nifti`) is read as its slices along
the slice axis (from the header, or `slice_axis`); NIfTI label maps and truth
are sliced the same way and must have the volume's shape.
"""

import os

import numpy as np

from keras_hyperbolic.data import media, nifti
from keras_hyperbolic.tasks.segmentation_settings import NETWORKS, SEGMENT
from keras_hyperbolic.validation import check_choice, check_positive_float, invalid

#: The mask value of void (unlabelled) pixels unless told otherwise: DAVIS's and Pascal VOC's.
IGNORE_INDEX = 255

STACK_SUFFIXES = (".npy", ".npz", ".tif", ".tiff")


class SegmentError(ValueError):
    """Bad input to `segment_video`, found before any training; names the file and frame."""


# === Label sources: files, folders, stacks ===


def parse_label_arguments(labels):
    """`["3=m3.png", "labels/"]` -> list of `(frame or None, path)` (None: a folder or mask stack)."""
    if isinstance(labels, (str, os.PathLike)):
        labels = [labels]
    parsed = []
    for item in labels or ():
        if isinstance(item, tuple):
            frame, path = item
        else:
            text = os.fspath(item)
            head, sep, tail = text.partition("=")
            if sep and head.strip().lstrip("-").isdigit():
                frame, path = int(head), tail
            elif sep:
                raise SegmentError(f"--labels {text}: expected FRAME=MASK with FRAME an integer "
                                   f"frame index, got FRAME={head!r}")
            else:
                frame, path = None, text
        parsed.append((frame, os.fspath(path)))
    return parsed


def _is_stack(path):
    return os.path.isfile(path) and (os.path.splitext(path)[1].lower() in STACK_SUFFIXES
                                     or nifti.is_nifti(path))


def _read_stack(path, volume):
    """A `(T, H, W)` mask stack; a NIfTI label map is sliced like `volume` (a geometry) and
    must have its shape."""
    if nifti.is_nifti(path):
        return nifti.read_label_map(path, volume=volume)
    return media.read_mask_stack(path)


def _stack_frames(stack, path, ignore_index, labelled_slices):
    """The frames of a mask stack that label something: listed, or not void throughout."""
    if labelled_slices is not None:
        for index in labelled_slices:
            if not 0 <= index < len(stack):
                raise SegmentError(f"--labelled-slices {index}: out of range: {path} holds "
                                   f"{len(stack)} slices (indices 0 to {len(stack) - 1})")
        return list(labelled_slices)
    if ignore_index is None:
        return list(range(len(stack)))
    return [t for t in range(len(stack)) if not (stack[t] == ignore_index).all()]


def _read_label_sources(parsed, ignore_index=IGNORE_INDEX, labelled_slices=None, volume=None):
    """`[(frame, path, raw mask, kind)]` from FRAME=MASK items, label folders and mask stacks."""
    found = []
    stacks = 0
    for frame, path in parsed:
        if frame is not None:
            found.append((frame, path) + media.read_mask_raw(path))
        elif os.path.isdir(path):
            for index, file in media.mask_files(path).items():
                found.append((index, file) + media.read_mask_raw(file))
        elif _is_stack(path):
            stacks += 1
            stack = _read_stack(path, volume)
            for index in _stack_frames(stack, path, ignore_index, labelled_slices):
                found.append((index, f"{path}[{index}]", stack[index], "index"))
        elif not os.path.exists(path):
            raise SegmentError(f"{path}: no such mask file or folder")
        else:
            raise SegmentError(f"{path}: give a mask as FRAME={path} (or a folder of masks whose "
                               "file names carry the frame index, a (T, H, W) .npy stack or a "
                               "NIfTI label map)")
    if labelled_slices is not None and not stacks:
        raise SegmentError(f"--labelled-slices {','.join(map(str, labelled_slices))}: it picks "
                           "slices of a label stack (.npy, multi-page TIFF, NIfTI), and "
                           "--labels gives none")
    return found


def _to_classes(entries):
    """Raw masks (index or colour) -> class ids, colours mapped by one shared table."""
    colour = [i for i, e in enumerate(entries) if e[3] == "colour"]
    index = [i for i, e in enumerate(entries) if e[3] == "index"]
    if colour and index:
        a, b = entries[index[0]], entries[colour[0]]
        raise SegmentError(f"{b[1]} (frame {b[0]}) is a colour mask but {a[1]} (frame {a[0]}) "
                           "holds class ids: use one kind for all masks (palette/grey PNGs or "
                           "colour PNGs)")
    ids, colours = media.colours_to_classes([entries[i][2] for i in colour])
    out = [(f, p, m) for f, p, m, _ in entries]
    for i, mask in zip(colour, ids):
        out[i] = (entries[i][0], entries[i][1], mask)
    return out, (colours if colour else None)


# === Checks ===


def check_labels(entries, num_frames, frame_size, what="label"):
    """Checks frame indices and mask sizes.

    Returns:
        A tuple: `{frame: int64 mask}` in frame order, and `{frame: path}` (where each came from).
    """
    if not entries:
        raise SegmentError(f"no labelled frame: give at least one --labels FRAME=MASK")
    masks = {}
    sources = {}
    for frame, path, mask in entries:
        if not 0 <= frame < num_frames:
            raise SegmentError(f"{path}: frame {frame} is out of range: the video has "
                               f"{num_frames} frames (indices 0 to {num_frames - 1})")
        if frame in masks:
            raise SegmentError(f"{path}: frame {frame} is {what}led twice (also by "
                               f"{sources[frame]})")
        if tuple(mask.shape) != tuple(frame_size):
            raise SegmentError(f"{path} (frame {frame}): the mask is {mask.shape[0]} x "
                               f"{mask.shape[1]} (height x width) but the video's frames are "
                               f"{frame_size[0]} x {frame_size[1]}")
        masks[frame] = mask.astype(np.int64)
        sources[frame] = path
    return dict(sorted(masks.items())), sources


def _class_ids(mask, ignore_index):
    ids = np.unique(mask).tolist()
    return [i for i in ids if i != ignore_index]


def check_classes(masks, sources, ignore_index=IGNORE_INDEX):
    """The classes `0 .. K-1` the labels use (void aside): every id in between appears, K >= 2."""
    present = sorted(set().union(*(_class_ids(m, ignore_index) for m in masks.values())))
    if ignore_index is not None and present and ignore_index < present[-1]:
        raise SegmentError(f"--ignore-index {ignore_index} is also a class id: the labels hold "
                           f"classes {present} around it (classes are 0 to K-1); give the value "
                           "that marks void pixels, above every class id")
    if len(present) < 2:
        raise SegmentError(f"the labels hold fewer than two classes (only class "
                           f"{present[0] if present else 'none'} in "
                           f"{', '.join(sources.values())}): mark at least one other class")
    missing = sorted(set(range(present[-1] + 1)) - set(present))
    if missing:
        frame = next(f for f, m in masks.items() if (m == present[-1]).any())
        raise SegmentError(
            f"{sources[frame]} (frame {frame}): class id {present[-1]} is beyond the classes "
            f"seen: class ids {missing} appear in no labelled mask (classes must be numbered "
            f"0 to K-1; seen: {present})")
    return present[-1] + 1


def check_truth(entries, num_frames, frame_size, num_classes, ignore_index=IGNORE_INDEX):
    """Checks the truth masks like the labels, and their ids against the labels' classes."""
    masks, sources = check_labels(entries, num_frames, frame_size, what="truth-label")
    for frame, mask in masks.items():
        ids = _class_ids(mask, ignore_index)
        if ids and ids[-1] >= num_classes:
            raise SegmentError(f"{sources[frame]} (frame {frame}): class id {ids[-1]} is "
                               f"beyond the classes seen in the labels (0 to {num_classes - 1})")
    return masks


def void_pixels(masks, ignore_index):
    """The number of pixels of `masks` (a dict of arrays) marked `ignore_index` (0 for None)."""
    if ignore_index is None:
        return 0
    return int(sum(np.count_nonzero(m == ignore_index) for m in masks.values()))


def check_ignore_index(ignore_index):
    """`ignore_index` as an int >= 0, or None (no void value)."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)) \
            or ignore_index < 0:
        raise SegmentError(f"--ignore-index {ignore_index!r}: expected a class-id value >= 0 "
                           "(or none)")
    return int(ignore_index)


def _volume(input, slice_axis):
    """The NIfTI geometry of `input` (`nifti.geometry`), None for other inputs."""
    if not nifti.is_nifti(input):
        if slice_axis is not None:
            raise SegmentError(f"--slice-axis {slice_axis}: it picks the frame axis of a NIfTI "
                               f"volume (.nii, .nii.gz), and {input} is not one")
        return None
    if isinstance(slice_axis, bool) or slice_axis not in (None, 0, 1, 2):
        raise SegmentError(f"--slice-axis {slice_axis!r}: expected 0, 1 or 2 (an axis of the "
                           f"data of {input})")
    return nifti.geometry(input, slice_axis)


def parse_ignore_index(text):
    """`--ignore-index`'s text: an integer >= 0, or "none" (None: no void value)."""
    if str(text).strip().lower() == "none":
        return None
    try:
        return check_ignore_index(int(text))
    except ValueError:
        raise SegmentError(f"--ignore-index {text}: expected a class-id value >= 0 or none") \
            from None


def parse_indices(text, argument, count=None):
    """`"3,40,77"` -> `[3, 40, 77]` (integers >= 0; `count` of them where given)."""
    try:
        values = [int(part) for part in str(text).split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 0 or (count is not None and len(values) != count):
        expected = f"{count} comma-separated" if count else "comma-separated"
        raise SegmentError(f"{argument} {text}: expected {expected} integers >= 0, such as "
                           + ("16,96,96" if count == 3 else "3,40,77"))
    return values


def load_inputs(input, labels, truth=None, ignore_index=IGNORE_INDEX, labelled_slices=None,
                slice_axis=None):
    """Reads and checks the video, the labels and the truth; returns a dict (no TensorFlow).

    The dict: `video`, `labels` (`{frame: mask}`), `label_sources`,
    `num_classes`, `truth` (`{frame: mask}` or None), `colours`, `ignore_index`,
    `ignored_label_pixels`, `labelled_pixels`, and `volume` (the NIfTI input's
    `nifti.geometry`, or None).
    """
    ignore_index = check_ignore_index(ignore_index)
    try:
        volume = _volume(os.fspath(input), slice_axis)
        video = media.read_video(input, volume and volume["slice_axis"])
        label_entries = _read_label_sources(parse_label_arguments(labels), ignore_index,
                                            labelled_slices, volume)
        truth_entries = (_read_label_sources(parse_label_arguments(truth), ignore_index,
                                             volume=volume) if truth else [])
    except media.MediaError as error:
        raise SegmentError(str(error)) from None
    frames, height, width = video.shape[:3]
    converted, colours = _to_classes(label_entries + truth_entries)
    label_part, truth_part = converted[:len(label_entries)], converted[len(label_entries):]
    masks, sources = check_labels(label_part, frames, (height, width))
    num_classes = check_classes(masks, sources, ignore_index)
    truth_masks = (check_truth(truth_part, frames, (height, width), num_classes, ignore_index)
                   if truth else None)
    ignored = void_pixels(masks, ignore_index)
    return {"video": video, "labels": masks, "label_sources": sources,
            "num_classes": num_classes, "truth": truth_masks, "colours": colours,
            "ignore_index": ignore_index, "ignored_label_pixels": ignored,
            "labelled_pixels": int(sum(m.size for m in masks.values())) - ignored,
            "volume": volume}


def label_arrays(inputs):
    """`(targets, weights)` `(T, H, W)` of the labels: weight 1 on labelled, non-void pixels."""
    shape = inputs["video"].shape[:3]
    targets = np.zeros(shape, np.int32)
    weights = np.zeros(shape, np.float32)
    ignore_index = inputs["ignore_index"]
    for frame, mask in inputs["labels"].items():
        labelled = mask != ignore_index if ignore_index is not None else np.ones(mask.shape, bool)
        targets[frame] = np.where(labelled, mask, 0)
        weights[frame] = labelled
    return targets, weights


# === Settings and the output ===


def check_settings(network, steps=None, preset=None, memory_budget_mb=None, learning_rate=None,
                   unet_filters=None, unet_levels=None):
    """`SEGMENT` with the given values (None: SEGMENT's), checked.

    `learning_rate` is the rate of `network` (the U-Net's for "unet").
    """
    check_choice(network, NETWORKS, "network")
    if learning_rate is not None:
        check_positive_float(learning_rate, "learning_rate")
    rate = {"unet_learning_rate" if network == "unet" else "learning_rate": learning_rate}
    return SEGMENT.override(steps=steps, preset=preset, memory_budget_mb=memory_budget_mb,
                            unet_filters=unet_filters, unet_levels=unet_levels, **rate).check()


def check_output(output, overwrite):
    """The normalised output path, or SegmentError when it may not be written."""
    output = os.path.normpath(os.fspath(output))
    if os.path.exists(output) and not overwrite:
        raise SegmentError(f"{output} already exists; pass --overwrite to replace it")
    if os.path.exists(output) and not os.path.isdir(output):
        raise SegmentError(f"{output} exists and is not a directory")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise SegmentError(f"the parent directory of {output} does not exist: {parent}")
    return output


def check_preset(network, preset):
    """Refuses an unknown `HyperbolicSegmenter` preset (for `network` "hyperbolic")."""
    from keras_hyperbolic.models.presets import PRESETS

    if network == "hyperbolic" and preset not in PRESETS:
        raise invalid("preset", preset, f"one of {sorted(PRESETS)}")
