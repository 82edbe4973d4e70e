"""`fit_distributed`: a training loop for `tf.distribute` strategies, with resume.

`model.fit` works under `tf.distribute.MirroredStrategy` (one machine, several
devices) and is the first choice there. Under
`tf.distribute.MultiWorkerMirroredStrategy` Keras 3.15's `model.fit` fails
upstream (keras-team/keras issue 20585, "PerReplica ... unsupported type").
`fit_distributed` is the replacement: a custom loop that calls the model's own
`train_step` through `strategy.run` (so compiled losses and metrics, custom
`train_step`s such as `HyperbolicVAE`'s, mixed precision loss scaling and the
memory-efficient reversible engine all behave as in `fit`), drives ordinary
Keras callbacks (`on_train_*`, `on_epoch_*`, `on_train_batch_*` with logs,
`model.stop_training`), shows the Keras progress bar and writes
`tf.train.CheckpointManager` checkpoints it resumes from.

Resume is exact, at step granularity: a checkpoint holds the weights, the
optimizer state (iterations, moments, loss scale), every other model variable
(moving statistics, random generator states) and the position (epoch, step in
the epoch). On restart the loop restores the latest checkpoint and skips the
batches of the current epoch that were already trained on, so a run killed
with SIGKILL and started again ends with the weights of an uninterrupted run,
provided the data order is a function of the epoch only (pass
`dataset_fn(epoch)`, or a dataset without per-iteration reshuffling).
Keras's own `BackupAndRestore` resumes at epoch granularity only: it restores
the weights saved mid-epoch but replays the epoch from its first batch.

The pieces, one per module, for custom loops too: `ResumableCheckpoint`
(checkpoint.py: the chief keeps checkpoints, other workers write scratch
copies, every worker restores the chief's latest), `EpochIterator`
(epochs.py: each epoch's distributed batches from the resume point on),
`TrainFunction` (step.py: `train_step` under `strategy.run`, traced again
when Keras marks the trace stale: a recompile or
`model.make_train_function(force=True)`), and the loop (fit.py).

Running on a real cluster (MultiWorkerMirroredStrategy)
-------------------------------------------------------
Every host runs the same script; only `TF_CONFIG` differs, and it must be set
before TensorFlow starts (before the strategy is created)::

    # host 0 (the chief: writes the checkpoints that count, prints progress)
    export TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
                       "task": {"type": "worker", "index": 0}}'
    # host 1
    export TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
                       "task": {"type": "worker", "index": 1}}'

and in the script::

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = HyperbolicSegmenter(...)
        model.compile(optimizer="adam", loss=...)
    fit_distributed(model, dataset, epochs=10, strategy=strategy,
                    checkpoint_dir="/mnt/nfs/run1/ckpt")

`checkpoint_dir` must be on storage every host can reach: the chief writes
there, the other workers write throw-away copies (saving is a collective
operation every worker must join) and delete them, and on restart every
worker restores the chief's latest checkpoint. The
dataset passed is the *global* batch: the strategy splits it across all
replicas of all workers (auto-sharding by data; pass a `dataset_fn` to shard
by file yourself). When a worker dies, the others fail or block in their next
collective: the job (a cluster manager, or a shell loop) restarts every
worker, and each resumes from the latest checkpoint. Set
`tf.distribute.experimental.CommunicationOptions(timeout_seconds=...)` in the
strategy so survivors fail instead of waiting for ever.

Where TPUStrategy fits: the loop is the standard `strategy.run` loop, so it
runs under `tf.distribute.TPUStrategy` as well (create the strategy from a
`TPUClusterResolver`, build and compile inside its scope, and use
`drop_remainder=True` batches: TPUs need static shapes). TPUs require XLA; the
reversible engine compiles with `jit_compile=True` (tested on CPU), but this
package has not been run on a TPU. Checkpoints then must go to storage the TPU
workers can reach (e.g. a GCS bucket).
"""

from keras_hyperbolic.distribute.checkpoint import ResumableCheckpoint, worker_role  # noqa: F401
from keras_hyperbolic.distribute.epochs import EpochIterator  # noqa: F401
from keras_hyperbolic.distribute.fit import fit_distributed  # noqa: F401
from keras_hyperbolic.distribute.step import TrainFunction, build_for_training  # noqa: F401
