"""The `keras-hyperbolic` command: train the examples' tasks, export, benchmark, inspect.

    keras-hyperbolic train video-segmentation --epochs 300 --output outputs/video --export saved_models
    keras-hyperbolic export model.keras --saved-model saved_models --name segmenter
    keras-hyperbolic export model.keras --tflite model.tflite --quantize dynamic
    keras-hyperbolic benchmark memory --quick
    keras-hyperbolic inspect saved_models/video_segmenter --input-shape 32,64,64,3
    keras-hyperbolic serving-config saved_models --base-path-prefix "$PWD/saved_models"

`train` runs the example scripts of the repository (`examples/*.py`); they are
not part of the installed package, so it needs a source checkout (an editable
install) and says so when they are missing. Every command checks its
arguments (task names, files, directories) before it writes anything.
"""

import argparse
import dataclasses
import importlib.util
import inspect as pyinspect
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PROG = "keras-hyperbolic"


class CommandError(Exception):
    """A bad command line: printed as `keras-hyperbolic: error: ...`, exit status 2."""


def repository_root():
    """The source checkout holding this package, or None when installed elsewhere."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    return root if os.path.isfile(os.path.join(root, "pyproject.toml")) else None


def _repo_file(*parts, what):
    root = repository_root()
    path = os.path.join(root, *parts) if root else None
    if path is None or not os.path.isfile(path):
        raise CommandError(
            f"{what} needs {'/'.join(parts)} from the keras_hyperbolic source checkout, "
            f"which was not found{f' at {path}' if path else ''} (the installed package "
            "does not ship the examples and benchmarks). Clone the repository and "
            "`pip install -e .` there."
        )
    return path


def _load_script(path):
    name = "keras_hyperbolic_script_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(path))  # examples import their siblings
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


# === Tasks ===


@dataclasses.dataclass
class Task:
    script: str  # examples/<script>
    function: str  # a train function taking keyword arguments, or "main" (argv)
    model_file: str  # the .keras the example writes under its output directory
    serving_name: str  # the model's directory name when exported
    epochs: str  # the keyword / flag(s) --epochs maps to (comma-separated flags)
    description: str
    output_flag: str = "--output"
    quick_flag: str = "--quick"  # empty when the example has no quick mode


TASKS = {
    "video-segmentation": Task(
        "video_segmentation.py", "train_video_segmentation", "hyperbolic_segmenter.keras",
        "video_segmenter", "steps",
        "the main job: 3D HyperbolicSegmenter on a digit video labelled on 3 frames "
        "(one epoch = one step over the whole video)"),
    "iunet-segmentation": Task(
        "iunet_segmentation.py", "main", "invertible_unet.keras", "iunet_segmenter", "steps",
        "3D InvertibleUNet on the same video task (one epoch = one step)"),
    "irevnet-digits": Task(
        "irevnet_digits.py", "main", "irevnet_digits.keras", "irevnet_digits", "epochs",
        "i-RevNet classifier on scikit-learn digits"),
    "vae-digits": Task(
        "vae_digits.py", "main", "vae.keras", "digits_vae", "epochs-select,epochs-refine",
        "HyperbolicVAE (nonlinear truncated SVD) on scikit-learn digits (--epochs: epochs of "
        "each of its two stages, column selection and refinement)",
        output_flag="--out", quick_flag=""),
    "vae-faces": Task(
        "vae_faces.py", "main", "vae.keras", "faces_vae", "epochs-select,epochs-refine",
        "HyperbolicVAE on scikit-image's LFW face crops (--epochs: epochs of each stage)",
        output_flag="--out", quick_flag=""),
    "flow-digits": Task(
        "flow_digits.py", "main", "flow.keras", "digits_flow", "epochs",
        "ConvFlow normalising flow on scikit-learn digits (dequantised maximum likelihood)",
        output_flag="--out", quick_flag=""),
}


def _call_task(task, module, args):
    """Runs the example's training with the command's options; returns its output directory."""
    function = getattr(module, task.function, None)
    if function is None and task.function != "main":
        function = getattr(module, "main", None)
        if function is None:
            raise CommandError(
                f"examples/{task.script} defines neither {task.function}() nor main()."
            )
    if function is None or function.__name__ == "main":
        argv = [task.output_flag, args.output]
        if args.quick:
            if not task.quick_flag:
                raise CommandError(f"the task has no quick mode (examples/{task.script})")
            argv.append(task.quick_flag)
        if args.epochs is not None:
            for flag in task.epochs.split(","):
                argv += [f"--{flag}", str(args.epochs)]
        if pyinspect.signature(function).parameters:
            function(argv)
        else:  # main() reads sys.argv
            saved, sys.argv = sys.argv, [task.script] + argv
            try:
                function()
            finally:
                sys.argv = saved
        return args.output
    accepted = pyinspect.signature(function).parameters
    kwargs = {"output": args.output, "quick": args.quick, "verbose": 1, "seed": args.seed}
    if args.epochs is not None:
        kwargs[task.epochs] = args.epochs
    if "train_unet" in accepted:
        kwargs["train_unet"] = not args.no_baseline
    missing = [k for k in (task.epochs,) if args.epochs is not None and k not in accepted]
    if missing:
        raise CommandError(f"examples/{task.script}:{task.function}() takes no `{missing[0]}`.")
    function(**{k: v for k, v in kwargs.items() if k in accepted})
    return args.output


def cmd_train(args):
    task = TASKS[args.task]
    if args.quick and not task.quick_flag and task.function == "main":
        raise CommandError(f"the task {args.task} has no quick mode (examples/{task.script})")
    script = _repo_file("examples", task.script, what=f"`train {args.task}`")
    if args.epochs is not None and args.epochs < 1:
        raise CommandError(f"--epochs must be >= 1, got {args.epochs}")
    if args.export is not None:
        _check_export_target(args.export, task.serving_name, args.version, args.overwrite)
    args.output = args.output or os.path.join("outputs", args.task.replace("-", "_"))
    module = _load_script(script)
    output = _call_task(task, module, args)
    if args.export is None:
        return 0
    model_path = os.path.join(output, task.model_file)
    if not os.path.isfile(model_path):
        raise CommandError(f"the task did not write {model_path}; nothing to export.")
    from keras_hyperbolic.export import export_saved_model

    model = _load_keras(model_path)
    path = export_saved_model(model, args.export, args.name or task.serving_name,
                              version=args.version, overwrite=args.overwrite)
    print(f"exported {model_path} to {path}")
    return 0


# === Export ===


def _load_keras(path):
    if not os.path.isfile(path):
        raise CommandError(f"no such file: {path}")
    if not path.endswith(".keras"):
        raise CommandError(f"expected a .keras file, got {path}")
    import keras

    import keras_hyperbolic.models  # noqa: F401  (registers the models for loading)

    return keras.saving.load_model(path, compile=False)


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
    model = _load_keras(args.model)
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
    return 0


def cmd_serving_config(args):
    from keras_hyperbolic.export.serving_config import (
        served_models,
        write_batching_config,
        write_models_config,
    )

    if not os.path.isdir(args.base_dir):
        raise CommandError(f"no such directory: {args.base_dir}")
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
    script = _repo_file("benchmarks", "memory.py", what="`benchmark memory`")
    argv = []
    if args.quick:
        argv.append("--quick")
    for flag, values in (("--workloads", args.workloads), ("--depths", args.depths),
                         ("--modes", args.modes)):
        if values:
            argv += [flag, *map(str, values)]
    argv += ["--repeats", str(args.repeats), "--json", args.json]
    _load_script(script).main(argv)
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


def memory_estimate(model, input_shape, batch_size=1):
    """Bytes of weights and of the activations a training step keeps (float32 estimates).

    `stream`: the tensors passed between the blocks of the reversible stacks,
    which plain autodiff stores (a lower bound: each block also stores its
    internals), against what the memory-efficient engine keeps (the stacks'
    outputs and the largest block's input and output while it is rebuilt).
    """
    import numpy as np

    from keras_hyperbolic.reversible import reversible_layers

    parameters = int(model.count_params())
    info = {"parameters": parameters, "weights_bytes": 4 * parameters,
            "adam_training_state_bytes": 4 * 3 * parameters}
    input_shape = (batch_size,) + tuple(input_shape)
    info["input_bytes"] = 4 * int(np.prod(input_shape))
    stacks = [s for s in reversible_layers(model)
              if not any(s is not o and s in o.blocks for o in reversible_layers(model))]
    plain = efficient = 0
    for stack in stacks:
        shape = getattr(stack, "_build_shapes_dict", {}).get("input_shape")
        if shape is None:
            continue
        shape = (batch_size,) + tuple(int(s) for s in shape[1:])
        # Rescale the built spatial sizes to the requested input's.
        built = model._build_shapes_dict.get("input_shape") if hasattr(model, "_build_shapes_dict") else None
        if built and len(built) == len(input_shape) and all(built[1:-1]):
            factors = [n / b for n, b in zip(input_shape[1:-1], built[1:-1])]
            shape = (batch_size,) + tuple(int(round(s * f)) for s, f in zip(shape[1:-1], factors)) + shape[-1:]
        sizes = [int(np.prod(shape))]
        for block in stack.blocks:
            shape = tuple(block.compute_output_shape(shape))
            sizes.append(int(np.prod(shape)))
        plain += 4 * sum(sizes)
        efficient += 4 * (sizes[-1] + 2 * max(sizes))
    info["stream_bytes_plain_autodiff"] = plain
    info["stream_bytes_memory_efficient"] = efficient
    return info


def _inspect_keras(path, input_shape, batch_size):
    from keras_hyperbolic.export import endpoints, model_family
    from keras_hyperbolic.models.serving import built_input_shape

    model = _load_keras(path)
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
    info = memory_estimate(model, shape, batch_size)
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
    _inspect_keras(path, args.input_shape, args.batch_size)
    return 0


# === Parser ===


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train, export, benchmark and inspect keras_hyperbolic models.",
        epilog="Run `keras-hyperbolic <command> --help` for each command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.required = True

    train = commands.add_parser(
        "train", help="train one of the examples' tasks",
        description="Train one of the examples' tasks with Keras progress bars; optionally "
        "export the trained model as a TF Serving SavedModel.",
        epilog="Tasks:\n" + "\n".join(f"  {n}: {t.description}" for n, t in TASKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("task", choices=sorted(TASKS), metavar="task",
                       help="one of: " + ", ".join(sorted(TASKS)))
    train.add_argument("--epochs", type=int, default=None,
                       help="training epochs (the video tasks: steps over the one video)")
    train.add_argument("--output", default=None,
                       help="directory for the example's outputs (default outputs/<task>)")
    train.add_argument("--export", default=None, metavar="DIR",
                       help="export the trained model to DIR/<name>/<version> for TF Serving")
    train.add_argument("--name", default=None, help="model name when exporting")
    train.add_argument("--version", type=int, default=None, help="version when exporting")
    train.add_argument("--overwrite", action="store_true", help="replace an existing version")
    train.add_argument("--quick", action="store_true", help="the example's CI-sized run")
    train.add_argument("--no-baseline", action="store_true",
                       help="skip the baseline network where the task trains one")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=cmd_train)

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
    export.set_defaults(handler=cmd_export)

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
        "(benchmarks/memory.py; each configuration in its own process).",
    )
    memory.add_argument("--quick", action="store_true", help="tiny workload (seconds)")
    memory.add_argument("--workloads", nargs="+", choices=["2d", "3d", "quick"])
    memory.add_argument("--depths", nargs="+", type=int)
    memory.add_argument("--modes", nargs="+", choices=["plain", "remat", "reversible"])
    memory.add_argument("--repeats", type=int, default=3)
    memory.add_argument("--json", default="benchmark_memory.json", help="results file")
    memory.set_defaults(handler=cmd_benchmark_memory)

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
    inspect.set_defaults(handler=cmd_inspect)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as error:
        parser.exit(2, f"{PROG}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
