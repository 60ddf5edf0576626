"""Ctrl-C before training begins: exit 130 at once with one line, even in the middle of an XLA compile.

Python runs a signal handler only when the interpreter regains control, so a SIGINT that arrives while XLA
compiles (C++, seconds to minutes) would wait for the compile to end and then raise KeyboardInterrupt with a
traceback. `until_training()` (train.py arms it first thing) makes the C-level handler write the signal to
a pipe (`signal.set_wakeup_fd`) that a watcher thread blocks on. Compiling and running XLA programs release
the GIL, so the watcher runs at once: it prints one line on stderr and ends the process with status 130
(`os._exit`, as abrupt as a kill). Nothing durable is mid-write before the first chunk: config.json and
sweep.json are written atomically, a resume only deletes a dead writer's temp file and rewrites metrics.csv
atomically, and checkpoints are written after chunks only. So ending the process then is as safe as the
SIGKILL that tests/test_kills.py sends at random moments, and the run directory stays resumable.

When the training loop starts, `StopFlag` takes over through `handover()`: from then on a Ctrl-C
saves a checkpoint after the current chunk.

No imports beyond the standard library, so train.py can arm it before importing JAX.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd program


class _Guard:
    def __init__(self):
        self.run_dir: str | None = None
        self._lock = threading.Lock()
        self._armed = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)  # set_wakeup_fd needs it; a full pipe just drops the byte
        self._old_handler = signal.signal(signal.SIGINT, lambda signum, frame: None)  # no KeyboardInterrupt
        self._old_fd = signal.set_wakeup_fd(self._write)
        self._armed = True
        threading.Thread(target=self._watch, name="mjx_tecrl-interrupt", daemon=True).start()

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:
                return
            with self._lock:
                if not self._armed or not data:
                    os.close(self._read)
                    return
                if signal.SIGINT in data:
                    os.write(2, (message(self.run_dir) + "\n").encode())
                    os._exit(EXIT_INTERRUPTED)

    def disarm(self, restore_handler: bool = True):
        """Stop watching; returns the SIGINT handler that arming replaced (restored unless told not to)."""
        with self._lock:
            if not self._armed:
                return self._old_handler
            self._armed = False
            signal.set_wakeup_fd(self._old_fd)
            os.close(self._write)  # the watcher reads end-of-file and leaves
        if restore_handler:
            signal.signal(signal.SIGINT, self._old_handler)
        return self._old_handler


_active: _Guard | None = None


def message(run_dir: str | None) -> str:
    """What the user is told: how to go on (a run directory holds a run once its config.json is written)."""
    if run_dir:  # set once the flags are parsed, when JAX (which rundir imports) is loaded: imported here
        from mjx_tecrl.rundir import holds_run

        if holds_run(run_dir):
            how = f"python train.py --resume {run_dir} continues"
            return f"train.py: interrupted before training began; nothing is lost: {how}"
    return "train.py: interrupted before training began; nothing was written"


@contextlib.contextmanager
def until_training() -> Iterator[None]:
    """Within this block, until `handover()`, a SIGINT ends the process at once with exit status 130.

    Must be entered in the main thread of a process that is only train.py (a notebook's kernel would die on
    an interrupt); elsewhere, or when already armed, it does nothing."""
    global _active
    if _active is not None or threading.current_thread() is not threading.main_thread():
        yield
        return
    guard = _active = _Guard()
    try:
        yield
    finally:
        if _active is guard:
            _active = None
        guard.disarm()  # does nothing after a handover


def set_run_dir(run_dir: str) -> None:
    """The run directory the message points `--resume` at (once it holds a config.json)."""
    if _active is not None:
        _active.run_dir = run_dir


def handover(installed_previous):
    """The training loop installed its own SIGINT handler, which replaced `installed_previous`: stop the guard
    and return the handler the loop should restore when it ends (the one from before the guard was armed)."""
    global _active
    if _active is None:
        return installed_previous
    guard, _active = _active, None
    return guard.disarm(restore_handler=False)


class StopFlag:
    """SIGINT sets a flag; the loop saves a checkpoint after the current chunk and exits cleanly."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.stop:  # a second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self.stop = True
            print("\ninterrupt: saving a checkpoint after this chunk (Ctrl-C again to abort)", flush=True)

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not in the main thread
            self._previous = None
        else:  # the guard of the compile (`until_training`) hands Ctrl-C over to this flag
            self._previous = handover(previous)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
