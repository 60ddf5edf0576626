"""Checkpoints: exact round trip, clear refusals, and atomic writes (a crash leaves the old file whole)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest
from flax import struct

from mjx_tecrl import checkpoint
from mjx_tecrl.checkpoint import LATEST, CheckpointError


@struct.dataclass
class _Record:
    params: dict
    step: jax.Array


def _state(seed: int = 0):
    rng = np.random.default_rng(seed)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, 3.4e38], np.float32)
    return {
        "record": _Record(
            params={"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.zeros((4,), jnp.bfloat16)},
            step=jnp.asarray(7, jnp.int32),
        ),
        "key": jax.random.PRNGKey(seed),  # uint32 [2]
        "list": [
            np.asarray(rng.normal(size=(2, 3, 4)), np.float64),
            np.asarray(rng.integers(-(2**62), 2**62, size=(5,)), np.int64),
            np.asarray(rng.random(6) > 0.5),
            np.asarray(rng.integers(-128, 127, size=(2, 2)), np.int8),
        ],
        "tuple": (special, np.asarray(rng.normal(size=(3,)), np.float16), np.zeros((3, 0, 2), np.float32)),
        "scalar": np.float32(rng.normal()),
    }


def _assert_identical(a, b) -> None:
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()  # bit for bit: NaN payloads and -0.0 included


def test_round_trip_is_exact(tmp_path):
    state = _state()
    meta = {
        "env_steps": 123456789012,
        "best_eval_return": -float("inf"),
        "wall_time_s": 1.5,
        "has_buffer": True,
        "config": {"hidden_sizes": [16, 16], "env": "inverted_pendulum", "out": ""},
    }
    path = checkpoint.save(str(tmp_path), state, meta)
    assert path == str(tmp_path / LATEST)
    assert sorted(os.listdir(tmp_path)) == [LATEST]

    template = jax.tree.map(lambda x: np.zeros_like(np.asarray(x)), state)
    restored, restored_meta = checkpoint.restore(str(tmp_path), template)
    _assert_identical(restored, state)
    assert isinstance(restored["record"], _Record)
    assert restored_meta == meta
    assert checkpoint.load_meta(str(tmp_path))[1] == meta

    # A second save replaces the first.
    state2 = _state(seed=1)
    checkpoint.save(str(tmp_path), state2, {"gen": 2})
    restored2, meta2 = checkpoint.restore(str(tmp_path), template)
    _assert_identical(restored2, state2)
    assert meta2 == {"gen": 2}
    assert sorted(os.listdir(tmp_path)) == [LATEST]


def test_restored_values_are_usable_by_jax(tmp_path):
    state = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones((3,), jnp.int32)}
    checkpoint.save(str(tmp_path), state, {})
    restored, _ = checkpoint.restore(str(tmp_path), state)
    out = jax.jit(lambda s: s["a"] @ s["b"].astype(jnp.float32))(restored)
    np.testing.assert_array_equal(out, np.array([3.0, 12.0], np.float32))


# --- refusals --------------------------------------------------------------------------------------------
def _saved(tmp_path, state=None, meta=None) -> tuple[str, bytes]:
    state = _state() if state is None else state
    checkpoint.save(str(tmp_path), state, meta or {"env_steps": 1})
    path = tmp_path / LATEST
    return str(path), path.read_bytes()


def _template():
    return jax.tree.map(lambda x: np.zeros_like(np.asarray(x)), _state())


def test_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        checkpoint.load_meta(str(tmp_path))
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        checkpoint.restore(str(tmp_path), _template())


@pytest.mark.parametrize("keep", [0.0, 0.5, "all but one byte", "one byte"])
def test_truncated_file_is_refused(tmp_path, keep):
    path, blob = _saved(tmp_path)
    n = {"all but one byte": len(blob) - 1, "one byte": 1}.get(keep) if isinstance(keep, str) else int(len(blob) * keep)
    with open(path, "wb") as f:
        f.write(blob[:n])
    with pytest.raises(CheckpointError) as exc:
        checkpoint.restore(str(tmp_path), _template())
    assert "corrupt or truncated" in str(exc.value) and path in str(exc.value)


@pytest.mark.parametrize(
    "garbage",
    [b"this is not a checkpoint\n" * 40, np.random.default_rng(0).bytes(4096), b"\x00" * 1000],
    ids=["text", "random", "zeros"],
)
def test_garbage_file_is_refused(tmp_path, garbage):
    (tmp_path / LATEST).write_bytes(garbage)
    with pytest.raises(CheckpointError) as exc:
        checkpoint.restore(str(tmp_path), _template())
    assert "corrupt or truncated" in str(exc.value)


@pytest.mark.parametrize(
    "payload", [[1, 2, 3], "latest", {"meta": {}, "leaves": []}], ids=["list", "str", "no-version"]
)
def test_msgpack_that_is_not_a_checkpoint_is_refused(tmp_path, payload):
    (tmp_path / LATEST).write_bytes(msgpack.packb(payload, use_bin_type=True))
    with pytest.raises(CheckpointError, match="format version None"):
        checkpoint.restore(str(tmp_path), _template())


@pytest.mark.parametrize("version", [0, checkpoint.FORMAT_VERSION + 1, "1"])
def test_other_format_version_is_refused(tmp_path, version):
    path, blob = _saved(tmp_path)
    payload = msgpack.unpackb(blob, raw=False)
    payload["format_version"] = version
    with open(path, "wb") as f:
        f.write(msgpack.packb(payload, use_bin_type=True))
    with pytest.raises(CheckpointError) as exc:
        checkpoint.restore(str(tmp_path), _template())
    message = str(exc.value)
    assert f"format version {version!r}" in message and str(checkpoint.FORMAT_VERSION) in message


def _as_version(path, version: int) -> None:
    payload = msgpack.unpackb(open(path, "rb").read(), raw=False)
    payload["format_version"] = version
    with open(path, "wb") as f:
        f.write(msgpack.packb(payload, use_bin_type=True))


def test_a_version_1_single_run_gains_the_member_axis(tmp_path):
    """Version 1 saved a single run's state without the member axis every state has since (a population of one):
    it restores into today's template, each array with a leading axis of 1, bit for bit."""
    state = _state()
    checkpoint.save(str(tmp_path), state, {"env_steps": 5})
    _as_version(tmp_path / LATEST, 1)
    one_member = jax.tree.map(lambda x: np.asarray(x)[None], state)
    restored, meta = checkpoint.restore(str(tmp_path), one_member)
    _assert_identical(restored, one_member)
    assert meta == {"env_steps": 5}
    # a version-1 sweep had the member axis already: restored as saved, however many members
    checkpoint.save(str(tmp_path), one_member, {"env_steps": 5})
    _as_version(tmp_path / LATEST, 1)
    _assert_identical(checkpoint.restore(str(tmp_path), one_member)[0], one_member)
    # and version 2 is not reshaped: a state without the axis is a mismatch
    checkpoint.save(str(tmp_path), state, {"env_steps": 5})
    with pytest.raises(CheckpointError, match="has shape"):
        checkpoint.restore(str(tmp_path), one_member)


def test_state_with_more_or_fewer_arrays_is_refused(tmp_path):
    _saved(tmp_path)
    more = {**_template(), "extra": np.zeros((2,), np.float32)}
    with pytest.raises(CheckpointError, match=r"holds \d+ arrays but this configuration has \d+"):
        checkpoint.restore(str(tmp_path), more)
    fewer = {k: v for k, v in _template().items() if k != "scalar"}
    with pytest.raises(CheckpointError, match="arrays but this configuration has"):
        checkpoint.restore(str(tmp_path), fewer)


@struct.dataclass
class _WithHyperparams:
    w: jax.Array
    hyperparams: object


def test_a_hyperparameter_added_since_the_checkpoint_takes_the_templates_value(tmp_path):
    """A checkpoint from before a traced hyperparameter existed (e.g. weight_decay) still resumes: that leaf takes
    the value of the template, which the caller built from the run's config; every other leaf is the saved one.
    Only hyperparameters are filled in: any other missing array is refused (the test above)."""
    from mjx_tecrl.config import Config

    old_hp = {"gamma": jnp.asarray(0.5, jnp.float32)}
    checkpoint.save(str(tmp_path), _WithHyperparams(jnp.arange(3.0), Config(gamma=0.5).hyperparams()), {})
    path = tmp_path / LATEST
    payload = msgpack.unpackb(path.read_bytes(), raw=False)
    i = payload["paths"].index(".hyperparams.weight_decay")  # as if written before weight_decay existed
    del payload["paths"][i], payload["leaves"][i]
    path.write_bytes(msgpack.packb(payload, use_bin_type=True))

    template = _WithHyperparams(jnp.zeros(3), Config(weight_decay=0.25).hyperparams())
    restored, _ = checkpoint.restore(str(tmp_path), template)
    assert float(restored.hyperparams.weight_decay) == 0.25
    assert float(restored.hyperparams.gamma) == float(old_hp["gamma"])  # saved, not the template's 0.99
    np.testing.assert_array_equal(restored.w, [0.0, 1.0, 2.0])
    abstract, _ = checkpoint.restore(str(tmp_path), jax.eval_shape(lambda: template))  # policy loading's template
    assert float(abstract.hyperparams.weight_decay) == 0.0 and float(abstract.hyperparams.gamma) == 0.5


def test_a_hyperparameter_removed_since_the_checkpoint_is_dropped(tmp_path):
    """A checkpoint from when |A| was a traced hyperparameter (`.hyperparams.action_dim`) still loads: that saved
    leaf has no place in today's state and is dropped; an extra array that is not a hyperparameter is refused."""
    from mjx_tecrl.config import Config

    checkpoint.save(str(tmp_path), _WithHyperparams(jnp.arange(3.0), Config(gamma=0.5).hyperparams()), {})
    path = tmp_path / LATEST
    payload = msgpack.unpackb(path.read_bytes(), raw=False)
    extra = dict(payload["leaves"][payload["paths"].index(".hyperparams.gamma")])
    payload["paths"].append(".hyperparams.action_dim")  # as written before action_dim became static
    payload["leaves"].append(extra)
    path.write_bytes(msgpack.packb(payload, use_bin_type=True))

    template = _WithHyperparams(jnp.zeros(3), Config().hyperparams())
    restored, _ = checkpoint.restore(str(tmp_path), template)
    assert float(restored.hyperparams.gamma) == 0.5
    np.testing.assert_array_equal(restored.w, [0.0, 1.0, 2.0])

    payload["paths"][-1] = ".w_old"  # not a hyperparameter: the structure differs
    path.write_bytes(msgpack.packb(payload, use_bin_type=True))
    with pytest.raises(CheckpointError, match="arrays but this configuration has"):
        checkpoint.restore(str(tmp_path), template)


def test_state_with_another_shape_or_dtype_is_refused(tmp_path):
    _saved(tmp_path)
    template = _template()
    params = {**template["record"].params, "w": np.zeros((4, 3), np.float32)}
    wrong_shape = {**template, "record": template["record"].replace(params=params)}
    with pytest.raises(CheckpointError) as exc:
        checkpoint.restore(str(tmp_path), wrong_shape)
    assert "(3, 4)" in str(exc.value) and "(4, 3)" in str(exc.value)

    wrong_dtype = {**template, "scalar": np.zeros((), np.float64)}
    with pytest.raises(CheckpointError, match="float64"):
        checkpoint.restore(str(tmp_path), wrong_dtype)


def test_state_with_another_structure_but_same_shapes_is_refused(tmp_path):
    """Same number of arrays with the same shapes, under other names: restoring would silently mix them up.
    Arrays are matched by name, so the message names the one the checkpoint has and the one it lacks."""
    state = {"actor": np.ones((4, 4), np.float32), "critic": np.full((4, 4), 2.0, np.float32)}
    checkpoint.save(str(tmp_path), state, {})
    renamed = {"critic": np.zeros((4, 4), np.float32), "policy": np.zeros((4, 4), np.float32)}
    with pytest.raises(CheckpointError) as exc:
        checkpoint.restore(str(tmp_path), renamed)
    message = str(exc.value)
    assert "['actor']" in message and "['policy']" in message and "structure" in message


# --- atomic writes ------------------------------------------------------------------------------------
def test_crash_at_rename_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    path, blob = _saved(tmp_path, meta={"gen": 0})

    def crash(*args, **kwargs):
        raise OSError("simulated crash at rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        checkpoint.save(str(tmp_path), _state(seed=1), {"gen": 1})
    monkeypatch.undo()
    assert (tmp_path / LATEST).read_bytes() == blob
    assert os.listdir(tmp_path) == [LATEST]
    restored, meta = checkpoint.restore(str(tmp_path), _template())
    _assert_identical(restored, _state())
    assert meta == {"gen": 0}


def test_interrupt_mid_write_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    path, blob = _saved(tmp_path, meta={"gen": 0})
    written = []

    def interrupted_fsync(fd):  # the data is in the temp file but not yet durable, nor renamed
        written.append(os.fstat(fd).st_size)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(str(tmp_path), _state(seed=1), {"gen": 1})
    monkeypatch.undo()
    assert written and written[0] > 0  # the crash really came with a written temp file
    assert (tmp_path / LATEST).read_bytes() == blob
    assert os.listdir(tmp_path) == [LATEST]


_WRITER = r"""
import os, stat, sys, time
import numpy as np
from mjx_tecrl import checkpoint

directory, delay = sys.argv[1], float(sys.argv[2])
real_fsync = os.fsync

def slow_fsync(fd):  # a slow disk: the temp file lives longer before the rename
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        time.sleep(delay)
    real_fsync(fd)

os.fsync = slow_fsync
gen = 0
while True:
    state = {"w": np.full((2_000_000,), gen, np.float32), "n": np.full((500_000,), gen, np.int64)}
    checkpoint.save(directory, state, {"gen": gen})
    if gen == 0:
        print("ready", flush=True)
    gen += 1
"""


def test_sigkill_at_random_times_never_tears_latest(tmp_path):
    """10 writers save ~12 MB checkpoints in a loop; each is SIGKILLed at a random moment.

    latest.ckpt must always load, and be complete and self-consistent (every array holds the generation
    recorded in its meta); anything else left behind is a hidden temp file that loaders never read.
    """
    rand = random.Random(1234)
    trials = 10
    procs = []
    for i in range(trials):
        d = tmp_path / f"w{i}"
        d.mkdir()
        p = subprocess.Popen([sys.executable, "-c", _WRITER, str(d), "0.08"], stdout=subprocess.PIPE, text=True)
        procs.append((d, p))
    try:
        for _, p in procs:
            assert p.stdout.readline().strip() == "ready"
        for _, p in procs:
            time.sleep(rand.uniform(0.0, 0.3))
            p.send_signal(signal.SIGKILL)
        for _, p in procs:
            p.wait(timeout=60)
            assert p.returncode == -signal.SIGKILL
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    template = {"w": np.zeros((2_000_000,), np.float32), "n": np.zeros((500_000,), np.int64)}
    killed_mid_write = 0
    gens = []
    for d, _ in procs:
        state, meta = checkpoint.restore(str(d), template)
        gen = meta["gen"]
        gens.append(gen)
        assert np.all(state["w"] == gen) and np.all(state["n"] == gen), f"{d}: torn checkpoint"
        others = [n for n in os.listdir(d) if n != LATEST]
        assert len(others) <= 1, others  # at most the one save in flight
        for name in others:
            assert name.startswith(".tmp-"), name  # hidden and clearly a temp file, never a *.ckpt a glob finds
            killed_mid_write += 1
    assert killed_mid_write >= 1, "no kill landed inside a write; the test did not exercise the window"
    assert max(gens) >= 1

    # A later save in a directory with a leftover temp file works and is what loads.
    d = procs[0][0]
    checkpoint.save(str(d), {k: np.full_like(v, 99) for k, v in template.items()}, {"gen": 99})
    state, meta = checkpoint.restore(str(d), template)
    assert meta == {"gen": 99} and np.all(state["w"] == 99)


# --- the run's checkpoint directory (Checkpointer) ----------------------------------------------------------
def test_the_streamed_file_is_the_msgpack_payload_byte_for_byte(tmp_path):
    """save() streams the arrays; the file equals msgpack.packb of the payload (the format is unchanged)."""
    state, meta = _state(), {"env_steps": 3, "note": "x"}
    checkpoint.save(str(tmp_path), state, meta)
    paths_leaves = jax.tree_util.tree_leaves_with_path(state)
    leaves = [np.asarray(x) for _, x in paths_leaves]
    payload = {
        "format_version": checkpoint.FORMAT_VERSION,
        "meta": meta,
        "paths": [jax.tree_util.keystr(p) for p, _ in paths_leaves],
        "leaves": [{"dtype": str(x.dtype), "shape": list(x.shape), "data": x.tobytes()} for x in leaves],
    }
    assert (tmp_path / LATEST).read_bytes() == msgpack.packb(payload, use_bin_type=True)


@struct.dataclass
class _Train:  # the shape of a TrainState as the Checkpointer sees it: a learner and a replay buffer
    learner: dict
    replay: dict | None


def _train(gen: int) -> _Train:
    return _Train(learner={"w": np.full((3,), gen, np.float32)}, replay={"obs": np.full((5, 2), gen, np.float32)})


def _files(d) -> list[str]:
    return sorted(n for n in os.listdir(d) if not n.startswith(".tmp-"))


@pytest.mark.parametrize("background", [True, False])
def test_buffer_every_k_saves_and_the_resume_pairs_latest_with_its_buffer(tmp_path, background):
    saver = checkpoint.Checkpointer(str(tmp_path), buffer_every=3, background=background)
    template = _train(-1)
    buffers = []
    for gen in range(1, 8):
        saver.save(_train(gen), {"env_steps": gen * 10}, final=gen == 7)
        saver.wait()
        state, meta, replay_steps = checkpoint.restore_run(str(tmp_path), template)
        assert meta["env_steps"] == gen * 10 and np.all(state.learner["w"] == gen)
        buffers.append(replay_steps)
        assert np.all(state.replay["obs"] == replay_steps // 10)  # the buffer of the save that wrote it
        assert [n for n in _files(tmp_path) if n.startswith("replay-")] == [f"replay-{replay_steps:012d}.ckpt"]
    # the first save, every third after it, and the last (final) hold the buffer
    assert buffers == [10, 10, 10, 40, 40, 40, 70]


def test_keep_last_n_and_best_are_whole_checkpoints_without_the_buffer(tmp_path):
    saver = checkpoint.Checkpointer(str(tmp_path), keep=2)
    for gen in range(1, 5):
        saver.save(_train(gen), {"env_steps": gen}, best=gen == 2)
    saver.save(_train(9), {"env_steps": 9}, regular=False, best=True)  # a best evaluation between saves
    saver.wait()
    assert _files(tmp_path) == [checkpoint.BEST, LATEST, "replay-000000000004.ckpt",
                                "step-000000000003.ckpt", "step-000000000004.ckpt"]  # fmt: skip
    template = _train(-1).replace(replay=None)
    for name, gen in ((checkpoint.BEST, 9), ("step-000000000003.ckpt", 3), ("step-000000000004.ckpt", 4), (LATEST, 4)):
        state, meta = checkpoint.restore(str(tmp_path), template, name=name)
        assert np.all(state.learner["w"] == gen) and meta["env_steps"] == gen, name
    assert checkpoint.load_meta(str(tmp_path), checkpoint.BEST)[1]["replay"] is None


def test_save_returns_while_the_write_goes_on_in_the_background(tmp_path, monkeypatch):
    import threading

    release, started = threading.Event(), threading.Event()
    real_save = checkpoint.save

    def slow_save(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", slow_save)
    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(_train(1), {"env_steps": 1})  # returns although the write is blocked
    assert started.wait(30) and not (tmp_path / LATEST).exists()
    release.set()
    saver.wait()
    assert checkpoint.load_meta(str(tmp_path))[1]["env_steps"] == 1


def test_a_full_disk_keeps_the_previous_checkpoint_and_the_error_names_the_directory(tmp_path, monkeypatch):
    import errno

    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(_train(1), {"env_steps": 10})
    saver.wait()
    real_write = checkpoint._write_payload

    def fill_disk(f, *args):
        real_write(f, *args)  # the data goes out, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "_write_payload", fill_disk)
    saver.save(_train(2), {"env_steps": 20})
    with pytest.raises(checkpoint.CheckpointWriteError) as exc:
        saver.wait()
    assert str(exc.value) == (
        f"writing a checkpoint in {tmp_path} failed (No space left on device); latest.ckpt (env step 10) is intact"
    )
    monkeypatch.undo()
    state, meta, replay_steps = checkpoint.restore_run(str(tmp_path), _train(-1))
    assert meta["env_steps"] == replay_steps == 10 and np.all(state.replay["obs"] == 1)
    assert set(os.listdir(tmp_path)) == {"replay-000000000010.ckpt", LATEST}  # the failed temp file is gone


def test_recover_removes_a_replay_file_that_latest_does_not_name(tmp_path):
    """A writer killed between a new buffer and its latest.ckpt leaves that buffer: a resume drops it."""
    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(_train(1), {"env_steps": 10})
    saver.wait()
    checkpoint.save(str(tmp_path), _train(2).replay, {"env_steps": 20}, "replay-000000000020.ckpt")
    (tmp_path / ".tmp-abc.ckpt").write_bytes(b"torn")
    resumed = checkpoint.Checkpointer(str(tmp_path))
    assert sorted(resumed.recover()) == [".tmp-abc.ckpt", "replay-000000000020.ckpt"]
    assert _files(tmp_path) == [LATEST, "replay-000000000010.ckpt"] and resumed.saved_steps == 10
    resumed.save(_train(3), {"env_steps": 30})  # the bookkeeping goes on: buffer_every 1 writes the buffer
    resumed.wait()
    assert _files(tmp_path) == [LATEST, "replay-000000000030.ckpt"]
