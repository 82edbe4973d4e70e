"""Against the PyTorch libraries: keras_hyperbolic beside memcnn, iunets and revlib, same networks.

Each row is one network built in keras_hyperbolic and in one peer, from the
same weights where the architecture allows (`peer_networks.py` says how each
pair is matched and what differs), trained with plain SGD on the loss
`mean(y**2)`. Four columns per row, each measured in its own process (so
allocators, traced functions and thread pools do not mix): ours
memory-efficient (`ReversibleSequence`'s engine), the peer with its memory
saving (memcnn's `InvertibleModuleWrapper`, revlib's
`MemoryModes.autograd_function`, iunets' default), ours with
`memory_efficient=False` and the peer with its saving off (plain autograd:
`disable=True`, `MemoryModes.no_savings`, `disable_custom_gradient=True`).

- Time: median over `--repeats` training steps (forward, loss, gradients of
  the input and the weights, SGD update) after `--warmup` steps; TensorFlow
  runs the step as one `tf.function`. Both frameworks use `--threads`
  intra-op threads and one inter-op thread (ops one after another).
- Activation memory: the growth of the peak of live tensors during a
  gradients step (loss and all gradients, no update) from the smaller input
  to one with the last spatial axis doubled (the method of
  `paper_memory.py`): weights and weight gradients are the same at both sizes
  and cancel, so the growth is the activation memory at the smaller input.
  TensorFlow: `keras_hyperbolic.profiling.live_tensor_peak` (the sizes the ops
  requested, from TensorFlow's profiler trace; its oneDNN allocator leaves
  requests under 256 KiB out of the trace), the median over
  `--memory-samples` separately traced graphs, each traced once for both
  sizes (the last spatial axis left unknown) so that both peaks come from one
  op order: the order, and with it the peak, can differ from one graph to the
  next (measured: 4 to 6 state-sized tensors for the same stack). torch: the allocation and
  free events of `torch.profiler` with `profile_memory=True` (torch's CPU
  allocator keeps no peak statistics; the order is the same every call),
  counted the same way, requests under 256 KiB left out too so that both
  count the same tensors (the count with them is kept in the JSON). Both
  steps make their own copy of the input inside what is measured (memcnn
  frees its input's storage and rebuilds it; the profiler cannot see the
  free of a block allocated before it started). Neither is the process's RSS.

The peers are not dependencies of the package: `pip install -e ".[peers]"`
(torch, memcnn, iunets, revlib; the CPU build of torch is enough). A peer that
is not installed is skipped with one line.

Run on otherwise idle cores: with the cores shared, torch's OpenMP threads
slowed down up to 10x here (measured), TensorFlow's far less.

Run:  python benchmarks/peers.py            (the table; 16 minutes on 2 idle Xeon cores)
      python benchmarks/peers.py --quick    (small depths, a smoke test, about 15 minutes)
      python benchmarks/peers.py --peers memcnn --kinds affine --ranks 3 --depths 32 --rounds 5
                                            (one row in five alternated turns, 11 minutes)
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# oneDNN on before TensorFlow is imported (its allocator statistics and trace need it).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
INSTALL = 'pip install -e ".[peers]"'
PEER_PACKAGES = {"memcnn": "memcnn", "revlib": "revlib", "iunets": "iunets"}
#: TensorFlow's oneDNN allocator serves requests below this many bytes untraced.
UNTRACED_BYTES = 256 * 1024
LEARNING_RATE = 1e-5
SHAPES = {2: (4, 64, 64, 32), 3: (2, 16, 16, 16, 32)}
IUNET_SHAPE = (2, 32, 32, 32, 16)


#: The rows' network kinds: memcnn's two coupling stacks, revlib's sequence, iunets' iUNet.
KINDS = ("additive", "affine", "revlib", "iunet")


def rows(quick, ranks=(2, 3), depths=None):
    """The configurations: (peer, spec) pairs; memcnn's stacks in the spatial `ranks`."""
    depths = depths or ((2, 4) if quick else (8, 32))
    out = []
    for kind in ("additive", "affine"):
        for rank in ranks:
            out += [("memcnn", {"kind": kind, "rank": rank, "depth": d, "shape": SHAPES[rank]})
                    for d in depths]
    out += [("revlib", {"kind": "revlib", "rank": 2, "depth": d, "shape": SHAPES[2]}) for d in depths]
    blocks, levels = (1, (2, 3)) if quick else (2, (2, 4))
    out += [("iunets", {"kind": "iunet", "rank": 3, "depth": blocks, "levels": n,
                        "shape": IUNET_SHAPE}) for n in levels]
    return out


def label(peer, spec):
    if spec["kind"] == "iunet":
        return (f"{peer}: iUNet {spec['rank']}D, {spec['levels']} levels, "
                f"{spec['depth']} blocks per level and side")
    name = "affine" if spec["kind"] == "affine" else "additive"
    return f"{peer}: {name} {spec['rank']}D, depth {spec['depth']}"


def doubled(shape):
    return tuple(shape[:-2]) + (2 * shape[-2], shape[-1])


# === Workers (one configuration each) ===


def _input(shape):
    import numpy as np

    return np.random.default_rng(1).standard_normal(shape).astype("float32")


def ours_worker(job):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(job["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import peer_networks
    from keras_hyperbolic.profiling import live_tensor_peak, measure_step

    spec = job["spec"]
    keras.utils.set_random_seed(0)
    weights = None if spec["kind"] == "iunet" else peer_networks.coupling_weights(spec)
    network = peer_networks.keras_network(spec, job["saving"], weights)
    variables = list(network.trainable_variables)
    optimizer = keras.optimizers.SGD(LEARNING_RATE)
    optimizer.build(variables)

    def loss_and_gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.square(network(x, training=True)))
        return loss, tape.gradient(loss, [x] + variables)

    # One graph for both input sizes (the last spatial axis unknown), so that both peaks
    # come from the same op order.
    shape = list(spec["shape"])
    signature = [tf.TensorSpec(shape[:-2] + [None, shape[-1]], tf.float32)]

    def new_gradients_step():
        @tf.function(input_signature=signature)
        def gradients_step(x):
            # The step's own copy of the input, as torch's (memcnn frees and rebuilds its input).
            return loss_and_gradients(tf.raw_ops.DeepCopy(x=x))

        return gradients_step

    @tf.function
    def training_step(x):
        loss, gradients = loss_and_gradients(x)
        optimizer.apply(gradients[1:], variables)
        return loss

    x = tf.constant(_input(spec["shape"]))
    timed = measure_step(lambda: training_step(x), repeats=job["repeats"], warmup=job["warmup"])
    inputs = {"small": tf.constant(_input(spec["shape"])),
              "large": tf.constant(_input(doubled(spec["shape"])))}
    peaks = {"small": [], "large": []}
    # The op order, and with it the peak, can differ from one traced graph to the next
    # (measured: 4 to 6 states for the same stack): the median over several graphs.
    for _ in range(job["memory_samples"]):
        gradients_step = new_gradients_step()
        for size, x in inputs.items():
            gradients_step(x)  # warm-up at this size
            peaks[size].append(live_tensor_peak(lambda: gradients_step(x)))
    growth = [large - small for small, large in zip(peaks["small"], peaks["large"])]
    return {"seconds": timed["step_seconds"], "all_seconds": timed["step_seconds_all"],
            "parameters": int(sum(v.numpy().size for v in variables)),
            "peak_small": statistics.median(peaks["small"]),
            "peak_large": statistics.median(peaks["large"]),
            "activation_bytes": statistics.median(growth), "peak_samples": peaks}


def torch_live_peaks(step):
    """Peaks of the bytes `step()` holds: (requests >= 256 KiB only, all requests).

    From the allocation and free events of `torch.profiler` (CPU,
    `profile_memory=True`), in time order, relative to the bytes in use
    before the call.
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    changes, nodes = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while nodes:
        node = nodes.pop()
        if node.typed[0] == _EventType.Allocation:
            changes.append((node.start_time_ns, node.typed[1].alloc_size))
        nodes.extend(node.children)
    peaks = []
    for least in (UNTRACED_BYTES, 0):
        live = peak = 0
        for _, change in sorted(changes):
            if abs(change) >= least:
                live += change
                peak = max(peak, live)
        peaks.append(peak)
    return tuple(peaks)


def peer_worker(job):
    import torch

    torch.set_num_threads(job["threads"])
    torch.set_num_interop_threads(1)
    import peer_networks

    spec = job["spec"]
    torch.manual_seed(0)
    weights = None if spec["kind"] == "iunet" else peer_networks.coupling_weights(spec)
    network = peer_networks.torch_network(spec, job["saving"], weights)
    parameters = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=LEARNING_RATE)

    def batch(shape):
        return torch.from_numpy(peer_networks.to_torch_layout(_input(shape)).copy())

    def fresh(x):
        # memcnn frees its input's storage: a new copy per step.
        return x.clone().requires_grad_(True)  # revlib's Function needs an input that requires grad

    def gradients_step(x):
        network(x).square().mean().backward()

    times, x0 = [], batch(spec["shape"])
    for index in range(job["warmup"] + job["repeats"]):
        x = fresh(x0)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        gradients_step(x)
        optimizer.step()
        if index >= job["warmup"]:
            times.append(time.perf_counter() - start)
    peaks = {}
    for size, shape in (("small", spec["shape"]), ("large", doubled(spec["shape"]))):
        x0 = batch(shape)
        gradients_step(fresh(x0))  # warm-up at this size
        optimizer.zero_grad(set_to_none=True)
        # The copy is made inside what is measured: the profiler does not see the frees of
        # blocks allocated before it started (memcnn frees its input's storage in the forward).
        peaks[size] = torch_live_peaks(lambda: gradients_step(fresh(x0)))
    return {"seconds": statistics.median(times), "all_seconds": times,
            "parameters": int(sum(p.numel() for p in parameters)),
            "peak_small": peaks["small"][0], "peak_large": peaks["large"][0],
            "activation_bytes": peaks["large"][0] - peaks["small"][0],
            "activation_bytes_all_requests": peaks["large"][1] - peaks["small"][1]}


def worker(job):
    sys.path.insert(0, HERE)
    result = ours_worker(job) if job["side"] == "ours" else peer_worker(job)
    print(json.dumps({**job, **result}))


# === The run ===


def run_job(job, timeout=3600):
    """Runs one configuration in a fresh process; returns its result (the last JSON line)."""
    completed = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": str(job["threads"]), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"worker {job} failed (exit {completed.returncode}):\n"
                           f"{completed.stderr[-3000:]}")
    return json.loads(lines[-1])


def missing_peers():
    """Peers (or torch) that this Python cannot import, as {peer: missing package}."""
    if importlib.util.find_spec("torch") is None:
        return {peer: "torch" for peer in PEER_PACKAGES}
    return {peer: package for peer, package in PEER_PACKAGES.items()
            if importlib.util.find_spec(package) is None}


def environment():
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                   if line.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown"
    versions = {}
    for package in ("tensorflow", "keras", "torch", "memcnn", "iunets", "revlib"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "versions": versions}


COLUMNS = (("ours", True), ("peer", True), ("ours", False), ("peer", False))


def measure_row(peer, spec, args):
    """The four columns of one row, each in its own process; with `--rounds` N, N turns of them.

    Turns alternate the columns (ours, peer, ours plain, peer plain, ours, ...), so
    that a slow minute of a shared machine falls on all of them alike; a cell's
    time is then the median of its turns' medians (each turn's in `round_seconds`),
    its memory the first turn's (it repeats exactly from turn to turn).
    """
    turns = {column: [] for column in COLUMNS}
    for turn in range(args.rounds):
        for side, saving in COLUMNS:
            job = {"side": side, "saving": saving, "peer": peer, "spec": spec,
                   "threads": args.threads, "repeats": args.repeats, "warmup": args.warmup,
                   "memory_samples": args.memory_samples}
            result = run_job(job)
            turns[(side, saving)].append(result)
            samples = result.get("peak_samples")
            spread = "" if not samples else " (graphs: " + ", ".join(
                f"{(b - a) / 2**20:.1f}" for a, b in zip(samples["small"], samples["large"])) + ")"
            megabytes = result["activation_bytes"] / 2**20
            print(f"  {label(peer, spec)} | {side} {'saving' if saving else 'plain'}"
                  f"{f' (turn {turn + 1})' if args.rounds > 1 else ''}: "
                  f"{result['seconds']:.3f} s, {megabytes:.1f} MB{spread}, "
                  f"{result['parameters']:,} parameters", file=sys.stderr, flush=True)
    results = {}
    for column, done in turns.items():
        results[column] = {**done[0], "round_seconds": [r["seconds"] for r in done],
                           "seconds": statistics.median(r["seconds"] for r in done)}
    return results


def _cell(result):
    return f"{result['seconds']:.3f} s, {result['activation_bytes'] / 2**20:.1f} MB"


def _ratio(ours, peer):
    def divide(a, b):
        return f"{a / b:.2f}" if b > 0 else "n/a"

    return (f"{divide(ours['seconds'], peer['seconds'])}, "
            f"{divide(ours['activation_bytes'], peer['activation_bytes'])}")


def table(measured):
    lines = ["| configuration | input | parameters | ours, memory-efficient | peer, memory saving "
             "| ours / peer | ours, plain | peer, plain | ours / peer "
             "| ours mem-eff / ours plain (time) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for peer, spec, r in measured:
        ours_me, peer_me = r[("ours", True)], r[("peer", True)]
        ours_p, peer_p = r[("ours", False)], r[("peer", False)]
        ours_n, peer_n = ours_me["parameters"], peer_me["parameters"]
        parameters = f"{ours_n:,}" if ours_n == peer_n else f"{ours_n:,} (peer {peer_n:,})"
        lines.append(
            f"| {label(peer, spec)} | {'x'.join(map(str, spec['shape']))} | {parameters} "
            f"| {_cell(ours_me)} "
            f"| {_cell(peer_me)} | {_ratio(ours_me, peer_me)} | {_cell(ours_p)} | {_cell(peer_p)} "
            f"| {_ratio(ours_p, peer_p)} | {ours_me['seconds'] / ours_p['seconds']:.2f} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small depths, 2 repeats (smoke test)")
    parser.add_argument("--peers", nargs="+", choices=sorted(PEER_PACKAGES),
                        default=sorted(PEER_PACKAGES), help="the peers to compare with")
    parser.add_argument("--ranks", nargs="+", type=int, choices=(2, 3), default=[2, 3],
                        help="memcnn's coupling stacks in 2D, 3D or both")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of both frameworks")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 5; quick 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=1,
                        help="turns of each row's four processes, alternated "
                             "(time: the median of the turns)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                        help="the rows to run, by network kind")
    parser.add_argument("--depths", nargs="+", type=int, default=None,
                        help="the coupling stacks' depths (default 8 32; quick 2 4)")
    parser.add_argument("--memory-samples", type=int, default=3,
                        help="TensorFlow graphs traced for the memory (median of their growths)")
    parser.add_argument("--json", default="benchmark_peers.json", help="where to write the results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    if (args.threads < 1 or args.warmup < 0 or args.memory_samples < 1 or args.rounds < 1
            or (args.repeats is not None and args.repeats < 1)
            or (args.depths is not None and min(args.depths) < 1)):
        parser.error(f"--threads, --repeats, --rounds, --depths and --memory-samples must be >= 1 "
                     f"and --warmup >= 0 (got {args.threads}, {args.repeats}, {args.rounds}, "
                     f"{args.depths}, {args.memory_samples}, {args.warmup})")
    args.repeats = args.repeats or (2 if args.quick else 5)
    env = environment()
    print(f"CPU: {env['cpu']} ({env['cores']} logical CPUs); threads per framework: "
          f"{args.threads} intra-op, 1 inter-op; Python {env['python']}; "
          + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    missing = missing_peers()
    for peer in args.peers:
        if peer in missing:
            print(f"skipped {peer}: {missing[peer]} is not installed (install the peers with "
                  f"`{INSTALL}`)")
    chosen = [(p, s) for p, s in rows(args.quick, args.ranks, args.depths)
              if p in args.peers and p not in missing and s["kind"] in args.kinds]
    if not chosen:
        return
    measured = [(peer, spec, measure_row(peer, spec, args)) for peer, spec in chosen]
    turns = (f" in each of {args.rounds} alternated turns, the median of those"
             if args.rounds > 1 else "")
    print(f"\nOne training step (SGD), median of {args.repeats} after {args.warmup} warm-up steps"
          f"{turns}; "
          "activation memory = growth of the peak of live tensors (requests >= 256 KiB) from the "
          "input shown to one with its last spatial axis doubled. Each cell: time, memory; "
          "ratios ours / peer (below 1: ours is faster / smaller).")
    print("\n".join(table(measured)))
    if args.rounds > 1:
        print("\nOurs / peer, memory-efficient against memory saving, turn by turn:")
        for peer, spec, r in measured:
            ratios = [a / b for a, b in zip(r[("ours", True)]["round_seconds"],
                                            r[("peer", True)]["round_seconds"])]
            print(f"  {label(peer, spec)}: " + ", ".join(f"{q:.2f}" for q in ratios))
    with open(args.json, "w") as handle:
        json.dump({"environment": env, "repeats": args.repeats, "warmup": args.warmup,
                   "rounds": args.rounds,
                   "rows": [{"peer": p, "spec": s, "results": {f"{k[0]}_{'saving' if k[1] else 'plain'}": v
                                                               for k, v in r.items()}}
                            for p, s, r in measured]}, handle, indent=1)
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
