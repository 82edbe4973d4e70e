"""Segment your own video or volume from a few labelled frames: what `keras-hyperbolic segment` runs.

The main job's protocol and settings (`segmentation_settings.SEGMENT`, which
is the main job's `FULL`) on the user's data: ONE video (or a z-stack, its
slices taken as time), masks given on a few frames, a 3D network trained on
the whole video with the loss weighted to the labelled frames only, random
flips of time and space, then every frame predicted. The stages are the main
job's (`segmentation_pipeline`):

- Any size: frames are padded (reflect) to a multiple of the network's
  `input_multiple` along time, height and width, and the predictions cropped back.
- Memory: the whole video is trained on when the network's estimated
  training step (`profiling.training_step_estimate`) fits what the video's
  arrays leave of `memory_budget_mb` (and a step convolves at most
  `max_step_voxels`); otherwise crops in space and time (windows of whole
  frames for a long video of small ones) that fit, drawn around labelled
  pixels, and the video is predicted in tiles overlapping by a quarter, whose
  class probabilities are blended (a tent weight, highest at a tile's centre).
- Output is built in `<output>.partial` and renamed to `<output>` when done.
  A killed run leaves `<output>.partial` behind; the same call again resumes
  from its last backup (`BackupAndRestore`, every up to 30 steps).

`segment_video(...)` checks every input (settings, files, frame indices, mask
sizes, class ids) before it creates anything or imports TensorFlow, raising
`SegmentError` naming the file and the frame (a `ValueError` naming the
argument for a bad setting).
"""

import contextlib
import hashlib
import json
import os
import shutil
import time

import numpy as np

from keras_hyperbolic import runtime
from keras_hyperbolic.data import media, nifti
from keras_hyperbolic.tasks import output_lock
from keras_hyperbolic.tasks.segment_inputs import (  # noqa: F401  (segment's interface)
    IGNORE_INDEX, SegmentError, check_classes, check_labels, check_output, check_preset,
    check_settings, check_truth, label_arrays, load_inputs, parse_indices, parse_label_arguments)
from keras_hyperbolic.tasks.segmentation_settings import OVERLAY_FPS, SEGMENT  # noqa: F401
from keras_hyperbolic.validation import check_positive_int

MODEL_FILE = "segmenter.keras"
#: The predicted masks of a NIfTI input, with its affine and header.
NIFTI_MASKS = "masks.nii.gz"
SERVING_NAME = "segmenter"


# === The job ===


def _fingerprint(inputs, settings):
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(inputs["video"]).tobytes())
    for frame, mask in inputs["labels"].items():
        digest.update(str(frame).encode())
        digest.update(np.ascontiguousarray(mask).tobytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _prepare_work_dir(work, fingerprint, verbose):
    """Creates `work` or keeps it for resuming when it holds the same run; returns True to resume."""
    stamp = os.path.join(work, "run.json")
    if os.path.isdir(work):
        try:
            same = json.load(open(stamp))["fingerprint"] == fingerprint
        except (OSError, ValueError, KeyError):
            raise SegmentError(f"{work} exists but is not an unfinished segment run; remove it "
                               "or choose another output directory") from None
        if same:
            if verbose:
                print(f"resuming the unfinished run in {work}")
            return True
        if verbose:
            print(f"{work} holds an unfinished run with other inputs or settings: starting anew")
        shutil.rmtree(work)
    os.makedirs(work)
    with open(stamp, "w") as handle:
        json.dump({"fingerprint": fingerprint}, handle)
    return False


def _settings_record(settings, network, seed, inputs, crop):
    """The settings of a segment run as metrics.json and the resume fingerprint hold them."""
    return {"steps": settings.steps, "network": network, "preset": settings.preset,
            "memory_budget_mb": settings.memory_budget_mb,
            "max_step_voxels": settings.max_step_voxels,
            "crop": None if crop is None else list(crop),
            "learning_rate": settings.learning_rate_of(network),
            "unet_filters": settings.unet_filters, "unet_levels": settings.unet_levels,
            "ignore_index": inputs["ignore_index"], "seed": int(seed)}


def _build_and_prepare(pipeline, network, inputs, settings, crop):
    """The network for `inputs` and the prepared video (padded, planned); SegmentError if it can't."""
    model = pipeline.build_network(network, inputs["num_classes"], settings)
    if model.rank != 3:
        raise SegmentError(f"--preset {settings.preset} is a {model.rank}D network; segment "
                           "needs a 3D one (time, height, width)")
    targets, weights = label_arrays(inputs)
    try:
        prepared = pipeline.prepare(model, inputs["video"], targets, weights,
                                    settings.memory_budget_mb, settings.max_step_voxels, crop)
    except (pipeline.BudgetTooSmall, pipeline.BadCrop) as error:
        raise SegmentError(str(error)) from None
    return model, prepared


def _describe_labels(inputs):
    ignored = inputs["ignored_label_pixels"]
    return (f"{inputs['num_classes']} classes, labelled frames {sorted(inputs['labels'])} "
            f"({inputs['labelled_pixels']:,} labelled pixels"
            + (f", {ignored:,} void pixels (value {inputs['ignore_index']}) ignored" if ignored
               else "") + ")")


def _x(shape):
    return " x ".join(str(int(n)) for n in shape)


def _training_text(plan):
    """What a training step sees, in words."""
    if plan["mode"] == "whole":
        return "the whole video"
    if plan["mode"] == "windows":
        return f"windows of {plan['window']} frames, each holding a labelled frame"
    return (f"crops of {_x(plan['crop'])}" + (" (--crop)" if plan["crop_given"] else "")
            + " around labelled pixels, the classes in turn")


def _engine_name(plan):
    """How the steps get their gradients, in two or four words."""
    return "activations rebuilt by inversion" if plan["memory_efficient"] else "plain autodiff"


def _engine_text(plan):
    """`_engine_name`, and for plain autodiff chosen over the engine, why and what it would take."""
    if plan["memory_efficient"] or plan["inversion_estimate_mb"] >= plan["plain_estimate_mb"]:
        return _engine_name(plan)
    return (f"plain autodiff: it fits, and skips rebuilding; "
            f"{plan['inversion_estimate_mb']:.0f} MB by inversion")


def _describe_plan(pipeline, inputs, model, network, prepared, steps):
    """The plan block printed before training (the measured pace follows, from training)."""
    plan, video, volume = prepared.plan, inputs["video"], inputs["volume"]
    tiles = len(pipeline.tile_corners(prepared.video.shape[:3], plan["tile"]))
    lines = [
        "plan:",
        f"  input      {_x(video.shape[:3])} ({'grey' if video.shape[-1] == 1 else 'RGB'})"
        + (f", NIfTI slices along data axis {volume['slice_axis']} (voxel spacing "
           f"{' x '.join(f'{z:g}' for z in volume['spacing'])})" if volume else "")
        + f"; padded to {_x(prepared.video.shape[:3])} (multiples of {prepared.multiple})",
        f"  labels     {_describe_labels(inputs)}",
        f"  network    {type(model).__name__} ({network}), {model.count_params():,} parameters",
        f"  training   {steps} steps on {_training_text(plan)}: {plan['step_voxels']:,} voxels "
        f"a step (at most {plan['max_step_voxels']:,} without --crop)",
        f"  memory     estimated step {plan['estimate_mb']:.0f} MB ({_engine_text(plan)}) "
        f"and the video's arrays "
        f"{plan['resident_mb']:.0f} MB, of the {plan['memory_budget_mb']:g} MB budget "
        f"(whole-video step: {plan['whole_video_estimate_mb']:.0f} MB)",
        "  predict    " + ("the whole video at once" if plan["mode"] == "whole" else
                          f"{tiles} tile{'s' * (tiles > 1)} of {_x(plan['tile'])}, "
                          "overlapping by a quarter, blended; "
                          f"{plan['predict_batch']} at a time"),
    ]
    return "\n".join(lines)


def _metrics(input, inputs, prepared, record, model, result, resumed):
    """metrics.json of a segment run (without `predict_seconds`, `outputs`, `truth`, `exported`)."""
    training = {**prepared.plan, **result, "steps_this_run": result["steps"],
                "resumed": resumed or result["steps"] < record["steps"]}
    del training["steps"]
    return {
        "input": os.fspath(input),
        "video_shape": list(inputs["video"].shape),
        "padded_shape": list(prepared.video.shape),
        "num_classes": inputs["num_classes"],
        "labelled_frames": sorted(inputs["labels"]),
        "label_files": {str(f): p for f, p in inputs["label_sources"].items()},
        "labelled_pixels": inputs["labelled_pixels"],
        "ignored_label_pixels": inputs["ignored_label_pixels"],
        "class_colours": inputs["colours"],
        "volume": (None if inputs["volume"] is None else
                   {"slice_axis": inputs["volume"]["slice_axis"],
                    "spacing": inputs["volume"]["spacing"],
                    "shape": list(inputs["volume"]["shape"])}),
        "settings": record,
        "network": type(model).__name__,
        "parameters": int(model.count_params()),
        "training": training,
        "onednn": runtime.onednn_enabled(),
    }


def _publish(work, output):
    """Renames the finished `work` to `output` (an --overwrite's old output goes only then)."""
    if os.path.exists(output):
        old = output + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(output, old)
        os.rename(work, output)
        shutil.rmtree(old)
    else:
        os.rename(work, output)


def _check_crop(crop):
    """`crop` as a tuple of 3 ints >= 1 (from a tuple or "t,h,w"), or None."""
    if crop is None:
        return None
    text = crop if isinstance(crop, str) else ",".join(map(str, crop))
    values = parse_indices(text, "--crop", count=3)
    if min(values) < 1:
        raise SegmentError(f"--crop {text}: expected 3 comma-separated integers >= 1, such as "
                           "16,96,96")
    return tuple(values)


@contextlib.contextmanager
def _one_writer(output):
    """Holds `output`'s lock (`output_lock`); SegmentError naming the holder when it is taken."""
    try:
        with output_lock.hold(output + ".partial"):
            yield
    except output_lock.OutputLocked as error:
        raise SegmentError(str(error)) from None


def _train(input, inputs, output, settings, network, crop, seed, verbose):
    """Builds, plans and trains the network in `output.partial`; returns what the rest needs."""
    import keras

    from keras_hyperbolic.tasks import segmentation_pipeline as pipeline

    keras.utils.set_random_seed(int(seed))
    model, prepared = _build_and_prepare(pipeline, network, inputs, settings, crop)
    if verbose:
        print(_describe_plan(pipeline, inputs, model, network, prepared, settings.steps))
    record = _settings_record(settings, network, seed, inputs, crop)
    work = output + ".partial"
    resumed = _prepare_work_dir(work, _fingerprint(inputs, {**record, "input": str(input)}),
                                verbose)
    result = pipeline.train(model, prepared, settings.steps, settings.learning_rate_of(network),
                            run_dir=os.path.join(work, "run"), seed=int(seed), verbose=verbose)
    return {"model": model, "prepared": prepared, "record": record, "result": result,
            "resumed": resumed, "work": work}


def _predict_and_write(input, inputs, run, fps):
    """Predicts every frame and writes the outputs into the work directory; returns metrics."""
    from keras_hyperbolic.tasks import segmentation_pipeline as pipeline

    model, work = run["model"], run["work"]
    start = time.perf_counter()
    labels_out = pipeline.predict(model, run["prepared"])
    metrics = _metrics(input, inputs, run["prepared"], run["record"], model, run["result"],
                       run["resumed"])
    metrics["predict_seconds"] = time.perf_counter() - start
    outputs = pipeline.write_label_outputs(work, inputs["video"], labels_out,
                                           inputs["num_classes"], fps)
    if inputs["volume"] is not None:  # the masks over the scan, in its space
        nifti.write_labels(os.path.join(work, NIFTI_MASKS), labels_out, inputs["volume"])
        outputs["masks_nifti"] = NIFTI_MASKS
    model.save(os.path.join(work, MODEL_FILE))
    metrics["outputs"] = {**outputs, "model": MODEL_FILE}
    if inputs["truth"] is not None:
        metrics["truth"] = pipeline.truth_metrics(inputs["truth"], labels_out,
                                                  set(inputs["labels"]), inputs["num_classes"],
                                                  inputs["ignore_index"])
    pipeline.write_metrics(work, metrics)
    os.remove(os.path.join(work, "run.json"))
    return labels_out, metrics


def segment_video(input, labels, output, *, steps=None, network="hyperbolic", preset=None,
                  memory_budget_mb=None, truth=None, export=None, overwrite=False,
                  learning_rate=None, unet_filters=None, unet_levels=None, seed=0, verbose=1,
                  fps=None, ignore_index=IGNORE_INDEX, labelled_slices=None, slice_axis=None,
                  crop=None):
    """Trains a 3D network on one video from a few labelled frames and segments every frame.

    Args:
        input: a video file (GIF; MP4/AVI/MOV with `keras-hyperbolic[video]`),
            a folder of frames, a `.npy`/`.npz` `(T, H, W[, C])` array, a
            multi-page TIFF (a z-stack: slices are frames) or a NIfTI volume
            (`.nii`, `.nii.gz`: its slices along `slice_axis` are frames; the
            masks are also written as `masks.nii.gz` with its affine and header).
        labels: `"FRAME=MASK"` strings (or `(frame, path)` pairs), folders of
            masks whose names carry the frame index, or a mask stack: a
            `(T, H, W)` `.npy` or a NIfTI label map of the volume's shape. Masks:
            palette/grey/colour PNG or `.npy` class ids (see
            `keras_hyperbolic.data.media`); classes are 0 (background) to K-1.
        output: the output directory (must not exist unless `overwrite`).
        steps: training steps (one step: the whole video, one window or one
            crop); default 300.
        network: "hyperbolic" (`HyperbolicSegmenter`) or "unet" (`BaselineUNet`).
        preset: the HyperbolicSegmenter preset (default "video_cpu").
        memory_budget_mb: memory to plan for, TensorFlow itself aside (about
            0.9 GB more; default 4096 MB): the video's arrays and one training
            step, the whole video when its step fits and convolves at most
            `SEGMENT.max_step_voxels` voxels, else windows or crops that do
            (`segmentation_plan`).
        truth: masks of any frames (same forms as `labels`) to measure IoU on.
        export: a TF Serving base directory to export the trained model to.
        overwrite: replace an existing `output`.
        learning_rate: Adam's initial rate (default 3e-3 for both, the main job's).
        unet_filters, unet_levels: the U-Net's size (default 24 filters, 2 levels).
        seed: seed of the weights and of the windows.
        verbose: 0 silent; 1 the plan, then a progress line with an ETA; 2
            the plan, then a line per backup interval (30 steps).
        fps: frames per second of the overlay animation (default 8).
        ignore_index: the mask value of void pixels (default 255, as DAVIS and
            Pascal VOC mark them), left out of the loss and, in `truth`, of the
            IoU; None: no void value.
        labelled_slices: the frames of a mask stack in `labels` that are
            labelled (default: every frame not void throughout).
        slice_axis: of a NIfTI volume, the data axis taken as time (default:
            the axis of the largest voxel spacing, else the last).
        crop: `(t, h, w)` (or `"t,h,w"`): train on crops of this size
            (multiples of the network's input multiple, within the input)
            instead of the planned ones; predict in tiles of it.

    Defaults not given are `segmentation_settings.SEGMENT`'s (the main job's).
    One run at a time per `output`: a second one is refused while the first
    runs (a lock beside `output.partial`, dropped when its process ends).

    Returns:
        A dict: `model`, `labels` (int32 `(T, H, W)` predicted classes),
        `metrics` (also in `metrics.json`) and `output`.

    Raises:
        SegmentError: bad input (unreadable or empty files, mask sizes,
            frame indices, class ids, too few classes, an existing output,
            another run writing `output`), before anything is created or trained.
        ValueError: a bad setting (naming the argument), equally early.
    """
    settings = check_settings(network, steps, preset, memory_budget_mb, learning_rate,
                              unet_filters, unet_levels)
    fps = check_positive_int(OVERLAY_FPS if fps is None else fps, "fps")
    crop = _check_crop(crop)
    output = check_output(output, overwrite)
    if export is not None and os.path.exists(export) and not os.path.isdir(export):
        raise SegmentError(f"--export {export} exists and is not a directory")
    with _one_writer(output):
        check_output(output, overwrite)  # again: a run that held the lock may have finished it
        inputs = load_inputs(input, labels, truth, ignore_index, labelled_slices, slice_axis)
        check_preset(network, settings.preset)  # imports the models, and so TensorFlow
        # === Everything checked: TensorFlow from here on ===
        run = _train(input, inputs, output, settings, network, crop, seed, verbose)
        labels_out, metrics = _predict_and_write(input, inputs, run, fps)
        _publish(run["work"], output)
    if export is not None:
        from keras_hyperbolic.export import export_saved_model
        from keras_hyperbolic.tasks.segmentation_pipeline import write_metrics

        metrics["exported"] = export_saved_model(run["model"], export, SERVING_NAME,
                                                 overwrite=overwrite)
        write_metrics(output, metrics)
    if verbose:
        print("\n" + report(metrics, output))
    return {"model": run["model"], "labels": labels_out, "metrics": metrics, "output": output}


def report(metrics, output):
    """A few lines: training mode, steps and time, IoU with truth, the files written."""
    training = metrics["training"]
    lines = [
        f"{metrics['network']}: {training['steps_this_run']} steps this run"
        + (" (resumed)" if training["resumed"] else "")
        + f", {training['seconds_per_step']:.2f} s/step; trained on {_training_text(training)}"
        + f" (estimated step memory {training['estimate_mb']:.0f} MB, "
        + _engine_name(training) + "); predicted in "
        f"{metrics['predict_seconds']:.0f} s",
    ]
    if metrics.get("ignored_label_pixels"):
        lines.append(f"void label pixels ignored (value {metrics['settings']['ignore_index']}): "
                     f"{metrics['ignored_label_pixels']:,} of "
                     f"{metrics['ignored_label_pixels'] + metrics['labelled_pixels']:,}")
    truth = metrics.get("truth")
    if truth:
        per_class = ", ".join(f"{c}: {v:.1f}" for c, v in truth["per_class_iou"].items())
        lines.append(f"IoU over {truth['frames_with_truth']} frames: mean {truth['mean_iou']:.1f} "
                     f"(per class {per_class})"
                     + (f"; unlabelled frames only {truth['unlabelled_frames_mean_iou']:.1f}"
                        if "unlabelled_frames_mean_iou" in truth else "")
                     + (f"; {truth['ignored_pixels']:,} void truth pixels left out"
                        if truth.get("ignored_pixels") else ""))
    lines.append(f"wrote {output}/: masks/ ({metrics['video_shape'][0]} PNGs), masks.npy, "
                 + (f"{NIFTI_MASKS}, " if "masks_nifti" in metrics["outputs"] else "")
                 + ", ".join(metrics["outputs"]["animations"]) + f", {MODEL_FILE}, metrics.json")
    if "exported" in metrics:
        lines.append(f"exported the model to {metrics['exported']}")
    return "\n".join(lines)


# === Demo data ===


def write_demo_data(output, frames=24, height=48, width=48, num_digits=3, seed=0,
                    overwrite=False):
    """Writes the composed digit video with one class per digit, ready for `segment`.

    Files: `video.gif`, `labels/frame_XXX.png` (palette PNGs of the three
    labelled frames), `truth/frame_XXX.png` (every frame) and `truth.npy`.

    Returns:
        A dict: `video`, `labels` (list of paths), `truth`, `labelled_frames`, `command`.
    """
    from keras_hyperbolic.data import make_digit_video

    output = os.path.normpath(os.fspath(output))
    if os.path.exists(output) and not overwrite:
        raise SegmentError(f"{output} already exists; pass --overwrite to replace it")
    data = make_digit_video(frames=frames, height=height, width=width, num_digits=num_digits,
                            digit_size=min(24, max(2, min(height, width) * 5 // 12)), seed=seed)
    video = (data["video"] * 255).round().astype(np.uint8)
    instances = data["instances"]
    work = output + ".partial"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "labels"))
    os.makedirs(os.path.join(work, "truth"))
    media.write_animation(os.path.join(work, "video.gif"), video, fps=OVERLAY_FPS)
    digits = len(str(frames - 1))
    for t in range(frames):
        media.write_mask_png(os.path.join(work, "truth", f"frame_{t:0{digits}d}.png"),
                             instances[t], num_digits + 1)
    for t in data["labelled_frames"]:
        shutil.copy(os.path.join(work, "truth", f"frame_{t:0{digits}d}.png"),
                    os.path.join(work, "labels", f"frame_{t:0{digits}d}.png"))
    np.save(os.path.join(work, "truth.npy"), instances)
    if os.path.exists(output):
        shutil.rmtree(output)
    os.rename(work, output)
    return {
        "video": os.path.join(output, "video.gif"),
        "labels": [os.path.join(output, "labels", f"frame_{t:0{digits}d}.png")
                   for t in data["labelled_frames"]],
        "truth": os.path.join(output, "truth"),
        "labelled_frames": list(data["labelled_frames"]),
        "digits": list(data["digits"]),
        "command": (f"keras-hyperbolic segment {output}/video.gif --labels {output}/labels "
                    f"--truth {output}/truth --out segmented"),
    }
