"""Whole-state checkpoints: one msgpack file, written atomically, with a format version.

The state is saved as its flat list of leaves plus their tree paths, shapes and dtypes; restoring
needs a template state of the same configuration and refuses any mismatch with a clear message.
A kill at any moment leaves either the old or the new `latest.ckpt`, never a torn one
(temp file, fsync, `os.replace`, fsync of the directory).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import jax
import msgpack
import numpy as np

FORMAT_VERSION = 1
LATEST = "latest.ckpt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why."""


def _encode(leaves: list[np.ndarray]) -> list[dict[str, Any]]:
    return [{"dtype": str(x.dtype), "shape": list(x.shape), "data": x.tobytes()} for x in leaves]


def save(directory: str, state: Any, meta: dict[str, Any]) -> str:
    """Write `state` (any pytree of arrays) and `meta` (JSON-like) to directory/latest.ckpt."""
    os.makedirs(directory, exist_ok=True)
    paths_leaves = jax.tree_util.tree_leaves_with_path(state)
    leaves = [np.asarray(jax.device_get(x)) for _, x in paths_leaves]
    payload = {
        "format_version": FORMAT_VERSION,
        "meta": meta,
        "paths": [jax.tree_util.keystr(p) for p, _ in paths_leaves],
        "leaves": _encode(leaves),
    }
    blob = msgpack.packb(payload, use_bin_type=True)
    target = os.path.join(directory, LATEST)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".ckpt", dir=directory)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


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


def load_meta(directory: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload, meta) of directory/latest.ckpt; raises CheckpointError if absent or unreadable."""
    path = os.path.join(directory, LATEST)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with open(path, "rb") as f:
            payload = msgpack.unpackb(f.read(), raw=False)
    except Exception as e:  # truncated or not msgpack
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        got = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(f"checkpoint {path} has format version {got!r}; this mjx_tecrl reads {FORMAT_VERSION}")
    return payload, payload.get("meta", {})


def _is_hyperparameter(path: str) -> bool:
    return ".hyperparams." in path


def restore(directory: str, template: Any, payload: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Load directory/latest.ckpt into the structure of `template`; returns (state, meta).

    `payload`: what `load_meta(directory)` already returned, so the file is not read twice.
    """
    if payload is None:
        payload, _ = load_meta(directory)
    meta = payload.get("meta", {})
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    saved = dict(zip(payload["paths"], payload["leaves"], strict=True))
    wanted = [jax.tree_util.keystr(path) for path, _ in paths_leaves]
    # A traced hyperparameter added since the checkpoint was written takes the template's value (the run's config):
    # the checkpoint's hyperparameters are its config's, which the caller built the template from.
    added = [p for p in wanted if p not in saved and _is_hyperparameter(p)]
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
        if shape != tuple(ref.shape) or dtype != np.dtype(ref.dtype):
            raise CheckpointError(
                f"checkpoint array {key} has shape {shape} {dtype}, this configuration expects "
                f"{tuple(ref.shape)} {ref.dtype} at {key}: different env or sizes"
            )
        leaves.append(np.frombuffer(rec["data"], dtype=dtype).reshape(shape))
    return jax.tree_util.tree_unflatten(treedef, leaves), meta
