"""Whole-state checkpoints: msgpack files, written atomically, with a format version.

The state is saved as its flat list of leaves plus their tree paths, shapes and dtypes; restoring
needs a template state of the same configuration and refuses any mismatch with a clear message.
A kill at any moment leaves either the old or the new file, never a torn one
(temp file, fsync, `os.replace`, fsync of the directory). Arrays are streamed to the file, not packed
into one blob first, so a save holds no second copy of the state.

A run's checkpoint directory (`Checkpointer` writes it, off the training path):
  latest.ckpt            the newest training state; since the replay buffer moved out, without it
  replay-<steps>.ckpt    the replay buffer of the newest save that held one (`latest.ckpt`'s meta names it);
                         the buffer is written every `buffer_every`-th save and at the last
  best.ckpt              the state (no buffer) at the best evaluation so far
  step-<steps>.ckpt      with keep > 1: the newest `keep` saves (hard links, no buffer)
Old runs' `latest.ckpt` that hold the buffer themselves (meta `has_buffer`) still load.
"""

from __future__ import annotations

import os
import struct
import tempfile
import threading
from typing import Any

import jax
import msgpack
import numpy as np

FORMAT_VERSION = 2  # 2: every state has the member axis, a single run's too (of size 1)
READS = (1, 2)  # version 1: a single run's state had no member axis; it is added on restoring
LATEST = "latest.ckpt"
BEST = "best.ckpt"
REPLAY_PREFIX, HISTORY_PREFIX, SUFFIX = "replay-", "step-", ".ckpt"
WHICH_HELP = "latest (default), best (the best mean evaluation) or step-N (env step N, kept by --keep-checkpoints)"


def file_name(which: str) -> str:
    """The file of checkpoint `which` (`latest`, `best` or `step-N`, N env steps); ValueError naming what is
    allowed."""
    if which in ("latest", "best"):
        return LATEST if which == "latest" else BEST
    steps = which.removeprefix(HISTORY_PREFIX)
    if which.startswith(HISTORY_PREFIX) and steps.isdigit():
        return f"{HISTORY_PREFIX}{int(steps):012d}{SUFFIX}"
    raise ValueError(f"--checkpoint {which!r}: allowed: {WHICH_HELP}")


def available(directory: str) -> list[str]:
    """The `which` names of the checkpoints in `directory` (latest, best, step-N), the history oldest first."""
    names = [w for w, f in (("latest", LATEST), ("best", BEST)) if os.path.exists(os.path.join(directory, f))]
    if os.path.isdir(directory):
        names += [f"{HISTORY_PREFIX}{int(n[len(HISTORY_PREFIX) : -len(SUFFIX)])}" for n in
                  _names(directory, HISTORY_PREFIX)]  # fmt: skip
    return names


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why."""


def _bin_header(n: int) -> bytes:
    """msgpack's bin header for n bytes (the smallest form, as msgpack.packb writes it)."""
    if n < 1 << 8:
        return b"\xc4" + struct.pack(">B", n)
    if n < 1 << 16:
        return b"\xc5" + struct.pack(">H", n)
    if n < 1 << 32:
        return b"\xc6" + struct.pack(">I", n)
    raise CheckpointError(f"an array of {n} bytes is over msgpack's 4 GiB limit on one array")


def _write_payload(f, meta: dict[str, Any], paths: list[str], leaves: list[np.ndarray]) -> None:
    """The msgpack map {format_version, meta, paths, leaves: [{dtype, shape, data}]}, the arrays streamed."""
    pack = msgpack.Packer(use_bin_type=True)
    f.write(pack.pack_map_header(4))
    for key, value in (("format_version", FORMAT_VERSION), ("meta", meta), ("paths", paths)):
        f.write(pack.pack(key) + pack.pack(value))
    f.write(pack.pack("leaves") + pack.pack_array_header(len(leaves)))
    for x in leaves:
        raw = np.ascontiguousarray(x).reshape(-1).view(np.uint8)
        f.write(pack.pack_map_header(3) + pack.pack("dtype") + pack.pack(str(x.dtype)))
        f.write(pack.pack("shape") + pack.pack(list(x.shape)) + pack.pack("data") + _bin_header(raw.nbytes))
        f.write(memoryview(raw))


def snapshot(state: Any, copy: bool = False) -> Any:
    """`state` on the host as numpy arrays; `copy`: never views of device memory (a CPU device's arrays can be
    zero-copy views, which a donated buffer would overwrite while a background write reads them)."""
    return jax.tree.map(lambda x: np.array(x, copy=True) if copy else np.asarray(x), jax.device_get(state))


def save(directory: str, state: Any, meta: dict[str, Any], name: str = LATEST) -> str:
    """Write `state` (any pytree of arrays) and `meta` (JSON-like) to directory/name, atomically."""
    os.makedirs(directory, exist_ok=True)
    paths_leaves = jax.tree_util.tree_leaves_with_path(state)
    leaves = [np.asarray(jax.device_get(x)) for _, x in paths_leaves]
    paths = [jax.tree_util.keystr(p) for p, _ in paths_leaves]
    target = os.path.join(directory, name)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=directory)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            _write_payload(f, meta, paths, leaves)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return target


def _fsync_dir(directory: str) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temps(directory: str) -> list[str]:
    """Delete temp files left by a writer killed mid-save (never read by loaders); returns their names.

    Call only where no other process saves into `directory` (a run directory has one writer)."""
    if not os.path.isdir(directory):
        return []
    stale = [n for n in os.listdir(directory) if n.startswith(".tmp-") and n.endswith(".ckpt")]
    for name in stale:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
    return stale


def load_meta(directory: str, name: str = LATEST) -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload, meta) of directory/name; raises CheckpointError if absent or unreadable."""
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with open(path, "rb") as f:
            payload = msgpack.unpackb(f.read(), raw=False)
    except Exception as e:  # truncated or not msgpack
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__})") from None
    got = payload.get("format_version") if isinstance(payload, dict) else None
    if type(got) is not int or got not in READS:
        reads = " and ".join(map(str, READS))
        raise CheckpointError(f"checkpoint {path} has format version {got!r}; this mjx_tecrl reads {reads}")
    return payload, payload.get("meta", {})


def _is_hyperparameter(path: str) -> bool:
    return ".hyperparams." in path


def restore(
    directory: str, template: Any, payload: dict[str, Any] | None = None, name: str = LATEST
) -> tuple[Any, dict[str, Any]]:
    """Load directory/name into the structure of `template`; returns (state, meta).

    `payload`: what `load_meta(directory, name)` already returned, so the file is not read twice.
    """
    if payload is None:
        payload, _ = load_meta(directory, name)
    meta = payload.get("meta", {})
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    saved = dict(zip(payload["paths"], payload["leaves"], strict=True))
    wanted = [jax.tree_util.keystr(path) for path, _ in paths_leaves]
    # A traced hyperparameter added since the checkpoint was written takes the template's value (the run's config):
    # the checkpoint's hyperparameters are its config's, which the caller built the template from. One removed
    # since (action_dim, now static) is dropped.
    added = [p for p in wanted if p not in saved and _is_hyperparameter(p)]
    wanted_set = set(wanted)
    removed = [p for p in saved if p not in wanted_set and _is_hyperparameter(p)]
    for p in removed:
        del saved[p]
    if len(saved) + len(added) != len(wanted):
        raise CheckpointError(
            f"checkpoint holds {len(saved)} arrays but this configuration has {len(wanted)}: "
            "it was written by a different env, algorithm or network size"
        )
    leaves = []
    for (_, ref), key in zip(paths_leaves, wanted, strict=True):
        if key in added:  # a template from jax.eval_shape has no values: zeros (its reader takes the config's)
            concrete = isinstance(ref, (np.ndarray, jax.Array))
            leaves.append(np.asarray(ref) if concrete else np.zeros(ref.shape, ref.dtype))
            continue
        if key not in saved:
            other = next(p for p in saved if p not in wanted)
            raise CheckpointError(
                f"checkpoint array {other} has no place in this configuration, which has {key} instead: "
                "the state structure differs (different algorithm or version)"
            )
        rec = saved[key]
        shape, dtype = tuple(rec["shape"]), np.dtype(rec["dtype"])
        data = np.frombuffer(rec["data"], dtype=dtype).reshape(shape)
        if payload["format_version"] == 1 and tuple(ref.shape) == (1, *shape):  # a version-1 single run's
            shape, data = (1, *shape), data[None]
        if shape != tuple(ref.shape) or dtype != np.dtype(ref.dtype):
            raise CheckpointError(
                f"checkpoint array {key} has shape {shape} {dtype}, this configuration expects "
                f"{tuple(ref.shape)} {ref.dtype} at {key}: different env or sizes"
            )
        leaves.append(data)
    return jax.tree_util.tree_unflatten(treedef, leaves), meta


def restore_run(directory: str, template: Any, name: str = LATEST) -> tuple[Any, dict[str, Any], int | None]:
    """A training state (a `TrainState`, whose `.replay` is the buffer) from directory/name and its buffer.

    Returns (state, meta, replay_steps): the buffer comes from the replay file the checkpoint names, or from
    the checkpoint itself (the layout before replay files); replay_steps is the env step it was saved at,
    None when no buffer was saved (the state then keeps `template.replay`)."""
    payload, meta = load_meta(directory, name)
    if meta.get("has_buffer", True):  # the buffer inside the checkpoint
        state, meta = restore(directory, template, payload, name)
        return state, meta, int(meta.get("env_steps", 0))
    state, meta = restore(directory, template.replace(replay=None), payload, name)
    replay = meta.get("replay")
    if not replay:
        return state.replace(replay=template.replay), meta, None
    buffer, _ = restore(directory, template.replay, name=replay["file"])
    return state.replace(replay=buffer), meta, int(replay["env_steps"])


class CheckpointWriteError(RuntimeError):
    """A checkpoint write that failed (a full disk, ...); the message names the directory and what is intact."""


class Checkpointer:
    """Writes a run's checkpoint directory (the layout above) off the training path.

    `save` takes a host snapshot (`snapshot(..., copy=True)` where arrays may be views of device memory) and
    returns while one background thread writes it; at most one save is in flight (the next waits for it).
    A failed write is raised, as CheckpointWriteError, by the next `save` or by `wait`.
    keep: the newest saves kept as step-<steps>.ckpt besides latest.ckpt (1: none); buffer_every: the buffer
    goes into every buffer_every-th save (and the first and the last).
    """

    def __init__(self, directory: str, keep: int = 1, buffer_every: int = 1, background: bool = True):
        self.directory, self.keep, self.buffer_every, self.background = directory, keep, buffer_every, background
        self.saved_steps: int | None = None  # env steps of the newest latest.ckpt written (or found)
        self._replay: dict[str, Any] | None = None  # {"file", "env_steps"} of the newest replay file
        self._since_buffer = 0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def recover(self) -> list[str]:
        """On resume: drop what a killed writer left (temp files, a replay file that latest.ckpt does not
        name) and continue its bookkeeping; returns the removed names."""
        removed = remove_stale_temps(self.directory)
        try:
            _, meta = load_meta(self.directory)
        except CheckpointError:
            return removed
        self.saved_steps = int(meta.get("env_steps", 0))
        self._replay = meta.get("replay") or None
        keep = self._replay["file"] if self._replay else None
        for name in _names(self.directory, REPLAY_PREFIX):
            if name != keep:
                os.unlink(os.path.join(self.directory, name))
                removed.append(name)
        history = f"{HISTORY_PREFIX}{self.saved_steps:012d}{SUFFIX}"
        if self.keep > 1 and not os.path.exists(os.path.join(self.directory, history)):
            _link(self.directory, LATEST, history)  # killed between latest.ckpt and its link
        return removed

    def save(
        self,
        state: Any,
        meta: dict[str, Any],
        *,
        regular: bool = True,
        best: bool = False,
        final: bool = False,
        with_buffer: bool = True,
    ) -> None:
        """Write a host `state` (a TrainState) and `meta`: as latest.ckpt when `regular`, as best.ckpt when
        `best`. `final`: the run's last save (it holds the buffer); `with_buffer` False: never the buffer."""
        self._raise_failed()
        self.wait()
        steps = int(meta["env_steps"])
        buffer = None
        if regular and with_buffer and state.replay is not None:
            due = self._replay is None or final or self._since_buffer + 1 >= self.buffer_every
            self._since_buffer = 0 if due else self._since_buffer + 1
            buffer = state.replay if due else None
        body = state.replace(replay=None)
        job = lambda: self._write(body, buffer, meta, steps, regular, best)  # noqa: E731
        if not self.background:
            return job()
        self._error = None
        self._thread = threading.Thread(target=self._guarded, args=(job,), name="checkpoint-writer")
        self._thread.start()

    def wait(self) -> None:
        """Block until the write in flight is done; raises CheckpointWriteError if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._raise_failed()

    def join(self) -> None:
        """Block until the write in flight is done, whatever its outcome (a failure is dropped)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._error = None

    def _guarded(self, job) -> None:
        try:
            job()
        except BaseException as e:  # raised on the training thread by the next save or wait
            self._error = e

    def _raise_failed(self) -> None:
        if self._error is None:
            return
        e, self._error = self._error, None
        intact = (f"latest.ckpt (env step {self.saved_steps}) is intact" if self.saved_steps is not None
                  else "no checkpoint was written before it")  # fmt: skip
        reason = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
        raise CheckpointWriteError(f"writing a checkpoint in {self.directory} failed ({reason}); {intact}") from e

    def _write(self, body, buffer, meta, steps: int, regular: bool, best: bool) -> None:
        d = self.directory
        if not regular:
            save(d, body, {**meta, "has_buffer": False, "replay": None}, BEST)
            return
        if buffer is not None:
            name = f"{REPLAY_PREFIX}{steps:012d}{SUFFIX}"
            save(d, buffer, {"env_steps": steps}, name)
            replay = {"file": name, "env_steps": steps}
        else:
            replay = self._replay
        save(d, body, {**meta, "has_buffer": False, "replay": replay}, LATEST)
        self._replay, self.saved_steps = replay, steps
        for name in _names(d, REPLAY_PREFIX):  # the buffers latest.ckpt no longer names
            if replay is None or name != replay["file"]:
                os.unlink(os.path.join(d, name))
        if best:
            _link(d, LATEST, BEST)
        if self.keep > 1:
            _link(d, LATEST, f"{HISTORY_PREFIX}{steps:012d}{SUFFIX}")
            for name in _names(d, HISTORY_PREFIX)[: -self.keep]:
                os.unlink(os.path.join(d, name))


def _names(directory: str, prefix: str) -> list[str]:
    """The files of `directory` named prefix...SUFFIX, oldest first (the env steps are zero-padded)."""
    return sorted(n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(SUFFIX))


def _link(directory: str, source: str, name: str) -> None:
    """directory/name becomes the file directory/source is now (a hard link; a copy where links fail), atomically."""
    import shutil

    tmp = os.path.join(directory, f".tmp-link-{name}")
    if os.path.exists(tmp):
        os.unlink(tmp)
    try:
        os.link(os.path.join(directory, source), tmp)
    except OSError:
        shutil.copyfile(os.path.join(directory, source), tmp)
    os.replace(tmp, os.path.join(directory, name))
    _fsync_dir(directory)
