"""Callbacks every training script of the package uses: backup/resume, logs, drift watch.

`standard_callbacks(output_dir)` is what the examples and the CLI pass to
`model.fit`, so a run killed at any moment (SIGKILL, pre-emption, out of
memory) and started again with the same command continues from its last
backup instead of from scratch.
"""

import os

import keras

from keras_hyperbolic.validation import check_positive_int, invalid


def standard_callbacks(
    output_dir,
    backup=True,
    backup_freq="epoch",
    csv_log=True,
    inversion_probe=None,
    inversion_every_n_steps=100,
    on_drift="fallback",
):
    """The callbacks for a resumable `model.fit` run writing into `output_dir`.

    - `keras.callbacks.BackupAndRestore` in `output_dir/backup` (with
      `double_checkpoint=True`, so a kill during a save falls back to the
      previous backup). At the start of `fit` it restores the last backup; it
      deletes the backup when training finishes.
    - `keras.callbacks.CSVLogger` appending to `output_dir/training_log.csv`.
    - With `inversion_probe` (a batch of model inputs): a
      `keras_hyperbolic.callbacks.InversionMonitor` on it.

    What resuming gives: with `backup_freq="epoch"` (default) a killed run
    restarts at the epoch it was in, from the weights and optimizer state at
    the end of the previous epoch, and ends with the same weights as an
    uninterrupted run provided the data order of an epoch does not depend on
    how many epochs this process has run: `fit(..., shuffle=False)`, or a
    `tf.data` pipeline shuffled with `reshuffle_each_iteration=False`. With an
    integer `backup_freq` Keras also backs up every that many batches, but it
    still restarts the epoch from its first batch (so batches before the
    backup are trained on twice): use it for very long epochs, where losing
    the work matters more than exact reproducibility. For exact mid-epoch
    resume, and for MultiWorkerMirroredStrategy, use
    `keras_hyperbolic.distribute.fit_distributed(checkpoint_dir=...)`.

    Args:
        output_dir: directory for the backup and the log (created if needed).
        backup: add `BackupAndRestore`.
        backup_freq: `"epoch"` or a number of batches (see above).
        csv_log: add a `CSVLogger`.
        inversion_probe: model inputs for an `InversionMonitor`, or None.
        inversion_every_n_steps: how often the monitor measures.
        on_drift: the monitor's action: "warn", "fallback" or "stop".

    Returns:
        A list of callbacks for `model.fit(..., callbacks=...)`.

    Example:
    >>> model.fit(x, y, epochs=20, shuffle=False,
    ...           callbacks=standard_callbacks("runs/video", inversion_probe=x[:4]))
    """
    if not isinstance(output_dir, (str, os.PathLike)) or not str(output_dir):
        raise invalid("output_dir", output_dir, "a directory path")
    if not isinstance(backup, bool):
        raise invalid("backup", backup, "True or False")
    if backup_freq != "epoch":
        backup_freq = check_positive_int(backup_freq, "backup_freq")
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    callbacks = []
    if backup:
        callbacks.append(
            keras.callbacks.BackupAndRestore(
                os.path.join(output_dir, "backup"),
                save_freq=backup_freq,
                double_checkpoint=True,
                delete_checkpoint=True,
            )
        )
    if csv_log:
        callbacks.append(
            keras.callbacks.CSVLogger(os.path.join(output_dir, "training_log.csv"), append=True)
        )
    if inversion_probe is not None:
        from keras_hyperbolic.callbacks import InversionMonitor

        callbacks.append(
            InversionMonitor(
                inversion_probe, every_n_steps=inversion_every_n_steps, on_drift=on_drift
            )
        )
    return callbacks
