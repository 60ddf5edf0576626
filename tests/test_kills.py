"""Kills and determinism of whole training runs, each a real `train.py` process (tiny inverted_pendulum).

Kills: one run directory is trained by a series of processes, each SIGKILLed at a random moment (during
start-up, mid-chunk, or while a checkpoint is being written) and then resumed with --resume. After every
kill latest.ckpt must load completely into a training state and be at or after the previous one; at the end a
last resume finishes the run, which must equal an uninterrupted run bit for bit (checkpoint arrays,
metrics.csv and summary.json apart from timings): nothing lost, nothing repeated. Before that last resume
one process is stopped with SIGINT (Ctrl-C), which must save a checkpoint after its chunk and exit with 130.

Kills inside a checkpoint write: the processes run train.py under a launcher that makes fsync slow (a slow
disk, as in test_checkpoint.py), so the temp file lives long enough for the test to see it and kill then.

Killed before the first checkpoint, or Ctrl-C before training began (during the compile): --resume starts the
run over in its directory and ends equal to an uninterrupted run; Ctrl-C exits 130 with one line and at once.

Determinism: two fresh runs with the same seed on the same device give identical metrics and summaries.

The runs use test_run.py's TINY flags and share the session's compilation cache with it.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mjx_tecrl.envs import registry
from test_run import CHUNK, NUM_ENVS, TIMING_COLUMNS, TRAIN, WARMUP, _argv

from mjx_tecrl import checkpoint
from mjx_tecrl.config import Config
from mjx_tecrl.loop import make_train
from mjx_tecrl.population import abstract_state
from mjx_tecrl.rundir import run_members

TIMING_SUMMARY = {"wall_time_s", "compile_time_s", "train_time_s", "env_steps_per_second"}
SLOW_FSYNC_S = 0.15

_LAUNCHER = r"""
import os, runpy, stat, sys, time
delay, real_fsync = float(os.environ["SLOW_FSYNC_S"]), os.fsync
hang = os.environ.get("HANG_CHECKPOINT_WRITE") == "1"
def slow_fsync(fd):  # a slow disk: a checkpoint's temp file lives this much longer before its rename
    if stat.S_ISREG(os.fstat(fd).st_mode):
        if hang and os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".tmp-"):
            time.sleep(3600)  # a checkpoint write that never ends: the test kills the process in it
        time.sleep(delay)
    real_fsync(fd)
os.fsync = slow_fsync
if os.environ.get("REPORT_COMPILES") == "1":  # a stdout line before and after each XLA compile (jax.monitoring)
    import jax.monitoring as mon
    mon.register_event_listener(lambda event, **kw: event == "/jax/compilation_cache/compile_requests_use_cache"
                                and print("xla compile starts", flush=True))
    mon.register_event_duration_secs_listener(lambda event, secs, **kw: event == "/jax/core/compile/"
                                              "backend_compile_duration" and print("xla compile ends", flush=True))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class Proc:
    """A train.py process whose stdout lines are collected with their arrival time.

    `slow_disk`: run under the launcher (slow fsync; its environment variables add the other tricks)."""

    def __init__(self, argv, cwd, env, slow_disk=False):
        cmd = [sys.executable, "-c", _LAUNCHER, TRAIN] if slow_disk else [sys.executable, TRAIN]
        env = {"SLOW_FSYNC_S": str(SLOW_FSYNC_S), **env}
        self.p = subprocess.Popen([*cmd, *argv], cwd=cwd, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        self.lines, self.times, self.compiled, self.chunk_done = [], [], threading.Event(), threading.Event()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.p.stdout:
            self.times.append(time.monotonic())
            self.lines.append(line)
            if line.startswith("compiled in"):
                self.compiled.set()
            if line.startswith("steps "):  # one line per chunk and evaluation
                self.chunk_done.set()

    def finish(self, timeout=900):
        err = self.p.stderr.read()
        self.p.wait(timeout=timeout)
        self._t.join(timeout=10)
        assert self.p.returncode == 0, f"exit {self.p.returncode}:\n{''.join(self.lines)}\n{err}"
        return "".join(self.lines)


def _temps(ckpt_dir: Path) -> set[str]:
    return {n for n in os.listdir(ckpt_dir) if n.startswith(".tmp-")} if ckpt_dir.exists() else set()


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def _summary(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    return {k: v for k, v in s.items() if k not in TIMING_SUMMARY}


def _assert_same_run(run_dir: Path, ref_dir: Path, total: int) -> None:
    """run_dir ended where the uninterrupted ref_dir did, bit for bit: summary, metrics.csv (apart from timing
    fields) and every checkpoint array."""
    s_ref, s_run = _summary(ref_dir), _summary(run_dir)
    assert s_run["env_steps"] == s_ref["env_steps"] == total
    assert s_run == s_ref
    assert _rows(run_dir) == _rows(ref_dir)  # no row lost, none repeated by a re-run chunk
    (pa, meta_ref), (pb, meta_run) = (
        checkpoint.load_meta(str(ref_dir / "checkpoints")),
        checkpoint.load_meta(str(run_dir / "checkpoints")),
    )
    assert meta_run["env_steps"] == meta_ref["env_steps"] == total and meta_run["evals_done"] == meta_ref["evals_done"]
    assert pa["paths"] == pb["paths"]
    differing = [p for p, a, b in zip(pa["paths"], pa["leaves"], pb["leaves"], strict=True) if a != b]
    assert differing == [], differing[:5]
    # the replay buffers too; and nothing else is left: no temp file, no buffer latest.ckpt does not name
    replay = meta_ref["replay"]["file"]
    assert meta_run["replay"] == meta_ref["replay"] and replay == f"replay-{total:012d}.ckpt"
    assert (run_dir / "checkpoints" / replay).read_bytes() == (ref_dir / "checkpoints" / replay).read_bytes()
    assert set(os.listdir(run_dir / "checkpoints")) - {checkpoint.BEST} == {checkpoint.LATEST, replay}


@pytest.fixture(scope="module")
def template():
    """template(run_dir): an abstract training state of the run's configuration to restore checkpoints into."""
    cache = {}

    def load(run_dir: Path):
        if "state" not in cache:
            with open(run_dir / "config.json") as f:
                config = Config.from_dict(json.load(f))
            fns = make_train(config, registry.make(config.env))
            cache["state"] = abstract_state(fns, config, run_members(config, None))  # a population of one
        return cache["state"]

    return load


def _kill_trials(base: Path, env: dict, trials: int, seed: int, template):
    """Train one run directory through `trials` SIGKILLed processes, each resumed; returns figures."""
    rand = random.Random(seed)
    chunks = 2 * trials + 4
    total = WARMUP + chunks * CHUNK
    ref_dir, run_dir = base / "ref", base / "killed"
    ckpt_dir = run_dir / "checkpoints"
    allowed = {WARMUP + k * CHUNK for k in range(1, chunks + 1)}

    # The uninterrupted reference (pays the compile unless test_run.py did), then the kills.
    ref_out = Proc(_argv(out=ref_dir, total_steps=total), base, env).finish()
    with open(ref_dir / "metrics.csv") as f:
        walls = [float(r["wall_time_s"]) for r in csv.DictReader(f)]
    chunk_s = max((walls[-1] - walls[0]) / max(len(walls) - 1, 1), 0.05)  # chunk + eval + checkpoint

    figures = {"trials": 0, "killed": 0, "killed_mid_write": 0, "finished_before_kill": 0, "modes": {}}
    last_steps = 0
    modes = ["mid-write", "running", "any"]
    for i in range(trials):
        mode = modes[i % len(modes)]
        if i == 0:
            argv = _argv(out=run_dir, total_steps=total)
        else:
            argv = ["--resume", str(run_dir), "--no-progress"]
        before = _temps(ckpt_dir)
        proc = Proc(argv, base, env, slow_disk=True)
        if i == 0:  # each kill is followed by a look at the checkpoint: let the first be written
            while not (ckpt_dir / checkpoint.LATEST).exists() and proc.p.poll() is None:
                time.sleep(0.01)
        if mode == "mid-write":  # wait for a new temp file, then kill inside its slowed fsync
            while not (_temps(ckpt_dir) - before) and proc.p.poll() is None:
                time.sleep(0.002)
            time.sleep(rand.uniform(0.0, 0.5 * SLOW_FSYNC_S))
        elif mode == "running":  # mid-chunk, mid-evaluation or mid-write, after the compile
            proc.compiled.wait(timeout=900)
            time.sleep(rand.uniform(0.0, 3.0 * chunk_s))
        else:  # anywhere: start-up, compile, training
            time.sleep(rand.uniform(0.0, 15.0))
        proc.p.send_signal(signal.SIGKILL)
        proc.p.wait(timeout=60)
        figures["trials"] += 1
        figures["modes"][mode] = figures["modes"].get(mode, 0) + 1
        if proc.p.returncode == 0:
            figures["finished_before_kill"] += 1
        else:
            assert proc.p.returncode == -signal.SIGKILL, (proc.p.returncode, proc.p.stderr.read())
            figures["killed"] += 1
        if _temps(ckpt_dir) - before:
            figures["killed_mid_write"] += 1

        # latest.ckpt loads completely, into the state of this configuration, and did not go back.
        state, meta, replay_steps = checkpoint.restore_run(str(ckpt_dir), template(run_dir))
        assert meta["env_steps"] in allowed and meta["env_steps"] >= last_steps, (meta["env_steps"], last_steps)
        assert int(state.iteration[0]) * NUM_ENVS == meta["env_steps"]  # the arrays belong with the meta
        assert replay_steps == meta["env_steps"]  # and so does the buffer it names
        last_steps = meta["env_steps"]

    # Ctrl-C: the process saves a checkpoint after its current chunk and exits with status 130.
    proc = Proc(["--resume", str(run_dir), "--no-progress"], base, env)
    assert proc.chunk_done.wait(timeout=900), "".join(proc.lines)
    proc.p.send_signal(signal.SIGINT)
    proc.p.wait(timeout=300)
    assert proc.p.returncode == 130, (proc.p.returncode, proc.p.stderr.read())
    meta = checkpoint.load_meta(str(ckpt_dir))[1]
    assert meta["env_steps"] > last_steps and json.loads((run_dir / "summary.json").read_text())["interrupted"]
    last_steps = meta["env_steps"]
    figures["sigint"] = 1

    # The last resume finishes the run: same final step count and, bit for bit, the uninterrupted run.
    out = Proc(["--resume", str(run_dir), "--no-progress"], base, env).finish()
    assert f"resumed {run_dir} at env step {last_steps}" in out
    assert _temps(ckpt_dir) == set(), "the resume left a dead writer's temp file behind"
    _assert_same_run(run_dir, ref_dir, total)
    figures["final_env_steps"] = _summary(run_dir)["env_steps"]
    figures["ref_out"] = ref_out
    return figures


def _report(figures: dict, name: str) -> None:
    line = {k: v for k, v in figures.items() if k != "ref_out"}
    print(f"{name}: {json.dumps(line)}")  # shown with pytest -s; the figures in docs/reliability.md


def test_kills_at_random_moments_then_resume_lose_nothing(tmp_path, xla_cache_env, template):
    """3 kills: inside a checkpoint write, while training, and anywhere (the always-run version)."""
    figures = _kill_trials(tmp_path, xla_cache_env, trials=3, seed=7, template=template)
    _report(figures, "kills (3 trials)")
    assert figures["killed"] >= 2
    assert figures["killed_mid_write"] >= 1, "no kill landed inside a checkpoint write"


@pytest.mark.slow
def test_kills_at_random_moments_then_resume_lose_nothing_many_trials(tmp_path, xla_cache_env, template):
    figures = _kill_trials(tmp_path, xla_cache_env, trials=12, seed=2024, template=template)
    _report(figures, "kills (12 trials)")
    assert figures["killed"] >= 10
    assert figures["killed_mid_write"] >= 3


TWO_CHUNKS = WARMUP + 2 * CHUNK


@pytest.fixture(scope="module")
def reference(tmp_path_factory, xla_cache_env) -> Path:
    """An uninterrupted run of two chunks, which the runs below must equal (from the shared compilation cache
    when test_run or the kills ran first)."""
    ref_dir = tmp_path_factory.mktemp("reference") / "ref"
    Proc(_argv(out=ref_dir, total_steps=TWO_CHUNKS), ref_dir.parent, xla_cache_env).finish()
    return ref_dir


def test_same_seed_same_device_gives_identical_metrics_and_summary(tmp_path, xla_cache_env, reference):
    """A second fresh process with the reference's flags."""
    b = tmp_path / "b"
    Proc(_argv(out=b, total_steps=TWO_CHUNKS), tmp_path, xla_cache_env).finish()
    assert len(_rows(reference)) == 2
    _assert_same_run(b, reference, TWO_CHUNKS)


def _restarted(out: str, run_dir: Path) -> bool:
    return f"no checkpoint in {run_dir} yet (it stopped before its first): starting its run over" in out


def test_a_run_killed_before_its_first_checkpoint_resumes_from_its_start(tmp_path, xla_cache_env, reference):
    """SIGKILL inside the first checkpoint write: metrics.csv and TensorBoard hold the first chunk, a temp file
    is left, and there is no checkpoint. --resume starts the run over there and ends equal to the reference."""
    run_dir = tmp_path / "killed"
    ckpt_dir = run_dir / "checkpoints"
    env = {**xla_cache_env, "SLOW_FSYNC_S": "0", "HANG_CHECKPOINT_WRITE": "1"}
    proc = Proc(_argv(out=run_dir, total_steps=TWO_CHUNKS), tmp_path, env, slow_disk=True)
    deadline = time.monotonic() + 900
    while not _temps(ckpt_dir) and proc.p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.p.send_signal(signal.SIGKILL)
    proc.p.wait(timeout=60)
    assert proc.p.returncode == -signal.SIGKILL, (proc.p.returncode, proc.p.stderr.read())
    assert not (ckpt_dir / checkpoint.LATEST).exists() and len(_temps(ckpt_dir)) == 1
    assert len(_rows(run_dir)) == 1 and any((run_dir / "tb").iterdir())  # the aborted attempt's first chunk

    out = Proc(["--resume", str(run_dir), "--no-progress"], tmp_path, xla_cache_env).finish()
    assert _restarted(out, run_dir) and "resumed" not in out
    assert _temps(ckpt_dir) == set(), "the restart left the dead writer's temp file behind"
    _assert_same_run(run_dir, reference, TWO_CHUNKS)  # the aborted attempt's row was dropped, not repeated


INTERRUPTED = "train.py: interrupted before training began; nothing is lost: python train.py --resume {} continues"


def _interrupt_mid_compile(argv, cwd: Path, env: dict, cache: Path, after: str = "") -> tuple[Proc, float, str]:
    """Start train.py with an empty compilation cache (so it really compiles) and, once a line starting with
    `after` was printed, send SIGINT when an XLA compile has run for 2 s; returns the process, seconds from the
    signal to its exit, and its stderr."""
    env = {**env, "JAX_COMPILATION_CACHE_DIR": str(cache), "SLOW_FSYNC_S": "0", "REPORT_COMPILES": "1"}
    proc = Proc(argv, cwd, env, slow_disk=True)
    deadline = time.monotonic() + 900
    while proc.p.poll() is None and time.monotonic() < deadline:
        lines, times = list(proc.lines), list(proc.times)
        started = any(line.startswith(after) for line in lines)
        if started and lines[-1].startswith("xla compile starts") and time.monotonic() - times[-1] > 2:
            break
        time.sleep(0.01)
    ends_before = sum(line.startswith("xla compile ends") for line in proc.lines)
    proc.p.send_signal(signal.SIGINT)
    t = time.monotonic()
    proc.p.wait(timeout=600)
    elapsed = time.monotonic() - t
    proc._t.join(timeout=10)
    err = proc.p.stderr.read()
    assert not any(line.startswith("compiled in") for line in proc.lines), "the signal came after the compiles"
    ends_after = sum(line.startswith("xla compile ends") for line in proc.lines)
    assert ends_after == ends_before, "the compile under way finished: the exit waited for it"
    return proc, elapsed, err


def test_ctrl_c_during_compilation_exits_130_at_once_and_the_run_resumes(tmp_path, xla_cache_env, reference):
    """SIGINT inside an XLA compile (C++, where Python's own handler cannot run): exit status 130, no traceback,
    one line naming --resume, no waiting for the compile. The directory then resumes (from its start), and a
    Ctrl-C in the compile of that resumed run leaves its checkpoint and metrics as they were."""
    run_dir = tmp_path / "interrupted"
    argv = _argv(out=run_dir, total_steps=TWO_CHUNKS)
    proc, elapsed, err = _interrupt_mid_compile(argv, tmp_path, xla_cache_env, tmp_path / "cache1")
    assert proc.p.returncode == 130, (proc.p.returncode, err)
    assert err.splitlines() == [INTERRUPTED.format(run_dir)], err
    assert elapsed < 10, elapsed
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]
    print(f"ctrl-c mid-compile of a new run: exit {proc.p.returncode}, {elapsed:.2f}s after the signal")

    out = Proc(["--resume", str(run_dir), "--no-progress"], tmp_path, xla_cache_env).finish()
    assert _restarted(out, run_dir)
    _assert_same_run(run_dir, reference, TWO_CHUNKS)

    # Ctrl-C while the resumed run compiles: its checkpoint and metrics stay as they were.
    before = {p: p.read_bytes() for p in (run_dir / "checkpoints" / checkpoint.LATEST, run_dir / "metrics.csv")}
    argv = ["--resume", str(run_dir), "--total-steps", str(TWO_CHUNKS + CHUNK), "--no-progress"]
    proc, elapsed, err = _interrupt_mid_compile(argv, tmp_path, xla_cache_env, tmp_path / "cache2", after="resumed ")
    assert proc.p.returncode == 130 and err.splitlines() == [INTERRUPTED.format(run_dir)], (proc.p.returncode, err)
    assert f"resumed {run_dir} at env step {TWO_CHUNKS}\n" in proc.lines and elapsed < 10, elapsed
    print(f"ctrl-c mid-compile of a resumed run: exit {proc.p.returncode}, {elapsed:.2f}s after the signal")
    assert {p: p.read_bytes() for p in before} == before
    assert _temps(run_dir / "checkpoints") == set()


# --- resume hygiene (no process needed) -------------------------------------------------------------
def test_resume_drops_metrics_rows_after_the_checkpoint(tmp_path):
    """A process killed after logging a chunk but before checkpointing it: the resumed run re-runs that chunk,
    so its rows must go, or metrics.csv would hold them twice."""
    from mjx_tecrl.logging import RunLogger, read_csv

    log = RunLogger(str(tmp_path), tensorboard=False)
    for steps in (100, 200, 300):
        log.csv_row({"env_steps": steps, "x": steps / 10})
    RunLogger(str(tmp_path), tensorboard=False, resume_step=200)
    assert read_csv(str(tmp_path / "metrics.csv")) == [{"env_steps": 100.0, "x": 10.0}, {"env_steps": 200.0, "x": 20.0}]
    before = (tmp_path / "metrics.csv").read_bytes()
    RunLogger(str(tmp_path), tensorboard=False, resume_step=200)  # nothing after it: the file is untouched
    assert (tmp_path / "metrics.csv").read_bytes() == before
    RunLogger(str(tmp_path), tensorboard=False, resume_step=0)  # a restart (no checkpoint yet): every row goes
    assert read_csv(str(tmp_path / "metrics.csv")) == [] and (tmp_path / "metrics.csv").read_text() == "env_steps,x\n"


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    import numpy as np

    checkpoint.save(str(tmp_path), {"x": np.zeros(3, np.float32)}, {"gen": 0})
    (tmp_path / ".tmp-abc123.ckpt").write_bytes(b"half a checkpoint")
    (tmp_path / "notes.txt").write_text("not ours")
    assert checkpoint.remove_stale_temps(str(tmp_path)) == [".tmp-abc123.ckpt"]
    assert sorted(os.listdir(tmp_path)) == [checkpoint.LATEST, "notes.txt"]
    assert checkpoint.load_meta(str(tmp_path))[1] == {"gen": 0}
    assert checkpoint.remove_stale_temps(str(tmp_path / "missing")) == []
