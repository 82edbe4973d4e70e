"""The `keras-hyperbolic` command: train the package's tasks, export, benchmark, inspect.

    keras-hyperbolic train video-segmentation --steps 300 --output outputs/video --export saved_models
    keras-hyperbolic train vae-digits --epochs 30
    keras-hyperbolic export model.keras --saved-model saved_models --name segmenter
    keras-hyperbolic export model.keras --tflite model.tflite --quantize dynamic
    keras-hyperbolic benchmark memory --quick
    keras-hyperbolic inspect saved_models/video_segmenter --input-shape 32,64,64,3
    keras-hyperbolic serving-config saved_models --base-path-prefix "$PWD/saved_models"
    keras-hyperbolic demo-data demo && keras-hyperbolic segment demo/video.gif --labels demo/labels --out seg

`train` runs the functions of `keras_hyperbolic.tasks` (inside the installed
package); its flags come from what each task declares (`Task.unit`,
`Task.options`). `main()` turns TensorFlow's oneDNN CPU path on unless the user
set `TF_ENABLE_ONEDNN_OPTS` (see `keras_hyperbolic.runtime`), however the
command is started (`keras-hyperbolic`, `python -m keras_hyperbolic.cli`).
This module imports no TensorFlow: each command imports what it needs, so
`--help` and bad arguments answer at once. Every command checks its arguments
(task names, files, directories) before it writes anything; a bad model file is
a one-line error naming the file and the reason.
"""

import argparse
import os
import sys
import zipfile

from keras_hyperbolic import runtime
from keras_hyperbolic.tasks import TASKS, UNITS, run_task

PROG = "keras-hyperbolic"


class CommandError(Exception):
    """A bad command line: printed as `keras-hyperbolic: error: ...`, exit status 2."""


# === Train ===


def _declared_options():
    """Every option some task declares, once each: `{flag: (option, [task names])}`."""
    declared = {}
    for name, task in TASKS.items():
        for option in task.options:
            known, names = declared.setdefault(option.cli_flag, (option, []))
            if known != option:
                raise ValueError(f"tasks declare two different options {option.cli_flag}: "
                                 f"{known} and {option}")
            names.append(name)
    return declared


def _option_dest(option):
    return "task_option_" + option.name


def _task_options(args, task):
    """The keyword arguments of `task`'s function from the command line, checked first."""
    options = {}
    for unit in UNITS:
        value = getattr(args, unit)
        if value is None:
            continue
        if unit != task.unit:
            raise CommandError(f"the task {args.task} counts {task.unit}: give --{task.unit}, "
                               f"not --{unit}")
        if value < 1:
            raise CommandError(f"--{unit} must be >= 1, got {value}")
        options[unit] = value
    for flag, (option, _) in _declared_options().items():
        value = getattr(args, _option_dest(option))
        if value is None:
            continue
        if option not in task.options:
            offered = ", ".join(o.cli_flag for o in task.options) or "none"
            raise CommandError(f"the task {args.task} has no {flag} option (its options: "
                               f"{offered})")
        if option.positive and value <= 0:
            raise CommandError(f"{flag} must be > 0, got {value}")
        options[option.name] = value
    return options


def cmd_train(args):
    task = TASKS[args.task]
    options = _task_options(args, task)
    if args.export is not None:
        _check_export_target(args.export, args.name or task.serving_name, args.version,
                             args.overwrite)
    result = run_task(args.task, output=args.output, quick=args.quick, seed=args.seed,
                      verbose=args.verbose, **options)
    if args.export is None:
        return 0
    from keras_hyperbolic.export import export_saved_model

    path = export_saved_model(result["model"], args.export, args.name or task.serving_name,
                              version=args.version, overwrite=args.overwrite)
    print(f"exported {result['model_path']} to {path}")
    return 0


# === Export ===


def _load_keras(path, unsafe=False):
    """The model in `path`, or a one-line CommandError naming the file and the reason."""
    if not os.path.isfile(path):
        raise CommandError(f"no such file: {path}")
    if not path.endswith(".keras"):
        raise CommandError(f"{path}: expected a .keras file (a Keras v3 zip archive)")
    if not zipfile.is_zipfile(path):
        raise CommandError(f"{path}: not a .keras file (not a zip archive)")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    if "config.json" not in names:
        raise CommandError(f"{path}: not a .keras file (the archive has no config.json)")
    import keras

    from keras_hyperbolic import load_model  # Keras's, with the package's classes registered

    if unsafe:  # the user trusts the file: also for copies made from its config later
        keras.config.enable_unsafe_deserialization()
    try:
        return load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as error:
        if "safe_mode" in str(error) or "lambda" in str(error).lower():
            raise CommandError(
                f"{path}: refused by Keras's safe mode (the file holds Python code, e.g. a "
                "lambda, that loading would run); pass --unsafe only if you trust the file"
            ) from None
        raise CommandError(f"{path}: cannot be loaded ({_one_line(error)})") from None
    except Exception as error:  # noqa: BLE001  (any loading failure is a bad file)
        raise CommandError(f"{path}: cannot be loaded ({_one_line(error)})") from None


def _one_line(error):
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _check_export_target(base_dir, name, version, overwrite):
    from keras_hyperbolic.export.serving_config import check_model_name

    try:
        check_model_name(name)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise CommandError(f"{base_dir} exists and is not a directory")
    if version is not None:
        if version < 1:
            raise CommandError(f"--version must be >= 1, got {version}")
        target = os.path.join(base_dir, name, str(version))
        if os.path.exists(target) and not overwrite:
            raise CommandError(f"{target} already exists; pass --overwrite to replace it")


def _parse_shape(text):
    if text is None:
        return None
    try:
        return tuple(None if p.strip().lower() in ("none", "?", "") else int(p)
                     for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated sizes like 32,64,64,3, got {text!r}") from None


def cmd_export(args):
    if (args.saved_model is None) == (args.tflite is None):
        raise CommandError("give exactly one of --saved-model DIR or --tflite FILE")
    if not os.path.isfile(args.model):
        raise CommandError(f"no such file: {args.model}")
    name = args.name or os.path.splitext(os.path.basename(args.model))[0]
    if args.saved_model is not None:
        _check_export_target(args.saved_model, name, args.version, args.overwrite)
    else:
        directory = os.path.dirname(os.path.abspath(args.tflite))
        if not os.path.isdir(directory):
            raise CommandError(f"the directory of {args.tflite} does not exist")
        if os.path.exists(args.tflite) and not args.overwrite:
            raise CommandError(f"{args.tflite} already exists; pass --overwrite to replace it")
    model = _load_keras(args.model, unsafe=args.unsafe)
    try:
        _export(model, name, args)
    except (ValueError, TypeError) as error:  # e.g. an input shape the model does not take
        raise CommandError(f"{args.model}: cannot be exported ({_one_line(error)})") from None
    return 0


def _export(model, name, args):
    shape = args.input_shape
    if args.saved_model is not None:
        from keras_hyperbolic.export import export_saved_model

        if shape is not None:
            shape = (None,) + shape
        path = export_saved_model(model, args.saved_model, name, version=args.version,
                                  overwrite=args.overwrite, input_shape=shape,
                                  base_path_prefix=args.base_path_prefix)
        print(f"wrote SavedModel {path}")
    else:
        from keras_hyperbolic.export import export_tflite, tflite_ops

        path = export_tflite(model, args.tflite, signatures=args.signatures, input_shape=shape,
                             batch_size=args.batch_size, quantize=args.quantize)
        print(f"wrote {path} ({os.path.getsize(path):,} bytes; ops: {', '.join(tflite_ops(path))})")


def cmd_serving_config(args):
    if not os.path.isdir(args.base_dir):
        raise CommandError(f"no such directory: {args.base_dir}")
    from keras_hyperbolic.export.serving_config import (  # imports TensorFlow
        served_models,
        write_batching_config,
        write_models_config,
    )

    names = served_models(args.base_dir)
    if not names:
        raise CommandError(f"no <name>/<version>/saved_model.pb under {args.base_dir}")
    prefix = args.base_path_prefix or os.path.abspath(args.base_dir)
    try:
        path = write_models_config(args.base_dir, names, prefix)
    except ValueError as error:
        raise CommandError(str(error)) from None
    write_batching_config(args.base_dir)
    print(f"wrote {path} for {', '.join(names)} (base paths under {prefix})")
    return 0


# === Benchmark ===


def cmd_benchmark_memory(args):
    from keras_hyperbolic.tasks import memory_benchmark

    memory_benchmark.run_from_arguments(args)
    return 0


# === Inspect ===


def _format_shape(shape):
    return "(" + ", ".join("?" if s is None or s == -1 else str(s) for s in shape) + ")"


def _saved_model_versions(path):
    from keras_hyperbolic.export.serving_config import served_models, version_dirs

    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return [path]
    versions = version_dirs(path)
    if versions:
        return [os.path.join(path, str(versions[-1]))]
    found = []
    for name in served_models(path):
        model_dir = os.path.join(path, name)
        found.append(os.path.join(model_dir, str(version_dirs(model_dir)[-1])))
    return found


def _inspect_saved_model(version_dir):
    import tensorflow as tf

    from keras_hyperbolic.export import read_warmup_requests
    from keras_hyperbolic.export.saved_model import read_metadata

    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(version_dir) for f in fs)
    print(f"SavedModel {version_dir} ({size / 2**20:.2f} MiB)")
    try:
        metadata = read_metadata(version_dir)
        print(f"  model: {metadata['model']['class_name']} ({metadata['family']}), "
              f"{metadata['parameters']:,} parameters, exported with keras_hyperbolic "
              f"{metadata['keras_hyperbolic_version']}, TF {metadata['tensorflow_version']}")
    except FileNotFoundError:
        print("  (no keras_hyperbolic metadata)")
    loaded = tf.saved_model.load(version_dir)
    for name in sorted(loaded.signatures):
        function = loaded.signatures[name]
        print(f"  signature {name!r}:")
        for key, spec in sorted(function.structured_input_signature[1].items()):
            print(f"    input  {key}: {spec.dtype.name} {_format_shape(spec.shape.as_list())}")
        for key, spec in sorted(function.structured_outputs.items()):
            print(f"    output {key}: {spec.dtype.name} {_format_shape(spec.shape.as_list())}")
    try:
        logs = read_warmup_requests(version_dir)
        print(f"  warmup records: {len(logs)} ("
              + ", ".join(log.predict_log.request.model_spec.signature_name for log in logs) + ")")
    except FileNotFoundError:
        print("  warmup records: none")


def _inspect_keras(path, input_shape, batch_size, unsafe=False):
    from keras_hyperbolic.export import endpoints, model_family
    from keras_hyperbolic.models.serving import built_input_shape

    model = _load_keras(path, unsafe=unsafe)
    family = model_family(model)
    built = built_input_shape(model)
    trainable = sum(int(v.numpy().size) for v in model.trainable_weights)
    print(f"Keras model {path}: {type(model).__name__} ({family})")
    print(f"  parameters: {model.count_params():,} ({trainable:,} trainable)")
    print(f"  input shape: {_format_shape(built)}")
    for name, endpoint in endpoints(model).items():
        ins = ", ".join(f"{s.name} {s.dtype.name} {_format_shape(s.shape.as_list())}"
                        for s in endpoint.input_specs)
        print(f"  signature {name!r} (when exported): {ins} -> {', '.join(endpoint.output_names)}")
    shape = input_shape or tuple(built[1:])
    if any(s is None for s in shape):
        raise CommandError(f"give --input-shape for the memory estimate (the model takes "
                           f"{_format_shape(built)})")
    from keras_hyperbolic.profiling import memory_estimate

    try:
        info = memory_estimate(model, shape, batch_size)
    except ValueError as error:
        raise CommandError(f"{path}: input shape {_format_shape(shape)} does not fit the "
                           f"model ({_one_line(error)})") from None
    mib = 2**20
    print(f"  memory estimate for input {_format_shape((batch_size,) + tuple(shape))} (float32):")
    print(f"    weights {info['weights_bytes'] / mib:.2f} MiB; with gradients and Adam "
          f"state {(info['weights_bytes'] + info['adam_training_state_bytes']) / mib:.2f} MiB")
    print(f"    input {info['input_bytes'] / mib:.2f} MiB")
    if info["stream_bytes_plain_autodiff"]:
        print(f"    reversible stream kept for backprop: plain autodiff >= "
              f"{info['stream_bytes_plain_autodiff'] / mib:.2f} MiB, memory-efficient ~ "
              f"{info['stream_bytes_memory_efficient'] / mib:.2f} MiB")


def cmd_inspect(args):
    path = args.path
    if not os.path.exists(path):
        raise CommandError(f"no such file or directory: {path}")
    if os.path.isdir(path):
        versions = _saved_model_versions(path)
        if not versions:
            raise CommandError(f"{path} holds no SavedModel (no saved_model.pb found)")
        config = os.path.join(path, "models.config")
        if os.path.isfile(config):
            print(f"{config}:\n" + open(config).read().rstrip())
        for version_dir in versions:
            _inspect_saved_model(version_dir)
        return 0
    if path.endswith(".tflite"):
        from keras_hyperbolic.export import tflite_ops

        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path)
        print(f"TFLite model {path} ({os.path.getsize(path):,} bytes)")
        for name, io in interpreter.get_signature_list().items():
            runner = interpreter.get_signature_runner(name)
            ins = runner.get_input_details()
            outs = runner.get_output_details()
            print(f"  signature {name!r}:")
            for key, detail in sorted(ins.items()):
                print(f"    input  {key}: {detail['dtype'].__name__} {_format_shape(detail['shape'])}")
            for key, detail in sorted(outs.items()):
                print(f"    output {key}: {detail['dtype'].__name__} {_format_shape(detail['shape'])}")
        print(f"  ops: {', '.join(tflite_ops(path))}")
        return 0
    _inspect_keras(path, args.input_shape, args.batch_size, args.unsafe)
    return 0


# === Segment your own video ===


def cmd_segment(args):
    from keras_hyperbolic.tasks.segment import SegmentError, segment_video
    from keras_hyperbolic.tasks.segment_inputs import parse_ignore_index, parse_indices

    if args.steps < 1:
        raise CommandError(f"--steps must be >= 1, got {args.steps}")
    if args.memory_budget <= 0:
        raise CommandError(f"--memory-budget must be > 0 MB, got {args.memory_budget}")
    if args.export is not None:
        from keras_hyperbolic.tasks.segment import SERVING_NAME

        _check_export_target(args.export, SERVING_NAME, None, args.overwrite)
    try:
        ignore_index = parse_ignore_index(args.ignore_index)
        labelled_slices = (None if args.labelled_slices is None
                           else parse_indices(args.labelled_slices, "--labelled-slices"))
        segment_video(
            args.input, args.labels, args.out, steps=args.steps, network=args.network,
            preset=args.preset, memory_budget_mb=args.memory_budget, truth=args.truth,
            export=args.export, overwrite=args.overwrite, learning_rate=args.learning_rate,
            seed=args.seed, verbose=args.verbose, fps=args.fps, ignore_index=ignore_index,
            labelled_slices=labelled_slices, slice_axis=args.slice_axis, crop=args.crop,
        )
    except (SegmentError, ValueError) as error:  # ValueError: the argument checks
        raise CommandError(str(error)) from None
    return 0


def cmd_demo_data(args):
    from keras_hyperbolic.tasks.segment import SegmentError, write_demo_data

    try:
        result = write_demo_data(args.dir, frames=args.frames, height=args.size,
                                 width=args.size, seed=args.seed, overwrite=args.overwrite)
    except (SegmentError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(f"wrote {result['video']} (digits {result['digits']}, one class each), "
          f"{len(result['labels'])} labelled frames {result['labelled_frames']} in "
          f"{args.dir}/labels, and every frame's truth in {result['truth']} and truth.npy")
    print(f"segment it with:\n  {result['command']}")
    return 0


def _add_seed_and_verbose(parser):
    """The last two options of the training commands (`train`, `segment`)."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2],
                        help="progress: 0 silent, 1 a progress line (default; with an ETA for "
                        "the video tasks and segment), 2 a line per epoch (per backup interval)")


def _add_segment_parsers(commands):
    from keras_hyperbolic.tasks.segment_inputs import IGNORE_INDEX
    from keras_hyperbolic.tasks.segmentation_settings import NETWORKS, OVERLAY_FPS, SEGMENT

    segment = commands.add_parser(
        "segment", help="segment your own video or volume from a few labelled frames",
        description="Train a 3D network on one video (or z-stack) whose masks are given on a "
        "few frames, and segment every frame. INPUT: a GIF (MP4/AVI/MOV with the `video` "
        "extra), a folder of PNG/JPEG frames, a .npy/.npz array (T, H, W[, C]), a "
        "multi-page TIFF or a NIfTI volume. Masks: palette, grey or colour PNGs, .npy class "
        "ids or NIfTI label maps (0 is the background, 255 void). Writes DIR/masks/*.png, "
        "masks.npy (and masks.nii.gz for a NIfTI volume), overlay.gif (and .mp4), "
        "segmenter.keras and metrics.json. A killed run resumes when started again; one run "
        "at a time writes DIR.",
        epilog="Example:\n  keras-hyperbolic demo-data demo\n  keras-hyperbolic segment "
        "demo/video.gif --labels demo/labels --truth demo/truth --out segmented",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    segment.add_argument("input", help="video file, frame folder, .npy/.npz, multi-page TIFF or "
                         "NIfTI volume (.nii, .nii.gz)")
    segment.add_argument("--labels", nargs="+", required=True, metavar="FRAME=MASK",
                         help="labelled frames (0-based) and their masks; or a folder of masks "
                         "whose names carry the frame index (frame_0012.png)")
    segment.add_argument("--out", required=True, metavar="DIR", help="output directory")
    segment.add_argument("--steps", type=int, default=SEGMENT.steps,
                         help=f"training steps (default {SEGMENT.steps})")
    segment.add_argument("--network", choices=NETWORKS, default="hyperbolic",
                         help="hyperbolic (reversible HyperbolicSegmenter, default) or unet "
                         "(plain 3D U-Net baseline)")
    segment.add_argument("--preset", default=SEGMENT.preset,
                         help=f"HyperbolicSegmenter preset (default {SEGMENT.preset})")
    segment.add_argument("--memory-budget", type=float, default=SEGMENT.memory_budget_mb,
                         metavar="MB", help="memory to plan for, TensorFlow itself aside (about "
                         "0.9 GB more): the video's arrays and one training step, the whole video "
                         "when its estimate fits and a step convolves at most "
                         f"{SEGMENT.max_step_voxels:,} voxels, else windows or crops that do "
                         f"(default {SEGMENT.memory_budget_mb:g} MB)")
    segment.add_argument("--crop", default=None, metavar="T,H,W",
                         help="train on crops of T frames of H x W (multiples of the network's "
                         "input multiple) and predict in tiles of that size, instead of the "
                         "plan's choice")
    segment.add_argument("--truth", nargs="+", default=None, metavar="MASKS",
                         help="true masks (a folder, FRAME=MASK items or a (T, H, W) .npy) "
                         "for IoU per frame and class")
    segment.add_argument("--export", default=None, metavar="DIR",
                         help="also export the model as a TF Serving SavedModel under DIR")
    segment.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    segment.add_argument("--learning-rate", type=float, default=None,
                         help="Adam's rate (default: " + ", ".join(
                             f"{SEGMENT.learning_rate_of(network):g} {network}"
                             for network in NETWORKS) + ")")
    segment.add_argument("--fps", type=int, default=OVERLAY_FPS,
                         help="frames per second of the overlay animation")
    segment.add_argument("--ignore-index", default=str(IGNORE_INDEX),
                         metavar="VALUE", help="mask value of void pixels, left out of the loss "
                         f"and the IoU (default {IGNORE_INDEX}, as DAVIS and VOC use; none: no "
                         "void value)")
    segment.add_argument("--labelled-slices", default=None,
                         metavar="I,J,...", help="the labelled frames of a label stack or NIfTI "
                         "label map (default: every frame not void throughout)")
    segment.add_argument("--slice-axis", type=int, default=None, metavar="{0,1,2}",
                         help="of a NIfTI volume, the data axis whose slices are the frames "
                         "(default: the axis of the largest voxel spacing, else the last)")
    _add_seed_and_verbose(segment)
    segment.set_defaults(handler=cmd_segment)
    _add_demo_parser(commands)


def _add_demo_parser(commands):
    demo = commands.add_parser(
        "demo-data", help="write a demo video with 3 labelled frames for `segment`",
        description="Write the package's composed video (real handwritten digits moving over "
        "a real texture) as DIR/video.gif, the masks of three labelled frames in DIR/labels "
        "(one class per digit), and every frame's true mask in DIR/truth and DIR/truth.npy.",
    )
    demo.add_argument("dir", metavar="DIR")
    demo.add_argument("--frames", type=int, default=24, help="frames (default 24)")
    demo.add_argument("--size", type=int, default=48, help="height and width (default 48)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    demo.set_defaults(handler=cmd_demo_data)


# === Parser ===


def _add_train_parser(commands):
    train = commands.add_parser(
        "train", help="train one of the package's tasks on real data",
        description="Train one of the package's tasks (keras_hyperbolic.tasks) with Keras "
        "progress bars; optionally export the trained model as a TF Serving SavedModel. "
        "Each task counts epochs or steps and takes the options listed with it below.",
        epilog="Tasks:\n" + "\n".join(_task_line(n, t) for n, t in TASKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("task", choices=sorted(TASKS), metavar="task",
                       help="one of: " + ", ".join(sorted(TASKS)))
    for unit in UNITS:
        counting = [n for n, t in TASKS.items() if t.unit == unit]
        train.add_argument(f"--{unit}", type=int, default=None,
                           help=f"training {unit} of {', '.join(counting)} (default: the task's)")
    train.add_argument("--output", default=None,
                       help="directory for the task's outputs (default outputs/<task>)")
    train.add_argument("--export", default=None, metavar="DIR",
                       help="export the trained model to DIR/<name>/<version> for TF Serving")
    train.add_argument("--name", default=None, help="model name when exporting")
    train.add_argument("--version", type=int, default=None, help="version when exporting")
    train.add_argument("--overwrite", action="store_true", help="replace an existing version")
    train.add_argument("--quick", action="store_true", help="the task's CI-sized run (seconds)")
    for flag, (option, names) in _declared_options().items():
        text = f"{', '.join(names)}: {option.help} (default: {option.default})"
        if option.type is bool:
            train.add_argument(flag, dest=_option_dest(option), action="store_const",
                               const=option.value, default=None, help=text)
        else:
            train.add_argument(flag, dest=_option_dest(option), type=option.type,
                               default=None, metavar=option.metavar or option.name.upper(),
                               help=text)
    _add_seed_and_verbose(train)
    train.set_defaults(handler=cmd_train)


def _task_line(name, task):
    flags = [f"--{task.unit}"] + [option.cli_flag for option in task.options]
    return f"  {name}: {task.description}\n    flags: {', '.join(flags)}"


def _add_export_parser(commands):
    export = commands.add_parser(
        "export", help="export a .keras model as a SavedModel or a .tflite file",
        description="Export a .keras model: a versioned TF Serving SavedModel (signatures, "
        "warmup records, models.config) or a builtin-ops TFLite/LiteRT file.",
    )
    export.add_argument("model", help="the .keras file")
    export.add_argument("--saved-model", metavar="DIR", help="TF Serving base directory")
    export.add_argument("--tflite", metavar="FILE", help="the .tflite file to write")
    export.add_argument("--name", help="model name (default: the file's stem)")
    export.add_argument("--version", type=int, help="version (default: next free integer)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version/file")
    export.add_argument("--input-shape", type=_parse_shape, metavar="D1,...,C",
                        help="input shape without batch (TFLite: static; SavedModel: "
                        "'none' leaves an axis free)")
    export.add_argument("--batch-size", type=int, default=1, help="TFLite batch size")
    export.add_argument("--quantize", choices=["dynamic", "float16"], help="TFLite quantisation")
    export.add_argument("--signatures", nargs="+", help="TFLite signatures to include")
    export.add_argument("--base-path-prefix", default="/models",
                        help="where the server sees the SavedModel directory (models.config)")
    export.add_argument("--unsafe", action="store_true",
                        help="load with Keras's safe mode off (runs Python code stored in the "
                        "file, e.g. lambdas): only for files you trust")
    export.set_defaults(handler=cmd_export)


def _add_serving_and_benchmark_parsers(commands):
    config = commands.add_parser(
        "serving-config", help="(re)write models.config for a SavedModel directory",
        description="Write models.config (every model found) and batching.config in DIR. "
        "Base paths default to DIR's absolute path, for a server on this machine.",
    )
    config.add_argument("base_dir", metavar="DIR")
    config.add_argument("--base-path-prefix", default=None,
                        help="where the server sees DIR (default: its absolute path here)")
    config.set_defaults(handler=cmd_serving_config)

    benchmark = commands.add_parser(
        "benchmark", help="run a benchmark", description="Run one of the repository's benchmarks."
    )
    kinds = benchmark.add_subparsers(dest="benchmark", metavar="benchmark")
    kinds.required = True
    memory = kinds.add_parser(
        "memory", help="peak memory and step time: plain vs remat vs reversible",
        description="Peak memory and time of one training step over a stack of coupling "
        "blocks: plain autodiff, keras.remat and the memory-efficient ReversibleSequence "
        "(keras_hyperbolic.tasks.memory_benchmark; each configuration in its own process).",
    )
    from keras_hyperbolic.tasks.memory_benchmark import argument_parser  # argparse only

    argument_parser(memory)
    memory.set_defaults(handler=cmd_benchmark_memory)


def _add_inspect_parser(commands):
    inspect = commands.add_parser(
        "inspect", help="signatures, shapes, parameters and memory of a model",
        description="Inspect a SavedModel directory (a version, a model or a base directory "
        "with models.config), a .tflite file or a .keras file: signatures, inputs and "
        "outputs, parameter count, and (for .keras) a memory estimate for an input size.",
    )
    inspect.add_argument("path")
    inspect.add_argument("--input-shape", type=_parse_shape, metavar="D1,...,C",
                         help="input size for the memory estimate (without batch)")
    inspect.add_argument("--batch-size", type=int, default=1)
    inspect.add_argument("--unsafe", action="store_true",
                         help="load a .keras with Keras's safe mode off (only for trusted files)")
    inspect.set_defaults(handler=cmd_inspect)


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train, export, benchmark and inspect keras_hyperbolic models.",
        epilog="Run `keras-hyperbolic <command> --help` for each command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.required = True
    _add_train_parser(commands)
    _add_export_parser(commands)
    _add_serving_and_benchmark_parsers(commands)
    _add_inspect_parser(commands)
    _add_segment_parsers(commands)
    return parser


def main(argv=None):
    """Runs the command line `argv` (default: the process's); returns the exit status."""
    # First, before any command imports TensorFlow: oneDNN on and TensorFlow's C++ info
    # logs off, unless the user set either (read once, when TensorFlow is imported).
    runtime.configure_command_process()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as error:
        parser.exit(2, f"{PROG}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
