"""What a checkpoint save costs the training: the time a run of chunks takes with one save in it, against none.

The state is the headline run's: a replay buffer of humanoid at 4096 envs (1M rows of 348-dim observations and
17-dim actions: 2.8 GB) and a learner; the "training" is a jitted chunk that donates the state, runs matmuls of a
learner's size for about `--chunk-s` seconds and writes into the buffer, so the save races a real donation.
Cases, side by side in one process:
  none        the chunks alone
  before      the save of `--before-rev` (git show of mjx_tecrl/checkpoint.py there): a blob, written in line
  streamed    this version's checkpoint.save, in line (no background thread)
  background  this version's Checkpointer: a host copy in line, the write in a background thread
The cost of a save is the case's wall time minus `none`'s; the write's own time is reported apart.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
from flax import struct

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

from mjx_tecrl import checkpoint  # noqa: E402


@struct.dataclass
class State:
    learner: dict
    replay: dict


def make_state(rows: int, obs: int, act: int) -> State:
    learner = {f"w{i}": jnp.full((256, 256), 0.01, jnp.float32) for i in range(6)}
    replay = {
        "obs": jnp.zeros((rows, obs), jnp.float32),
        "next_obs": jnp.zeros((rows, obs), jnp.float32),
        "action": jnp.zeros((rows, act), jnp.float32),
        "reward": jnp.zeros((rows,), jnp.float32),
        "done": jnp.zeros((rows,), jnp.float32),
        "insert": jnp.zeros((), jnp.int32),
    }
    return State(learner, replay)


def make_chunk(matmuls: int):
    def chunk(state: State) -> State:
        x = jax.lax.fori_loop(0, matmuls, lambda _, x: jnp.tanh(x @ state.learner["w0"]), state.learner["w1"])
        r = state.replay
        row = r["insert"] % r["obs"].shape[0]
        replay = {**r, "obs": r["obs"].at[row].set(x[0, 0]), "insert": r["insert"] + 1}
        return state.replace(learner={**state.learner, "w1": x}, replay=replay)

    return jax.jit(chunk, donate_argnums=0)


def load_before(rev: str):
    """mjx_tecrl/checkpoint.py at `rev` as a module (None where git or the revision is missing)."""
    root = os.path.join(os.path.dirname(__file__), "..")
    try:
        source = subprocess.run(["git", "-C", root, "show", f"{rev}:mjx_tecrl/checkpoint.py"], check=True,
                                capture_output=True, text=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader(f"checkpoint_{rev}", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"checkpoint.py@{rev}", "exec"), module.__dict__)
    return module


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


class PeakRSS:
    """The process's peak resident memory above its level at entry, sampled every 10 ms (Linux)."""

    def __enter__(self):
        import threading

        self.base, self.peak, self._stop = _rss(), 0, threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss() - self.base)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def run_case(case: str, state: State, chunk, chunks: int, directory: str, before) -> tuple[State, float, float]:
    """(state, wall of `chunks` chunks with one save after the first, the write's own seconds)."""
    shutil.rmtree(directory, ignore_errors=True)
    saver = checkpoint.Checkpointer(directory)
    write_s = float("nan")
    t0 = time.perf_counter()
    for i in range(chunks):
        state = chunk(state)
        jax.block_until_ready(state)
        if i == 0 and case != "none":
            meta = {"env_steps": i}
            t_save = time.perf_counter()
            if case == "before":
                before.save(directory, jax.device_get(state), meta)
            elif case == "streamed":
                checkpoint.save(directory, checkpoint.snapshot(state), meta)
            else:
                saver.save(checkpoint.snapshot(state, copy=jax.default_backend() == "cpu"), meta)
                started = time.perf_counter()
            write_s = time.perf_counter() - t_save
    if case == "background":
        saver.wait()
        write_s = time.perf_counter() - started  # an upper bound: joined after the chunks
    wall = time.perf_counter() - t0
    shutil.rmtree(directory, ignore_errors=True)
    return state, wall, write_s


def main(argv=None) -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="replay rows (1M: the headline run's buffer)")
    p.add_argument("--obs", type=int, default=348, help="observation size (humanoid: 348)")
    p.add_argument("--act", type=int, default=17, help="action size (humanoid: 17)")
    p.add_argument("--chunks", type=int, default=8, help="chunks per case; the save follows the first")
    p.add_argument("--chunk-s", type=float, default=2.0, help="seconds of compute per chunk (calibrated)")
    p.add_argument("--before-rev", default="8b555fe", help="the git revision whose save is 'before'")
    p.add_argument("--dir", default="", help="where the checkpoints go (default: a temp dir; removed after)")
    args = _common.parse(p, {"rows": 10_000, "chunks": 3, "chunk_s": 0.2, "repeats": 1}, argv)
    report = _common.Report("checkpoint_cost", args)
    state = make_state(args.rows, args.obs, args.act)
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
    print(f"state: {state_bytes / 1e9:.2f} GB", flush=True)
    probe = make_chunk(64)
    state = probe(state)
    jax.block_until_ready(state)
    t = time.perf_counter()
    state = probe(state)
    jax.block_until_ready(state)
    matmuls = max(1, int(64 * args.chunk_s / max(time.perf_counter() - t, 1e-6)))
    chunk = make_chunk(matmuls)
    state = chunk(state)  # compile
    jax.block_until_ready(state)
    before = load_before(args.before_rev)
    cases = ["none", "streamed", "background"] + (["before"] if before is not None else [])
    if before is None:
        print(f"note: no git revision {args.before_rev}: the 'before' case is left out", flush=True)
    parent = args.dir or tempfile.mkdtemp(prefix="ckpt-cost-")
    walls: dict[str, list[float]] = {c: [] for c in cases}
    writes: dict[str, list[float]] = {c: [] for c in cases}
    peaks: dict[str, list[float]] = {c: [] for c in cases}
    for _ in range(args.repeats):
        for case in cases:
            with PeakRSS() as rss:
                state, wall, write_s = run_case(case, state, chunk, args.chunks, os.path.join(parent, case), before)
            walls[case].append(wall)
            writes[case].append(write_s)
            peaks[case].append(rss.peak / state_bytes)
            print(f"{case}: {wall:.2f} s for {args.chunks} chunks; write {write_s:.2f} s; peak host memory "
                  f"+{rss.peak / state_bytes:.2f} x the state", flush=True)  # fmt: skip
    none = _common.median(walls["none"])
    rows = []
    for case in cases:
        wall = _common.median(walls[case])
        row = report.add(case=case, state_gb=state_bytes / 1e9, wall_s=wall, save_cost_s=wall - none,
                         write_s=_common.median(writes[case]), extra_host_copies=max(peaks[case]),
                         chunks=args.chunks, walls=walls[case])  # fmt: skip
        rows.append([case, row["state_gb"], wall, row["save_cost_s"], row["write_s"], row["extra_host_copies"]])
    if not args.dir:
        shutil.rmtree(parent, ignore_errors=True)
    print(_common.table(["case", "state GB", "wall s", "save's cost to training s", "write s",
                         "peak extra host memory (x state)"], rows))  # fmt: skip
    report.write()


if __name__ == "__main__":
    main()
