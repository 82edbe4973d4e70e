"""One writer per output directory: an OS lock held while a run builds `DIR.partial`.

`hold(path)` takes an exclusive `fcntl.flock` on the file `path + ".lock"`
(beside the directory it guards, so that the directory can be removed,
renamed or rebuilt while the lock is held) and writes the holder's process id
and command line into it. A second run asking for the same lock is refused at
once with `OutputLocked`, whose one-line message names the holder. The
operating system drops the lock when the holder exits, however it exits (a
SIGKILL included), so a killed run leaves a stale file that the next run
simply locks again: resuming needs no cleaning up. On a platform without
`fcntl` (Windows) nothing is locked.
"""

import contextlib
import json
import os
import shlex
import sys
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class OutputLocked(RuntimeError):
    """Another process holds the lock; the message names it (process id and command)."""


def _holder(handle):
    """`{"pid", "command", "started"}` written by the holder (it may still be writing it)."""
    for _ in range(20):
        handle.seek(0)
        text = handle.read()
        try:
            return json.loads(text)
        except ValueError:
            time.sleep(0.05)
    return {}


def _describe(holder):
    if not holder:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"process {holder.get('pid')} ({holder.get('command')}, started {started})"


def _acquire(lock_path, guarded):
    """An open file holding the lock on `lock_path`, or OutputLocked."""
    while True:
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(handle)
            handle.close()
            raise OutputLocked(f"{guarded} is being written by {_describe(holder)}: wait for it "
                               "to finish, or choose another --out") from None
        # The previous holder may have removed the file between our open and our lock: then
        # the lock is on a file nobody else will open; take the one at the path instead.
        try:
            same = os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()


@contextlib.contextmanager
def hold(path):
    """Holds the lock of `path` (a directory, existing or not) for the `with` block.

    Raises:
        OutputLocked: another process holds it; nothing is written then.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock_path = os.fspath(path) + ".lock"
    handle = _acquire(lock_path, os.fspath(path))
    try:
        handle.seek(0)
        handle.truncate()
        json.dump({"pid": os.getpid(), "command": shlex.join(sys.argv), "started": time.time()},
                  handle)
        handle.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(lock_path)  # while still locked: a waiting opener sees the inode change
        handle.close()
