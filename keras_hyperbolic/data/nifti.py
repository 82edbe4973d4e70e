"""NIfTI volumes and label maps (`.nii`, `.nii.gz`, through nibabel), read as frames and written back.

The format of 3D medical images (nnU-Net, MONAI, 3D Slicer). A volume's data
array may come in any axis order; segment treats one axis as time, the
*slice axis*: the one with the largest voxel spacing in the header (the
through-plane axis of an anisotropic scan), else the last one; or the one
asked for. Frames are the volume's slices along it, in order: `read_volume`
moves it to the front, `write_labels` moves it back, so masks written for a
volume overlay it with the volume's own affine and header.

Errors are `media.MediaError`s naming the file.
"""

import os

import numpy as np

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _error(message):
    from keras_hyperbolic.data.media import MediaError

    return MediaError(message)


def is_nifti(path):
    """Whether `path` names a NIfTI file (`.nii` or `.nii.gz`)."""
    return os.fspath(path).lower().endswith(NIFTI_SUFFIXES)


def _load(path):
    import nibabel

    try:
        return nibabel.load(path)
    except FileNotFoundError:
        raise _error(f"{path}: no such file") from None
    except Exception as error:  # noqa: BLE001  (nibabel raises many kinds for a bad file)
        raise _error(f"{path}: not a readable NIfTI file ({type(error).__name__}: "
                     f"{error})") from None


def _shape3(image, path):
    """The 3D shape of the data (trailing axes of size 1 dropped)."""
    shape = tuple(int(s) for s in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise _error(f"{path}: expected a 3D volume, got data of shape {shape}")
    return shape


def slice_axis_of(spacing):
    """The axis with the largest voxel spacing (of several, the last), the last when all are equal."""
    spacing = [float(s) for s in spacing]
    largest = max(spacing)
    return max(i for i, s in enumerate(spacing) if np.isclose(s, largest))


def geometry(path, slice_axis=None):
    """What locates a volume in space, from the header only (the data are not read).

    Returns:
        A dict: `shape` (the data's 3D shape), `spacing` (voxel sizes along
        its axes), `slice_axis` (given, or `slice_axis_of(spacing)`), `affine`,
        `header` and `image_class` (to write an image like it).
    """
    path = os.fspath(path)
    image = _load(path)
    shape = _shape3(image, path)
    spacing = [round(float(z), 6) for z in image.header.get_zooms()[:3]]  # float32 in the file
    if slice_axis is None:
        slice_axis = slice_axis_of(spacing)
    elif slice_axis not in (0, 1, 2):
        raise _error(f"--slice-axis {slice_axis}: expected 0, 1 or 2 (an axis of {path}'s data, "
                     f"of shape {shape})")
    return {"shape": shape, "spacing": spacing, "slice_axis": int(slice_axis),
            "affine": np.asarray(image.affine), "header": image.header.copy(),
            "image_class": type(image)}


def _data(path, slice_axis):
    """The data as stored (scaled by the header's slope where it has one), slices first."""
    image = _load(path)
    shape = _shape3(image, path)
    data = np.asanyarray(image.dataobj).reshape(shape)
    return np.moveaxis(data, slice_axis, 0)


def read_volume(path, slice_axis=None):
    """`(frames, geometry)`: the volume as `(T, H, W)` slices along the slice axis, and `geometry`.

    The values are as stored (`media.read_video` normalises them).
    """
    found = geometry(path, slice_axis)
    return _data(os.fspath(path), found["slice_axis"]), found


def read_label_map(path, slice_axis=None, volume=None):
    """A label map as int64 `(T, H, W)` slices; `volume`: the geometry it must match, or None.

    Raises:
        MediaError: the map's shape differs from the volume's, or its values are not class ids.
    """
    path = os.fspath(path)
    found = geometry(path, slice_axis if volume is None else volume["slice_axis"])
    if volume is not None and found["shape"] != volume["shape"]:
        raise _error(f"{path}: the label map is {' x '.join(map(str, found['shape']))} voxels "
                     f"but the volume is {' x '.join(map(str, volume['shape']))}")
    data = _data(path, found["slice_axis"])
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
            raise _error(f"{path}: a label map must hold integer class ids, got non-integer "
                         f"{data.dtype} values")
    elif not np.issubdtype(data.dtype, np.integer):
        raise _error(f"{path}: a label map must hold integer class ids, got {data.dtype}")
    if data.size and data.min() < 0:
        raise _error(f"{path}: negative class id {int(data.min())}")
    return data.astype(np.int64)


def write_labels(path, labels, volume):
    """Writes `(T, H, W)` class ids as a NIfTI label map over `volume` (a `geometry`).

    The slice axis goes back to its place; the affine and the header are the
    volume's, with the data type set to the smallest that holds the ids and
    no intensity scaling.
    """
    labels = np.moveaxis(np.asarray(labels), 0, volume["slice_axis"])
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.int16
    header = volume["header"].copy()
    header.set_data_dtype(dtype)
    image = volume["image_class"](labels.astype(dtype), volume["affine"], header)
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = 0, int(labels.max(initial=0))
    image.to_filename(os.fspath(path))
    return os.fspath(path)
