"""Reading a user's video or volume and its masks, and writing masks and animations.

What `keras-hyperbolic segment` reads:

- a video file: GIF (Pillow, always there), MP4/AVI/MOV/MKV/WEBM through
  imageio's ffmpeg plugin (`pip install keras-hyperbolic[video]`) or PyAV;
- a folder of frames (PNG, JPEG, TIFF or BMP), in natural order (`frame2` before `frame10`);
- a `.npy` / `.npz` array `(T, H, W)` or `(T, H, W, C)`;
- a multi-page TIFF, a z-stack read like time;
- a NIfTI volume (`.nii`, `.nii.gz`; `nifti`), its slices along one axis read like time.

Frames come back as float32 `(T, H, W, C)` with C = 1 (grey) or 3 (RGB) in
[0, 1] (`normalise_intensities`): 8-bit data divided by 255, floats already in
[0, 1] as stored, anything else (16-bit scans, CT numbers) clipped to its
0.5th and 99.5th percentiles and scaled. An alpha channel is dropped. A GIF or a video file whose three
channels are equal everywhere is read as grey (those formats cannot store grey).

Masks are images of class ids: a palette (indexed) PNG gives its indices; a
grey PNG gives its values, except a binary one (values 0 and 255 only) which
gives 0 and 1; an RGB PNG with colours gives one class per colour (black 0,
then the other colours in sorted order, shared by all masks read together); a
`.npy` holds the ids. JPEG masks are refused: compression invents colours.

Every error is a `MediaError` (a `ValueError`) naming the file, and the frame where one is at fault.
"""

import os
import re

import numpy as np

from keras_hyperbolic.data import nifti

VIDEO_SUFFIXES = (".gif", ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
FFMPEG_SUFFIXES = VIDEO_SUFFIXES[1:]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
ARRAY_SUFFIXES = (".npy", ".npz")
TIFF_SUFFIXES = (".tif", ".tiff")
MASK_SUFFIXES = (".png", ".npy", ".tif", ".tiff", ".bmp", ".gif")
VIDEO_EXTRA = "pip install 'keras-hyperbolic[video]' (imageio-ffmpeg) or pip install av"

#: Class colours of the written masks and overlays (class 0, the background, is black).
PALETTE = np.array(
    [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
     (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
     (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0)],
    np.uint8,
)


class MediaError(ValueError):
    """A file that cannot be used: the message names the file (and the frame)."""


def natural_key(name):
    """Sort key putting `frame2` before `frame10`."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_index(name):
    """The frame index a file name carries: its last integer (`frame_0012.png` -> 12), or None."""
    numbers = re.findall(r"\d+", os.path.splitext(os.path.basename(name))[0])
    return int(numbers[-1]) if numbers else None


def _suffix(path):
    return os.path.splitext(str(path))[1].lower()


def _ffmpeg_plugin():
    """The imageio plugin name for video files, or None when neither backend is installed."""
    try:
        import imageio_ffmpeg  # noqa: F401

        return "FFMPEG"
    except ImportError:
        pass
    try:
        import av  # noqa: F401

        return "pyav"
    except ImportError:
        return None


def video_writer_available():
    """Whether MP4 files can be read and written (imageio-ffmpeg or PyAV installed)."""
    return _ffmpeg_plugin() is not None


# === Frames ===


#: The percentiles that bound intensities other than 8-bit (nnU-Net's clipping for CT and MR).
PERCENTILES = (0.5, 99.5)
# Percentiles of a large volume are read from a regular subsample of about this many values.
_PERCENTILE_SAMPLE = 1 << 22


def normalise_intensities(array, path="array"):
    """float32 frames in [0, 1] from the values of any file that `read_video` reads.

    - bool and 8-bit unsigned integers: divided by 1 and 255 (exact, as stored);
    - floats already within [0, 1]: as stored;
    - anything else (16-bit scans, signed CT numbers, floats outside [0, 1]):
      clipped to its 0.5th and 99.5th percentiles and scaled to [0, 1], as
      nnU-Net bounds CT and MR intensities, so that a few extreme voxels
      (metal, air, hot pixels) do not squeeze the rest into a sliver of the range.

    Raises:
        MediaError: NaN or infinite values (naming the first frame holding one), or a type
            that holds no intensities.
    """
    array = np.asarray(array)
    if array.dtype == bool or array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(1 if array.dtype == bool else 255)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            t = int(np.argwhere(~np.isfinite(array))[0][0])
            raise MediaError(f"{path}: frame {t} holds NaN or infinite values")
        if array.size and array.min() >= 0 and array.max() <= 1:
            return array.astype(np.float32)
    elif not np.issubdtype(array.dtype, np.integer):
        raise MediaError(f"{path}: cannot read frames of type {array.dtype}")
    flat = array.reshape(-1)
    sample = flat[:: max(1, flat.size // _PERCENTILE_SAMPLE)]
    low, high = np.percentile(sample, PERCENTILES).astype(np.float64)
    scaled = (array.astype(np.float32) - np.float32(low)) / np.float32(max(high - low, 1e-12))
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def _channels_last(array, path, grey_if_equal=False):
    """`(T, H, W)` or `(T, H, W, C)` -> `(T, H, W, 1 or 3)`."""
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise MediaError(f"{path}: expected frames of shape (T, H, W) or (T, H, W, C), "
                         f"got an array of shape {array.shape}")
    channels = array.shape[-1]
    if channels == 4:  # RGBA: the colour without transparency
        array = array[..., :3]
    elif channels == 2:  # grey + alpha
        array = array[..., :1]
    elif channels not in (1, 3):
        raise MediaError(f"{path}: expected 1 (grey), 3 (RGB) or 4 (RGBA) channels, got "
                         f"{channels} (shape {array.shape})")
    if grey_if_equal and array.shape[-1] == 3 and np.array_equal(array[..., :1], array[..., 1:2]) \
            and np.array_equal(array[..., :1], array[..., 2:]):
        array = array[..., :1]
    if 0 in array.shape:
        raise MediaError(f"{path}: no frames (an empty array of shape {array.shape})")
    return array


def _read_image(path):
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            elif image.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("L" if image.mode == "1" else "RGB")
            return np.asarray(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise MediaError(f"{path}: not a readable image ({error})") from None


def _read_folder(path):
    names = sorted((n for n in os.listdir(path)
                    if _suffix(n) in IMAGE_SUFFIXES and not n.startswith(".")), key=natural_key)
    if not names:
        raise MediaError(f"{path}: the folder holds no frames (expected "
                         f"{', '.join(IMAGE_SUFFIXES)} files)")
    frames = []
    for t, name in enumerate(names):
        frame = _read_image(os.path.join(path, name))
        if frame.ndim == 2:
            frame = frame[..., None]
        if frames and frame.shape != frames[0].shape:
            raise MediaError(f"{os.path.join(path, name)} (frame {t}): size {frame.shape} differs "
                             f"from the first frame {names[0]}'s {frames[0].shape}")
        frames.append(frame)
    return np.stack(frames)


def _read_array(path, keys=("video", "frames", "volume", "masks")):
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise MediaError(f"{path}: not a readable NumPy file ({error})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if not names:
                raise MediaError(f"{path}: the .npz archive holds no array")
            chosen = next((k for k in keys if k in names), names[0] if len(names) == 1 else None)
            if chosen is None:
                raise MediaError(f"{path}: the .npz archive holds several arrays {names}; name "
                                 f"the one to use {keys[0]!r}")
            return loaded[chosen]
    return loaded


def _read_tiff(path):
    import tifffile

    try:
        return tifffile.imread(path)
    except Exception as error:  # noqa: BLE001  (tifffile raises many kinds for a bad file)
        raise MediaError(f"{path}: not a readable TIFF ({type(error).__name__}: {error})") from None


def _read_video_file(path):
    import imageio.v3 as iio

    suffix = _suffix(path)
    if suffix == ".gif":
        plugin = "pillow"
    else:
        plugin = _ffmpeg_plugin()
        if plugin is None:
            raise MediaError(f"{path}: reading {suffix} files needs a video backend: {VIDEO_EXTRA}")
    try:
        if plugin == "pillow":
            return iio.imread(path, index=None, plugin=plugin, mode="RGB")
        return np.asarray(iio.imread(path, index=None, plugin=plugin))
    except Exception as error:  # noqa: BLE001  (the plugins raise many kinds for a bad file)
        raise MediaError(f"{path}: not a readable video ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]})") from None


def read_video(path, slice_axis=None):
    """The frames of a video file, frame folder, `.npy`/`.npz` array, multi-page TIFF or NIfTI volume.

    Args:
        path: the file or folder.
        slice_axis: of a NIfTI volume, the data axis whose slices are the
            frames (default: `nifti.slice_axis_of` its voxel spacing).

    Returns:
        float32 `(T, H, W, C)`, C = 1 (grey) or 3 (RGB), values by `normalise_intensities`.

    Raises:
        MediaError: a missing, empty, unreadable or unsupported file, naming it (and the frame).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MediaError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        return normalise_intensities(_channels_last(_read_folder(path), path), path)
    if os.path.getsize(path) == 0:
        raise MediaError(f"{path}: the file is empty")
    suffix = _suffix(path)
    if nifti.is_nifti(path):
        array = nifti.read_volume(path, slice_axis)[0]
    elif suffix in ARRAY_SUFFIXES:
        array = _read_array(path)
    elif suffix in TIFF_SUFFIXES:
        array = _read_tiff(path)
        if array.ndim == 2:  # one page: a single frame
            array = array[None]
    elif suffix in VIDEO_SUFFIXES:
        array = _channels_last(_read_video_file(path), path, grey_if_equal=True)
    elif suffix in IMAGE_SUFFIXES:
        array = _read_image(path)[None]
    else:
        raise MediaError(f"{path}: unknown kind of file {suffix!r}; expected a video "
                         f"({', '.join(VIDEO_SUFFIXES)}), a folder of frames, "
                         f"{', '.join(ARRAY_SUFFIXES)}, a multi-page TIFF or a NIfTI volume "
                         f"({', '.join(nifti.NIFTI_SUFFIXES)})")
    return normalise_intensities(_channels_last(np.asarray(array), path), path)


# === Masks ===


def read_mask_raw(path):
    """`(array, kind)` of one mask image: kind "index" (class ids) or "colour" ((H, W, 3) RGB).

    Binary grey masks (0 and 255 only) come back as 0/1 indices.
    """
    from PIL import Image

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError(f"{path}: no such mask file")
    if os.path.getsize(path) == 0:
        raise MediaError(f"{path}: the mask file is empty")
    suffix = _suffix(path)
    if suffix in (".jpg", ".jpeg"):
        raise MediaError(f"{path}: JPEG masks are not accepted (compression changes the class "
                         "colours); save masks as PNG or .npy")
    if suffix in ARRAY_SUFFIXES:
        array = np.asarray(_read_array(path, keys=("mask", "masks", "labels")))
        if array.dtype == bool:
            array = array.astype(np.int64)
        if not np.issubdtype(array.dtype, np.integer) or array.ndim != 2:
            raise MediaError(f"{path}: a mask array must be 2D integer class ids, got "
                             f"{array.dtype} of shape {array.shape}")
        if array.min() < 0:
            raise MediaError(f"{path}: negative class id {int(array.min())}")
        return array.astype(np.int64), "index"
    if suffix not in MASK_SUFFIXES:
        raise MediaError(f"{path}: unknown kind of mask file {suffix!r}; expected "
                         f"{', '.join(MASK_SUFFIXES)}")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in ("P", "1"):  # palette: the index is the class
                return np.asarray(image).astype(np.int64), "index"
            if mode == "PA":
                return np.asarray(image.getchannel(0)).astype(np.int64), "index"
            array = np.asarray(image.convert("RGB") if mode in ("RGBA", "CMYK", "YCbCr")
                               else image)
    except (OSError, ValueError, SyntaxError) as error:
        raise MediaError(f"{path}: not a readable mask image ({error})") from None
    if array.ndim == 3:
        if array.shape[-1] == 2:  # grey + alpha
            array = array[..., 0]
        elif np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(
                array[..., 0], array[..., 2]):
            array = array[..., 0]
        else:
            return array[..., :3].astype(np.int64), "colour"
    array = array.astype(np.int64)
    if set(np.unique(array).tolist()) <= {0, 255}:
        array = (array > 0).astype(np.int64)  # a binary mask saved as black and white
    return array, "index"


def colours_to_classes(colour_masks):
    """Maps RGB masks to class ids: black is 0, the other colours 1, 2, ... in sorted order.

    Args:
        colour_masks: a list of `(H, W, 3)` integer arrays read together.

    Returns:
        `(class_masks, colours)`: the list of `(H, W)` int64 arrays and the colours in class order.
    """
    if not colour_masks:
        return [], [(0, 0, 0)]
    stacked = np.concatenate([m.reshape(-1, 3) for m in colour_masks])
    colours = [tuple(int(v) for v in c) for c in np.unique(stacked, axis=0)]
    colours = [(0, 0, 0)] + [c for c in colours if c != (0, 0, 0)]
    lookup = {c: i for i, c in enumerate(colours)}
    out = []
    for mask in colour_masks:
        unique, inverse = np.unique(mask.reshape(-1, 3), axis=0, return_inverse=True)
        ids = np.array([lookup[tuple(int(v) for v in c)] for c in unique], np.int64)
        out.append(ids[inverse.reshape(-1)].reshape(mask.shape[:2]))
    return out, colours


def read_mask_stack(path):
    """Masks of several frames from one `.npy`/`.npz` `(T, H, W)` array or multi-page TIFF.

    Returns an int64 `(T, H, W)` array of class ids.
    """
    path = os.fspath(path)
    if os.path.getsize(path) == 0:
        raise MediaError(f"{path}: the file is empty")
    array = np.asarray(_read_tiff(path) if _suffix(path) in TIFF_SUFFIXES
                       else _read_array(path, keys=("masks", "mask", "labels", "truth")))
    if array.dtype == bool:
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer) or array.ndim != 3:
        raise MediaError(f"{path}: expected integer class ids of shape (T, H, W), got "
                         f"{array.dtype} of shape {array.shape}")
    if array.size and array.min() < 0:
        raise MediaError(f"{path}: negative class id {int(array.min())}")
    return array.astype(np.int64)


def mask_files(folder):
    """`{frame index: path}` of the mask files in `folder` whose names carry the frame index."""
    found = {}
    names = sorted((n for n in os.listdir(folder)
                    if _suffix(n) in MASK_SUFFIXES + (".jpg", ".jpeg") and not n.startswith(".")),
                   key=natural_key)
    for name in names:
        index = frame_index(name)
        path = os.path.join(folder, name)
        if index is None:
            raise MediaError(f"{path}: the file name carries no frame index (expected e.g. "
                             "frame_0012.png for frame 12)")
        if index in found:
            raise MediaError(f"{path}: frame {index} is labelled twice (also by {found[index]})")
        found[index] = path
    if not found:
        raise MediaError(f"{folder}: the folder holds no mask files ({', '.join(MASK_SUFFIXES)})")
    return found


# === Writing ===


def write_mask_png(path, mask, num_classes=None):
    """Writes class ids `(H, W)` as a palette PNG: the index is the class, the palette shows it.

    Read back with `read_mask_raw` (or any image library in palette mode) it gives the same ids.
    """
    from PIL import Image

    mask = np.asarray(mask)
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"Invalid value for argument `mask`: class ids must be in [0, 255] for a "
                         f"palette PNG. Received ids in [{mask.min()}, {mask.max()}]")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    palette = class_colours(256 if num_classes is None else max(num_classes, 1))
    image.putpalette(palette.reshape(-1).tolist())
    image.save(path, optimize=True)


def class_colours(num_classes):
    """`(num_classes, 3)` uint8 colours: PALETTE, then evenly spread hues."""
    if num_classes <= len(PALETTE):
        return PALETTE[:num_classes]
    import colorsys

    extra = num_classes - len(PALETTE)
    hues = [colorsys.hsv_to_rgb((0.13 + 0.618 * i) % 1.0, 0.75, 0.95) for i in range(extra)]
    return np.concatenate([PALETTE, (np.array(hues) * 255).astype(np.uint8)])


def overlay_frames(video, labels, num_classes, alpha=0.5, min_side=256):
    """uint8 `(T, H', W' * 2, 3)`: each frame beside itself with classes painted over it.

    Frames are scaled up by a whole factor (nearest) until the shorter side is at least `min_side`.
    """
    lo, hi = float(np.min(video)), float(np.max(video))
    rescale = hi > lo and (lo < 0 or hi > 1)
    colours = class_colours(num_classes).astype(np.float32) / 255.0
    num_frames, height, width = video.shape[:3]
    scale = max(1, -(-min_side // min(height, width)))
    out = np.empty((num_frames, height * scale, 2 * width * scale, 3), np.uint8)
    for t in range(num_frames):  # a frame at a time: float copies of a large video would not fit
        rgb = np.asarray(video[t], np.float32)
        rgb = np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb
        rgb = (rgb - lo) / (hi - lo) if rescale else np.clip(rgb, 0, 1)
        painted = rgb.copy()
        foreground = labels[t] > 0
        painted[foreground] = (1 - alpha) * rgb[foreground] + alpha * colours[labels[t][foreground]]
        frame = np.concatenate([rgb, painted], axis=1)
        frame = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
        out[t] = (np.clip(frame, 0, 1) * 255).round()
    return out


def write_animation(path, frames, fps=8):
    """Writes uint8 `(T, H, W, 3)` frames as a looping GIF or (with a video backend) an MP4."""
    import imageio.v3 as iio

    suffix = _suffix(path)
    if suffix == ".gif":
        iio.imwrite(path, frames, plugin="pillow", duration=1000 / fps, loop=0)
        return path
    plugin = _ffmpeg_plugin()
    if plugin is None:
        raise MediaError(f"{path}: writing {suffix} files needs a video backend: {VIDEO_EXTRA}")
    # H.264 in yuv420p needs even sizes.
    frames = np.asarray(frames)
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    if plugin == "FFMPEG":
        iio.imwrite(path, frames, plugin=plugin, fps=fps, macro_block_size=2)
    else:
        iio.imwrite(path, frames, plugin=plugin, fps=fps, codec="libx264")
    return path
