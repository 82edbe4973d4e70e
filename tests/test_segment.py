"""`keras-hyperbolic segment` / `segment_video`: every input format, masks, padding and
windows, bad inputs refused before training with nothing left on disk, resuming after a kill,
and `demo-data`. Tiny networks and videos: seconds each (the resume test: two short processes)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from keras_hyperbolic import cli
from keras_hyperbolic.data import media
from keras_hyperbolic.tasks import segment, segmentation_pipeline, video_segmentation
from keras_hyperbolic.tasks.segment import SegmentError, segment_video
from keras_hyperbolic.tasks.segmentation_settings import FULL, SEGMENT

TINY = {"steps": 2, "preset": "tiny_3d", "verbose": 0}


def _reference(frames=11, height=10, width=12, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (frames, height, width) + ((channels,) if channels > 1 else ())
    return (rng.random(shape) * 255).astype(np.uint8)


def _write_folder(path, video):
    os.makedirs(path)
    for t, frame in enumerate(video):  # frame2 must sort before frame10
        Image.fromarray(frame).save(os.path.join(path, f"frame{t}.png"))


def _write(kind, path, video):
    import imageio.v3 as iio
    import tifffile

    if kind == "gif":
        iio.imwrite(path, video, plugin="pillow", duration=100, loop=0)
    elif kind == "folder":
        _write_folder(path, video)
    elif kind == "npy":
        np.save(path, video)
    elif kind == "npz":
        np.savez(path, video=video)
    elif kind == "tiff":
        tifffile.imwrite(path, video)  # one page per frame: a z-stack
    return path


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("kind,name", [("gif", "v.gif"), ("folder", "frames"), ("npy", "v.npy"),
                                       ("npz", "v.npz"), ("tiff", "v.tif")])
def test_every_input_format_reads_the_reference(kind, name, channels, tmp_path):
    video = _reference(channels=channels)
    path = _write(kind, str(tmp_path / name), video)
    got = media.read_video(path)
    want = video.reshape(video.shape[:3] + (channels,)).astype(np.float32) / 255
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not media.video_writer_available(),
                    reason="no video backend installed (pip install 'keras-hyperbolic[video]')")
def test_mp4_reads_close_to_the_reference(tmp_path):
    # Smooth content: H.264 is lossy, so compare within a tolerance.
    t, y, x = np.meshgrid(np.arange(6), np.arange(32), np.arange(48), indexing="ij")
    video = np.stack([(t * 20 + y * 3) % 256, (x * 5) % 256, (y * 4 + x * 2) % 256], -1)
    video = video.astype(np.uint8)
    path = str(tmp_path / "v.mp4")
    media.write_animation(path, video, fps=4)
    got = media.read_video(path)
    assert got.shape == (6, 32, 48, 3)
    assert np.abs(got - video / 255).mean() < 0.03


def test_palette_grey_and_colour_masks_map_to_classes(tmp_path):
    ids = np.array([[0, 1, 2], [3, 3, 0]], np.uint8)
    palette = Image.fromarray(ids, mode="P")
    palette.putpalette([9, 9, 9, 200, 0, 0, 0, 200, 0, 0, 0, 200] + [0] * 756)
    palette.save(tmp_path / "p.png")
    mask, kind = media.read_mask_raw(str(tmp_path / "p.png"))
    assert kind == "index"
    np.testing.assert_array_equal(mask, ids)  # the index is the class, whatever the colours
    Image.fromarray((ids > 1).astype(np.uint8) * 255).save(tmp_path / "binary.png")
    np.testing.assert_array_equal(media.read_mask_raw(str(tmp_path / "binary.png"))[0], ids > 1)
    # Colour masks: one shared table, black first.
    red, blue = (255, 0, 0), (0, 0, 255)
    a = np.array([[red, (0, 0, 0)]], np.int64)
    b = np.array([[blue, red]], np.int64)
    (ma, mb), colours = media.colours_to_classes([a, b])
    assert colours == [(0, 0, 0), blue, red]
    np.testing.assert_array_equal(ma, [[2, 0]])
    np.testing.assert_array_equal(mb, [[1, 2]])
    # Written masks read back as the same ids.
    media.write_mask_png(str(tmp_path / "w.png"), ids, 4)
    np.testing.assert_array_equal(media.read_mask_raw(str(tmp_path / "w.png"))[0], ids)


def _toy(tmp_path, frames=5, height=13, width=11, labelled=(0, 4)):
    """A grey .npy video with a bright square (class 1) and a dark bar (class 2); mask PNGs."""
    video = np.full((frames, height, width), 0.5, np.float32)
    truth = np.zeros((frames, height, width), np.int64)
    for t in range(frames):
        truth[t, 2 + t % 3:6 + t % 3, 2:6] = 1
        truth[t, 9:11, 1 + t:5 + t] = 2
    video[truth == 1], video[truth == 2] = 0.95, 0.05
    np.save(tmp_path / "video.npy", video)
    labels = []
    for t in labelled:
        path = str(tmp_path / f"mask{t}.png")
        media.write_mask_png(path, truth[t], 3)
        labels.append(f"{t}={path}")
    np.save(tmp_path / "truth.npy", truth)
    return str(tmp_path / "video.npy"), labels, truth


@pytest.mark.parametrize("mode", ["crops", "windows"])
def test_odd_sizes_pad_and_crop_back_in_crops_and_windows(mode, tmp_path):
    video, labels, truth = _toy(tmp_path)
    tiny = SEGMENT.override(preset="tiny_3d")
    model = segmentation_pipeline.build_network("hyperbolic", 3, tiny)
    from keras_hyperbolic.profiling import training_step_estimate

    mb = [training_step_estimate(model, (t, 14, 12, 1))["total_bytes"] / 2**20 for t in (2, 6)]
    out = str(tmp_path / "out")
    # A budget below the whole video's step: the plan cuts it in space and time (crops);
    # windows of whole frames where asked for (--crop).
    options = ({"memory_budget_mb": (mb[0] + mb[1]) / 2} if mode == "crops"
               else {"crop": "2,14,12"})
    result = segment_video(video, labels, out, truth=str(tmp_path / "truth.npy"), **options,
                           **TINY)
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["padded_shape"] == [6, 14, 12, 1]
    training = metrics["training"]
    assert training["mode"] == mode and training["crop"] != [6, 14, 12]
    assert (training["crop"][1:] == [14, 12]) == (mode == "windows")
    if mode == "crops":
        assert training["estimate_mb"] <= training["memory_budget_mb"] < training[
            "whole_video_estimate_mb"]
        assert all(t >= c for t, c in zip(training["tile"], training["crop"]))
    labels_out = np.load(os.path.join(out, "masks.npy"))
    assert labels_out.shape == (5, 13, 11) and np.array_equal(labels_out, result["labels"])
    pngs = sorted(os.listdir(os.path.join(out, "masks")))
    assert len(pngs) == 5
    for name in pngs:
        assert Image.open(os.path.join(out, "masks", name)).size == (11, 13)  # (width, height)
    assert os.path.isfile(os.path.join(out, "segmenter.keras"))
    assert os.path.isfile(os.path.join(out, "overlay.gif"))
    assert set(metrics["truth"]["per_frame"]) == {str(t) for t in range(5)}
    assert not os.path.exists(out + ".partial")


def test_windows_cover_the_video_and_hold_labels():
    assert segmentation_pipeline.window_starts(10, 4, overlap=0.5) == [0, 2, 4, 6]
    assert segmentation_pipeline.window_starts(11, 4, overlap=0.5) == [0, 2, 4, 6, 7]
    # A quarter: stride 6 of 8, the last window flush with the end.
    assert segmentation_pipeline.window_starts(21, 8) == [0, 6, 12, 13]
    assert segmentation_pipeline.valid_window_starts(10, 4, [0, 9]) == [0, 6]
    padded = segmentation_pipeline.pad_reflect(np.arange(5)[:, None], [(0, 3), (0, 1)])
    np.testing.assert_array_equal(padded[:, 0], [0, 1, 2, 3, 4, 3, 2, 1])


def _bad_inputs(tmp_path):
    video, labels, _ = _toy(tmp_path)
    garbage = tmp_path / "garbage.gif"
    garbage.write_bytes(b"not a gif at all")
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    small = str(tmp_path / "small.png")
    media.write_mask_png(small, np.ones((4, 4), np.uint8), 2)
    gap = str(tmp_path / "gap.png")
    media.write_mask_png(gap, np.array([[0] * 11] * 12 + [[5] * 11]), 6)
    flat = str(tmp_path / "flat.png")
    media.write_mask_png(flat, np.zeros((13, 11), np.uint8), 2)
    mask0 = labels[0].split("=")[1]
    empty_folder = tmp_path / "no_labels"
    empty_folder.mkdir()
    return {
        "unreadable": ((str(garbage), labels), "garbage.gif: not a readable video"),
        "empty": ((str(empty), labels), "empty.npy: the file is empty"),
        "missing": ((str(tmp_path / "nope.gif"), labels), "nope.gif: no such file"),
        "mask size": ((video, [f"1={small}"]), "small.png (frame 1): the mask is 4 x 4"),
        "out of range": ((video, [f"7={mask0}"]), "frame 7 is out of range: the video has 5"),
        "duplicated": ((video, [f"2={mask0}", f"2={mask0}"]), "frame 2 is labelled twice"),
        "class gap": ((video, [f"0={mask0}", f"1={gap}"]), "class id 5 is beyond the classes"),
        "no label": ((video, []), "no labelled frame"),
        "empty label folder": ((video, [str(empty_folder)]), "holds no mask files"),
        "one class": ((video, [f"0={flat}"]), "fewer than two classes"),
    }


def test_bad_inputs_raise_before_training_and_leave_nothing(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(segmentation_pipeline, "train", no_training)
    out = str(tmp_path / "out")
    for case, ((video, labels), message) in _bad_inputs(tmp_path).items():
        with pytest.raises(SegmentError) as error:
            segment_video(video, labels, out, **TINY)
        assert message in str(error.value), (case, str(error.value))
        assert not os.path.exists(out) and not os.path.exists(out + ".partial"), case
    video, labels, truth = _toy(tmp_path)
    np.save(tmp_path / "bad_truth.npy", truth + 2)  # ids up to 4 with 3 classes labelled
    with pytest.raises(SegmentError, match="bad_truth.npy.*class id 4 is beyond the classes"):
        segment_video(video, labels, out, truth=str(tmp_path / "bad_truth.npy"), **TINY)
    os.makedirs(out)
    with pytest.raises(SegmentError, match="already exists; pass --overwrite"):
        segment_video(video, labels, out, **TINY)
    assert os.listdir(out) == []


def test_command_prints_one_line_errors(tmp_path, capsys):
    video, labels, _ = _toy(tmp_path)
    out = str(tmp_path / "out")
    for argv, message in [
        ([video, "--labels", f"9={labels[0].split('=')[1]}"], "frame 9 is out of range"),
        ([video, "--labels", "x=m.png"], "expected FRAME=MASK"),
        ([video, "--labels", labels[0], "--steps", "0"], "--steps must be >= 1"),
        ([video, "--labels", labels[0], "--ignore-index", "x"], "--ignore-index x: expected"),
        ([video, "--labels", labels[0], "--labelled-slices", "1,b"],
         "--labelled-slices 1,b: expected comma-separated integers"),
        ([video, "--labels", labels[0], "--labelled-slices", "1"], "--labelled-slices 1: it "
         "picks slices of a label stack"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["segment"] + argv + ["--out", out])
        err = capsys.readouterr().err
        assert exit_.value.code == 2
        assert err.startswith("keras-hyperbolic: error: ") and message in err
        assert err.count("\n") == 1
        assert not os.path.exists(out)


def test_demo_data_is_multiclass_and_consistent(tmp_path, capsys):
    assert cli.main(["demo-data", str(tmp_path / "demo"), "--frames", "8", "--size", "24"]) == 0
    assert "keras-hyperbolic segment" in capsys.readouterr().out
    demo = tmp_path / "demo"
    truth = np.load(demo / "truth.npy")
    assert truth.shape == (8, 24, 24) and set(np.unique(truth)) == {0, 1, 2, 3}
    labels = sorted(os.listdir(demo / "labels"))
    assert len(labels) == 3 and len(os.listdir(demo / "truth")) == 8
    for name in labels:
        t = media.frame_index(name)
        np.testing.assert_array_equal(media.read_mask_raw(str(demo / "labels" / name))[0],
                                      truth[t])
    assert media.read_video(str(demo / "video.gif")).shape == (8, 24, 24, 3)
    with pytest.raises(SystemExit):
        cli.main(["demo-data", str(demo)])  # exists: refused without --overwrite
    assert "already exists" in capsys.readouterr().err


def test_segment_video_is_exported_lazily():
    from keras_hyperbolic import tasks

    assert tasks.segment_video is segment_video
    assert "segment" not in tasks.TASKS


def test_segment_and_the_main_job_read_one_settings_object():
    assert segment.SEGMENT is video_segmentation.FULL
    assert segment.check_settings("hyperbolic") == FULL
    # segment's --learning-rate is the chosen network's; the other rate stays the main job's.
    unet = segment.check_settings("unet", learning_rate=1e-2)
    assert unet.learning_rate_of("unet") == 1e-2 and unet.learning_rate == FULL.learning_rate
    assert segment.check_settings("hyperbolic", steps=7).override(steps=None).steps == 7


@pytest.mark.parametrize("options,argument", [
    ({"steps": 0}, "steps"), ({"memory_budget_mb": -1.0}, "memory_budget_mb"),
    ({"learning_rate": 0.0}, "learning_rate"), ({"unet_levels": 0}, "unet_levels"),
    ({"network": "vit"}, "network")])
def test_bad_settings_name_the_argument(options, argument):
    network = options.pop("network", "unet")
    with pytest.raises(ValueError, match=f"argument `{argument}`"):
        segment.check_settings(network, **options)


def test_a_second_run_is_refused_and_a_killed_run_resumes(tmp_path):
    video, labels, _ = _toy(tmp_path, frames=4, height=8, width=8, labelled=(0, 3))
    out = str(tmp_path / "out")
    steps = 90  # backups every 30 steps
    argv = [sys.executable, "-m", "keras_hyperbolic.cli", "segment", video, "--labels", *labels,
            "--out", out, "--steps", str(steps), "--preset", "tiny_3d", "--verbose", "0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    backup = os.path.join(out + ".partial", "run", "backup", "training_metadata.json")
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 300
            while not os.path.exists(backup) and process.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            # A second run on the same output while the first is at it (stopped, so that it
            # cannot finish meanwhile): refused at once, in one line naming the first.
            os.kill(process.pid, signal.SIGSTOP)
            started = time.monotonic()
            second = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
            refused_in = time.monotonic() - started
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait(30)
    assert process.returncode == -signal.SIGKILL, open(tmp_path / "killed.log").read()[-3000:]
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr[-3000:]
    assert f"{out}.partial is being written by process {process.pid} (" in second.stderr
    assert "keras_hyperbolic/cli.py segment" in second.stderr and "--out" in second.stderr
    assert refused_in < 60  # before reading the inputs or importing TensorFlow (here 0.3 s)
    assert not os.path.exists(out) and os.path.exists(backup)
    completed = subprocess.run(argv[:-2] + ["--verbose", "2"], capture_output=True, text=True,
                               timeout=600, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "resuming the unfinished run" in completed.stdout
    training = json.load(open(os.path.join(out, "metrics.json")))["training"]
    assert training["resumed"] and 0 < training["steps_this_run"] < steps
    assert not os.path.exists(out + ".partial")
    assert np.load(os.path.join(out, "masks.npy")).shape == (4, 8, 8)


@pytest.mark.parametrize("argv,expected", [(["segment"], "--memory-budget"),
                                           (["demo-data"], "labelled frames")])
def test_help(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv + ["--help"])
    assert exit_.value.code == 0 and expected in capsys.readouterr().out


# === Void labels (--ignore-index) ===


def _void_toy(tmp_path):
    """The toy video with palette masks holding 255 (void) on a ring around each object."""
    video, _, truth = _toy(tmp_path, labelled=())
    from scipy import ndimage

    void = np.zeros(truth.shape, bool)
    for t in range(len(truth)):
        objects = truth[t] > 0
        void[t] = ndimage.binary_dilation(objects) & ~objects  # a ring just outside
    voided = np.where(void, 255, truth)
    labels = []
    for t in (0, 4):
        path = str(tmp_path / f"void{t}.png")
        media.write_mask_png(path, voided[t])  # a 256-colour palette, as DAVIS masks have
        labels.append(f"{t}={path}")
    np.save(tmp_path / "void_truth.npy", voided)
    return video, labels, voided, void


def _noisy_targets(monkeypatch, void=None):
    """Makes segment's targets hold random classes where the loss weight is 0 (or on `void`,
    then weighted 1: the control that shows such noise is seen when it is weighted)."""
    real = segment.label_arrays

    def noisy(inputs):
        targets, weights = real(inputs)
        noise = np.random.default_rng(7).integers(0, 3, targets.shape).astype(targets.dtype)
        if void is None:
            return np.where(weights > 0, targets, noise), weights
        weights = np.where(void, 1.0, weights).astype(np.float32)
        weights[[1, 2, 3]] = 0.0  # the labelled frames only
        return np.where(void, noise, targets), weights

    monkeypatch.setattr(segment, "label_arrays", noisy)


def test_void_pixels_count_in_neither_loss_nor_iou(tmp_path, monkeypatch):
    video, labels, voided, void = _void_toy(tmp_path)
    truth = str(tmp_path / "void_truth.npy")
    kwargs = dict(truth=truth, steps=4, preset="tiny_3d", verbose=0, seed=3)
    first = segment_video(video, labels, str(tmp_path / "a"), **kwargs)  # 0, 1, 2 and 255: trains
    metrics = first["metrics"]
    assert metrics["num_classes"] == 3
    assert metrics["ignored_label_pixels"] == int(void[[0, 4]].sum()) > 0
    assert metrics["labelled_pixels"] == int((~void[[0, 4]]).sum())
    assert metrics["truth"]["ignored_pixels"] == int(void.sum())
    counted = ~void
    want = segmentation_pipeline.class_iou(voided[counted], first["labels"][counted], 3)
    assert metrics["truth"]["per_class_iou"] == {str(c): v for c, v in want.items()}
    # What the targets hold under the void pixels changes nothing: same seed, same model.
    with monkeypatch.context() as patch:
        _noisy_targets(patch)
        second = segment_video(video, labels, str(tmp_path / "b"), **kwargs)
    np.testing.assert_array_equal(second["labels"], first["labels"])
    assert second["metrics"]["truth"] == metrics["truth"]
    assert second["metrics"]["training"]["final_loss"] == metrics["training"]["final_loss"]
    # The control: the same noise on the same pixels, weighted, changes the training.
    _noisy_targets(monkeypatch, void)
    third = segment_video(video, labels, str(tmp_path / "c"), **kwargs)
    assert third["metrics"]["training"]["final_loss"] != metrics["training"]["final_loss"]


def test_iou_ignores_predictions_on_void_truth():
    truth = np.array([[0, 1, 255, 255]])
    a = segmentation_pipeline.class_iou(truth, np.array([[0, 1, 0, 1]]), 2, ignore_index=255)
    b = segmentation_pipeline.class_iou(truth, np.array([[0, 1, 1, 0]]), 2, ignore_index=255)
    assert a == b == {0: 100.0, 1: 100.0}


def test_an_ignore_index_among_the_classes_is_one_line(tmp_path, capsys):
    video, labels, _ = _toy(tmp_path)  # classes 0, 1, 2
    out = str(tmp_path / "out")
    with pytest.raises(SegmentError, match=r"--ignore-index 1 is also a class id: the labels "
                                           r"hold classes \[0, 2\]"):
        segment_video(video, labels, out, ignore_index=1, **TINY)
    with pytest.raises(SystemExit):
        cli.main(["segment", video, "--labels", *labels, "--out", out, "--ignore-index", "1"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--ignore-index 1 is also a class id" in err
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")
    assert os.listdir(tmp_path) == [n for n in os.listdir(tmp_path) if "lock" not in n]


def test_a_stack_labels_the_frames_not_void_throughout(tmp_path):
    video, _, truth = _toy(tmp_path)
    stack = np.full(truth.shape, 255, np.int64)
    stack[[1, 3]] = truth[[1, 3]]
    np.save(tmp_path / "stack.npy", stack)
    inputs = segment.load_inputs(video, [str(tmp_path / "stack.npy")])
    assert sorted(inputs["labels"]) == [1, 3] and inputs["ignored_label_pixels"] == 0
    picked = segment.load_inputs(video, [str(tmp_path / "truth.npy")], labelled_slices=[0, 2])
    assert sorted(picked["labels"]) == [0, 2]
    with pytest.raises(SegmentError, match="--labelled-slices 9: out of range"):
        segment.load_inputs(video, [str(tmp_path / "truth.npy")], labelled_slices=[9])


def test_the_output_lock_is_held_once_and_dropped_with_its_process(tmp_path):
    from keras_hyperbolic.tasks import output_lock

    guarded = str(tmp_path / "out.partial")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from keras_hyperbolic.tasks import output_lock\n"
         f"with output_lock.hold({guarded!r}):\n    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(output_lock.OutputLocked, match=f"process {holder.pid} "):
            with output_lock.hold(guarded):
                pass
    finally:
        holder.kill()
        holder.wait(30)
    assert os.path.exists(guarded + ".lock")  # left by the killed holder, and not in the way:
    with output_lock.hold(guarded):
        assert json.load(open(guarded + ".lock"))["pid"] == os.getpid()
    assert not os.path.exists(guarded + ".lock")


# === NIfTI volumes ===


def _affine(spacing):
    """A rotated, scaled and shifted voxel-to-world affine (not the identity)."""
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = [-40.5, 12.25, 7.0]
    return affine


def _nifti_toy(tmp_path, spacing=(0.8, 0.8, 2.5)):
    """A uint16 volume (x, y, z) = (12, 10, 6), z the coarse axis, with the toy's objects in its
    z-slices; a label map labelling slices 1 and 4 (void elsewhere); the truth map."""
    import nibabel

    _, _, truth = _toy(tmp_path, frames=6, height=12, width=10, labelled=())
    volume = np.moveaxis(np.where(truth == 1, 3000, np.where(truth == 2, 200, 1000)), 0, 2)
    volume = volume.astype(np.uint16)
    volume[0, 0, 0] = 65535  # one hot voxel: percentiles keep it from squeezing the rest
    affine = _affine(spacing)
    paths = {}
    for name, data in [("volume", volume), ("truth", np.moveaxis(truth, 0, 2).astype(np.uint8))]:
        image = nibabel.Nifti1Image(data, affine)
        image.header.set_zooms(spacing)
        paths[name] = str(tmp_path / f"{name}.nii.gz")
        image.to_filename(paths[name])
    partial = np.full(truth.shape, 255, np.uint8)
    partial[[1, 4]] = truth[[1, 4]]
    image = nibabel.Nifti1Image(np.moveaxis(partial, 0, 2), affine)
    image.header.set_zooms(spacing)
    paths["labels"] = str(tmp_path / "labels.nii.gz")
    image.to_filename(paths["labels"])
    return paths, truth, affine


def test_a_nifti_volume_is_segmented_and_its_masks_keep_its_affine(tmp_path):
    import nibabel

    paths, truth, affine = _nifti_toy(tmp_path)
    out = str(tmp_path / "out")
    result = segment_video(paths["volume"], [paths["labels"]], out, truth=paths["truth"], **TINY)
    metrics = result["metrics"]
    assert metrics["volume"] == {"slice_axis": 2, "spacing": [0.8, 0.8, 2.5],
                                 "shape": [12, 10, 6]}
    assert metrics["video_shape"] == [6, 12, 10, 1] and metrics["labelled_frames"] == [1, 4]
    assert metrics["truth"]["frames_with_truth"] == 6
    written = nibabel.load(os.path.join(out, "masks.nii.gz"))
    np.testing.assert_allclose(written.affine, affine, atol=1e-6)
    np.testing.assert_allclose(written.affine, nibabel.load(paths["volume"]).affine)
    assert written.shape == (12, 10, 6) and written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.header.get_zooms(), (0.8, 0.8, 2.5))
    masks = np.asarray(written.dataobj)
    np.testing.assert_array_equal(np.moveaxis(masks, 2, 0), result["labels"])
    np.testing.assert_array_equal(np.load(os.path.join(out, "masks.npy")), result["labels"])
    assert metrics["outputs"]["masks_nifti"] == "masks.nii.gz"


def test_the_slice_axis_comes_from_the_spacing_or_the_argument(tmp_path):
    from keras_hyperbolic.data import nifti

    assert nifti.slice_axis_of([3.0, 1.0, 1.0]) == 0
    assert nifti.slice_axis_of([1.0, 2.0, 2.0]) == 2
    assert nifti.slice_axis_of([1.0, 1.0, 1.0]) == 2
    paths, _, _ = _nifti_toy(tmp_path, spacing=(2.5, 0.8, 0.8))
    assert media.read_video(paths["volume"]).shape == (12, 10, 6, 1)  # x is the coarse axis
    assert media.read_video(paths["volume"], slice_axis=2).shape == (6, 12, 10, 1)
    inputs = segment.load_inputs(paths["volume"], [paths["labels"]], slice_axis=2)
    assert sorted(inputs["labels"]) == [1, 4] and inputs["volume"]["slice_axis"] == 2
    # Labels on listed slices, the others 0 (not void): --labelled-slices picks them.
    picked = segment.load_inputs(paths["volume"], [paths["truth"]], slice_axis=2,
                                 labelled_slices=[0, 5])
    assert sorted(picked["labels"]) == [0, 5]


def test_intensities_are_normalised_by_one_function_for_tiff_and_nifti(tmp_path):
    import nibabel
    import tifffile

    rng = np.random.default_rng(0)
    scan = rng.integers(900, 1100, (8, 16, 12)).astype(np.uint16)
    scan[0, 0, 0] = 60000  # an outlier voxel, fewer than 0.5 % of them
    tifffile.imwrite(tmp_path / "scan.tif", scan)
    nibabel.Nifti1Image(np.moveaxis(scan, 0, 2), np.eye(4)).to_filename(tmp_path / "scan.nii")
    from_tiff = media.read_video(str(tmp_path / "scan.tif"))
    from_nifti = media.read_video(str(tmp_path / "scan.nii"))
    np.testing.assert_array_equal(from_tiff, from_nifti)
    np.testing.assert_array_equal(from_tiff[..., 0], media.normalise_intensities(scan))
    low, high = np.percentile(scan, media.PERCENTILES)
    np.testing.assert_allclose(from_tiff[1, 2, 3, 0], (scan[1, 2, 3] - low) / (high - low),
                               rtol=1e-5)
    assert from_tiff.min() == 0 and from_tiff.max() == 1 and from_tiff[0, 0, 0, 0] == 1
    assert from_tiff[1:].std() > 0.2  # the outlier did not squeeze the rest (/ 65535 would)
    signed = media.normalise_intensities(np.array([-1024, 0, 40, 3000], np.int16))
    assert signed.min() == 0 and signed.max() == 1 and np.all(np.diff(signed) > 0)
    floats = np.array([0.0, 0.25, 1.0], np.float32)
    np.testing.assert_array_equal(media.normalise_intensities(floats), floats)  # as stored


def test_bad_nifti_inputs_are_one_line_and_write_nothing(tmp_path, capsys):
    import nibabel

    paths, truth, affine = _nifti_toy(tmp_path)
    short = str(tmp_path / "short.nii.gz")
    nibabel.Nifti1Image(np.zeros((12, 10, 5), np.uint8), affine).to_filename(short)
    out = str(tmp_path / "out")
    for argv, message in [
        ([paths["volume"], "--labels", short],
         f"{short}: the label map is 12 x 10 x 5 voxels but the volume is 12 x 10 x 6"),
        ([paths["volume"], "--labels", paths["labels"], "--slice-axis", "3"], "--slice-axis"),
        ([str(tmp_path / "video.npy"), "--labels", str(tmp_path / "truth.npy"),
          "--slice-axis", "1"], "it picks the frame axis of a NIfTI volume"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["segment"] + argv + ["--out", out])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and message in err, err
        assert not os.path.exists(out) and not os.path.exists(out + ".partial")
        assert not os.path.exists(out + ".partial.lock")


# === The plan: whole video, windows or crops; tiles; progress ===


def _tiny_model(classes=3):
    return segmentation_pipeline.build_network("hyperbolic", classes,
                                               SEGMENT.override(preset="tiny_3d"))


def test_the_plan_cuts_by_voxels_and_memory():
    from keras_hyperbolic.tasks import segmentation_plan as plan

    model = _tiny_model()
    big = 4096.0
    whole = plan.plan_training(model, (8, 16, 16, 1), 2, big, 8 * 16 * 16)
    assert whole["mode"] == "whole" and whole["crop"] == [8, 16, 16]
    # Over the voxels of a step: the largest water-filled crop within them.
    crops = plan.plan_training(model, (8, 16, 16, 1), 2, big, 600)
    assert crops["mode"] == "crops" and crops["crop"] == [8, 8, 8]  # 512 voxels; 10^3 > 600
    # A long video of small frames keeps whole frames: windows.
    windows = plan.plan_training(model, (64, 6, 6, 1), 2, big, 36 * 20)
    assert windows["mode"] == "windows" and windows["crop"] == [20, 6, 6]
    # The memory budget binds like the voxels do.
    estimate = plan._estimator(model)
    budget = (estimate((4, 4, 4, 1)) + estimate((6, 6, 6, 1))) / 2
    tight = plan.plan_training(model, (8, 16, 16, 1), 2, budget, 10**9)
    assert tight["crop"] == [4, 4, 4] and tight["estimate_mb"] <= budget
    with pytest.raises(plan.BudgetTooSmall, match="the memory budget of 0.001 MB is too small"):
        plan.plan_training(model, (8, 16, 16, 1), 2, 0.001, 10**9)
    # Prediction tiles: at least the crop, as large as the budget holds.
    assert all(t >= c for t, c in zip(crops["tile"], crops["crop"]))
    assert crops["tile"] == [8, 16, 16] and tight["tile"] == [4, 4, 4]


@pytest.mark.parametrize("crop,message", [
    ("3,4,4", "--crop 3,4,4: 3 is not a multiple of 2, the network's input multiple"),
    ("4,16,4", "--crop 4,16,4: larger than the input, 5 x 13 x 11 (padded to 6 x 14 x 12"),
    ("4,4", "--crop 4,4: expected 3 comma-separated integers"),
])
def test_a_bad_crop_is_one_line_and_writes_nothing(crop, message, tmp_path, capsys):
    video, labels, _ = _toy(tmp_path)
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit):
        cli.main(["segment", video, "--labels", *labels, "--out", out, "--crop", crop,
                  "--preset", "tiny_3d"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert sorted(os.listdir(tmp_path)) == sorted(["video.npy", "truth.npy", "mask0.png",
                                                   "mask4.png"])


def test_the_plan_counts_the_videos_arrays_against_the_budget():
    from keras_hyperbolic.tasks import segmentation_plan as plan

    model = _tiny_model()
    shape = (8, 16, 16, 1)
    resident = plan.resident_mb(shape, 2)
    # Frames read and padded (float32, twice), targets and weights twice, the prediction's
    # probabilities (2 classes), argmax and int32 labels.
    assert resident == pytest.approx(8 * 16 * 16 * (8 + 16 + 8 + 12) / 2**20)
    whole = plan._estimator(model)(shape)
    # The whole video's step fits the budget, but not beside the arrays: crops.
    cut = plan.plan_training(model, shape, 2, whole + resident / 2, 10**9, resident=resident)
    assert cut["mode"] != "whole" and cut["resident_mb"] == resident
    assert cut["estimate_mb"] <= cut["step_budget_mb"] == pytest.approx(whole - resident / 2)
    assert plan.plan_training(model, shape, 2, whole + resident / 2, 10**9)["mode"] == "whole"
    with pytest.raises(plan.BudgetTooSmall, match="the video's arrays alone .* take about"):
        plan.plan_training(model, shape, 2, resident * 0.9, 10**9, resident=resident)


def test_crops_train_on_plain_autodiff_where_that_step_fits(tmp_path, monkeypatch):
    from keras_hyperbolic.reversible import ReversibleSequence, reversible_layers
    from keras_hyperbolic.tasks import segmentation_plan as plan

    model = _tiny_model()
    shape = (8, 16, 16, 1)
    whole = plan.plan_training(model, shape, 2, 4096.0, 10**9)
    assert whole["mode"] == "whole" and whole["memory_efficient"]  # the whole video: the engine
    crops = plan.plan_training(model, shape, 2, 4096.0, 600)
    assert crops["mode"] == "crops" and not crops["memory_efficient"]
    assert crops["estimate_mb"] == crops["plain_estimate_mb"] > crops["inversion_estimate_mb"]
    # A budget that holds the crop's step by inversion but not on plain autodiff: the engine.
    budget = (crops["plain_estimate_mb"] + crops["inversion_estimate_mb"]) / 2
    tight = plan.plan_training(model, shape, 2, budget, 600)
    assert tight["crop"] == crops["crop"] and tight["memory_efficient"]
    assert tight["estimate_mb"] == tight["inversion_estimate_mb"] <= budget

    # train() runs the plan's way (the engine's call is never traced) and leaves the model as built.
    engine_calls = []
    engine = ReversibleSequence._memory_efficient_call
    monkeypatch.setattr(ReversibleSequence, "_memory_efficient_call",
                        lambda self, *a, **k: engine_calls.append(1) or engine(self, *a, **k))
    rng = np.random.default_rng(0)
    video = rng.random(shape, np.float32)
    targets = rng.integers(0, 2, shape[:3]).astype(np.int32)
    weights = np.zeros(shape[:3], np.float32)
    weights[2] = 1.0
    for budget_mb, efficient in ((4096.0, False), (budget, True)):
        model = _tiny_model()
        prepared = segmentation_pipeline.prepare(model, video, targets, weights, budget_mb,
                                                 max_voxels=600)
        assert prepared.plan["memory_efficient"] is efficient
        engine_calls.clear()
        segmentation_pipeline.train(model, prepared, 2, 1e-3, str(tmp_path / f"run{efficient}"),
                                    verbose=0)
        assert bool(engine_calls) is efficient
        assert all(stack.memory_efficient for stack in reversible_layers(model))


def test_crops_hold_labelled_pixels_and_draw_the_classes_evenly():
    from keras_hyperbolic.tasks.segmentation_plan import crop_origins

    targets = np.zeros((20, 30, 40), np.int32)
    weights = np.zeros((20, 30, 40), np.float32)
    weights[[3, 15]] = 1.0  # two labelled frames
    targets[3, 5:25, 5:30] = 1
    targets[15, 28, 39] = 2  # one pixel of a rare class, in a corner
    crop = (8, 10, 12)
    origins = crop_origins(targets, weights, crop, 600, seed=4)
    assert origins.shape == (600, 3)
    assert np.all(origins >= 0) and np.all(origins + crop <= targets.shape)
    rare = 0
    for origin in origins:
        where = tuple(slice(o, o + c) for o, c in zip(origin, crop))
        assert weights[where].any()  # every crop holds a labelled frame (and pixel)
        rare += bool((targets[where] == 2).any())
    # Three classes drawn in turn: the one pixel of class 2 is in a third of the crops or more
    # (crops placed uniformly would hold it about once in 800).
    assert 0.3 < rare / 600 < 0.5
    np.testing.assert_array_equal(origins, crop_origins(targets, weights, crop, 600, seed=4))
    assert not np.array_equal(origins, crop_origins(targets, weights, crop, 600, seed=5))


@pytest.mark.parametrize("shape", [(6, 8, 10), (5, 9)])
def test_augment_moves_video_masks_and_weights_together_along_every_axis(shape):
    """Each voxel of the video carries its own index: the masks and weights must follow it."""
    import tensorflow as tf

    tf.random.set_seed(3)
    index = np.arange(np.prod(shape), dtype=np.float32).reshape((1,) + shape)
    x, y, w = index[..., None], index.astype(np.int32), index + 0.5
    seen = [set() for _ in shape]
    for _ in range(40):
        xa, ya, wa = (np.asarray(t) for t in segmentation_pipeline.augment(x, y, w))
        assert xa.shape == x.shape and sorted(xa.ravel()) == sorted(x.ravel())
        np.testing.assert_array_equal(ya, xa[..., 0].astype(np.int32))
        np.testing.assert_array_equal(wa, xa[..., 0] + 0.5)
        # Where index 0 went: every position along every axis is reached (shifts), not just ends.
        where = np.argwhere(xa[0, ..., 0] == 0)[0]
        for axis, position in enumerate(where):
            seen[axis].add(int(position))
    assert all(len(positions) > 2 for positions in seen)


class _Softmaxed:
    """A stand-in network whose logits are its input: blending must give back the input."""

    def predict_on_batch(self, x):
        self.batches = getattr(self, "batches", 0) + 1
        return np.log(x)


@pytest.mark.parametrize("shape,tile,batch", [((21,), (8,), 3), ((10, 13), (4, 6), 1),
                                              ((7, 9, 12), (4, 4, 8), 5)])
def test_tiles_blend_to_the_whole_prediction_in_any_rank(shape, tile, batch):
    rng = np.random.default_rng(0)
    probs = rng.random(shape + (3,)).astype(np.float32) + 0.1
    probs /= probs.sum(-1, keepdims=True)
    model = _Softmaxed()
    blended = segmentation_pipeline.blend_tiles(model, probs, tile, batch_size=batch)
    np.testing.assert_allclose(blended, probs, rtol=1e-5)
    corners = segmentation_pipeline.tile_corners(shape, tile)
    assert model.batches == -(-len(corners) // batch)
    covered = np.zeros(shape, int)
    for corner in corners:
        covered[tuple(slice(c, c + t) for c, t in zip(corner, tile))] += 1
    assert covered.min() >= 1 and len(corners) > 1


def test_tile_weights_favour_a_tile_centre():
    """Two tiles disagreeing on the overlap: each voxel leans to the tile it is central in."""
    class Disagree:
        calls = 0

        def predict_on_batch(self, x):
            Disagree.calls += 1
            logits = np.zeros(x.shape[:-1] + (2,), np.float32)
            logits[..., Disagree.calls - 1] = 5.0  # the first tile says 0, the second 1
            return logits

    video = np.zeros((12, 1), np.float32)
    probs = segmentation_pipeline.blend_tiles(Disagree(), video, (8,), batch_size=1)
    labels = probs.argmax(-1)
    assert list(labels[:4]) == [0] * 4 and list(labels[8:]) == [1] * 4
    assert labels[5] == 0 and labels[6] == 1  # 5 is nearer the first tile's centre, 6 the second's


def test_progress_measures_the_pace_and_the_eta(monkeypatch):
    import io

    from keras_hyperbolic.tasks import segmentation_progress

    clock = iter([0.0, 10.0, 12.0, 14.0, 16.0, 18.0])  # the first step 10 s, then 2 s each
    monkeypatch.setattr(segmentation_progress.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    progress = segmentation_progress.StepProgress(10, 5, verbose=2, stream=stream)
    progress.on_train_begin()
    progress.on_epoch_begin(1)  # resumed after the first backup (5 steps)
    for batch in range(5):
        progress.on_train_batch_end(batch, {"loss": 0.5})
    progress.on_epoch_end(1, {"loss": 0.25})
    lines = stream.getvalue().splitlines()
    assert lines[0] == "  resumed at step 5 of 10"
    assert lines[1] == ("  measured: 2.00 s/step (the first step, tracing included: 10.0 s); "
                        "estimated training time 18 s, 2 s left")
    assert lines[2] == "  step 10/10  loss 0.2500  2.00 s/step  ETA 0 s"
    assert segmentation_progress.format_seconds(3725) == "1 h 02 min"


@pytest.mark.parametrize("verbose", [1, 2])
def test_segment_prints_the_plan_then_progress_without_keras_bar(verbose, tmp_path, capsys):
    video, labels, _ = _toy(tmp_path)
    segment_video(video, labels, str(tmp_path / "out"), steps=8, preset="tiny_3d",
                  verbose=verbose, crop="2,6,6")
    out = capsys.readouterr().out
    plan = out[out.index("plan:"):].splitlines()[:7]
    assert [line.split()[0] for line in plan] == ["plan:", "input", "labels", "network",
                                                  "training", "memory", "predict"]
    assert "crops of 2 x 6 x 6 (--crop)" in plan[4] and "of the 4096 MB budget" in plan[5]
    # The budget holds the whole video's step: predicted in one tile, larger than the crops.
    assert "1 tile of 6 x 14 x 12, overlapping by a quarter, blended" in plan[6]
    assert "measured: " in out and "estimated training time" in out
    assert "━" not in out and "step/step" not in out  # Keras's progress bar stays out
    if verbose == 2:
        assert any(line.startswith("  step 8/8  loss ") for line in out.splitlines())
        assert "\r" not in out
    else:
        assert "\r  step 8/8  loss " in out and "ETA 0 s" in out
