"""`train.py --sweep` end to end, through the CLI, with tiny sizes.

  A: a sweep of 2 members (rho 1 and 5, seed 0) for two chunks straight through;
  B: the same sweep for one chunk, then resumed in a fresh process to two chunks: equals A;
  S: a single run with rho 5, seed 0: equals A's member 1 (a sweep member computes what a single run does);
  M: A's sweep split over two processes joined by jax.distributed (gloo, 127.0.0.1): equals A.

These check what the sweep machinery computes (stacking, resume, the member axis split over processes), not
physics: train.py runs on the toy CounterEnv (a launcher swaps the registry's env), which compiles in seconds
where a Gymnasium task's sweep program takes minutes on the CPU. A real task's sweep runs in
notebooks/02_rho_sweep.ipynb (tests/test_notebooks.py). The processes compile with most
XLA optimisations off and share a persistent compilation cache.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mjx_tecrl import checkpoint

HERE = Path(__file__).resolve().parent
TRAIN = str(HERE.parent / "train.py")
NUM_ENVS, CHUNK, WARMUP = 4, 32, 32
# "--env inverted_pendulum" is a label only: the launcher makes every env the toy one.
TINY = ["--env", "inverted_pendulum", "--hidden-sizes", "16,16", "--num-envs", str(NUM_ENVS), "--batch-size", "16",
        "--buffer-size", "256", "--learning-starts", str(WARMUP), "--eval-every", str(CHUNK), "--num-eval-envs", "2",
        "--episode-length", "50", "--updates-per-step", "0.5", "--no-progress"]  # fmt: skip
SWEEP = ["--sweep", "rho=1,5"]
ONE_CHUNK, TWO_CHUNKS = WARMUP + CHUNK, WARMUP + 2 * CHUNK
TIMING = {"wall_time_s", "train/env_steps_per_second", "env_steps_per_second"}


def _env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
    }


TOY_LAUNCHER = r"""
import runpy, sys
sys.path.insert(0, sys.argv[1])
from toy_envs import CounterEnv
from mjx_tecrl.envs import registry
registry.make = lambda name, **kw: CounterEnv(terminate_after=3)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _start(argv, cwd, env):
    """train.py on the toy env."""
    return subprocess.Popen([sys.executable, "-c", TOY_LAUNCHER, str(HERE), TRAIN, *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _finish(proc) -> str:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, f"train.py {' '.join(proc.args[2:])} exited {proc.returncode}:\n{out}\n{err[-4000:]}"
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweeps")
    env = _env(tmp_path_factory.mktemp("xla_cache"))
    a, b, s, m = base / "A", base / "B", base / "S", base / "M"
    out = {"A": _finish(_start([*TINY, *SWEEP, "--out", str(a), "--total-steps", str(TWO_CHUNKS)], base, env))}
    port = _free_port()
    procs = {
        "B1": _start([*TINY, *SWEEP, "--out", str(b), "--total-steps", str(ONE_CHUNK)], base, env),
        "S": _start([*TINY, "--rho", "5", "--out", str(s), "--total-steps", str(TWO_CHUNKS)], base, env),
    }
    procs |= {
        f"M{i}": _start(
            [
                *TINY,
                *SWEEP,
                "--out",
                str(m),
                "--total-steps",
                str(TWO_CHUNKS),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            base,
            env,
        )  # fmt: skip
        for i in range(2)
    }
    out |= {name: _finish(p) for name, p in procs.items()}
    out["B2"] = _finish(_start(["--resume", str(b), "--total-steps", str(TWO_CHUNKS), "--no-progress"], base, env))
    return {"A": a, "B": b, "S": s, "M": m, "out": out}


def _rows(path: Path) -> list[dict[str, float]]:
    with open(path) as f:
        return [{k: float(v) for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def _sweep_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "sweep.csv") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def _close(a: list[dict[str, float]], b: list[dict[str, float]], rtol=1e-4, atol=1e-4):
    assert len(a) == len(b) and a and all(x.keys() == y.keys() for x, y in zip(a, b, strict=True))
    for x, y in zip(a, b, strict=True):
        for k in x:
            np.testing.assert_allclose(x[k], y[k], rtol=rtol, atol=atol, err_msg=k)


def test_sweep_directory_holds_members_csv_plot_and_checkpoint(runs):
    a = runs["A"]
    for name in ("config.json", "sweep.json", "sweep.csv", "sweep.png", "summary.json", "checkpoints/latest.ckpt"):
        assert (a / name).is_file(), name
    doc = json.loads((a / "sweep.json").read_text())
    assert [m["hyperparams"] for m in doc["members"]] == [{"rho": 1.0}, {"rho": 5.0}]
    for i in range(2):
        member = a / "members" / f"m{i:03d}"
        assert len(_rows(member / "metrics.csv")) == 2  # one row per evaluation
        assert any((member / "tb").iterdir())
        summary = json.loads((member / "summary.json").read_text())
        assert summary["member"] == i and summary["env_steps"] == TWO_CHUNKS
        assert (member / "policy.npz").is_file()  # each member's policy-only file (mjx_tecrl.export)
    rows = _sweep_rows(a)
    assert [float(r["rho"]) for r in rows] == [1.0, 5.0]
    assert all(float(r["env_steps"]) == TWO_CHUNKS and r["diverged_at_env_step"] == "" for r in rows)
    png = (a / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_the_printed_table_has_one_row_per_rho(runs):
    lines = runs["out"]["A"].splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rho", "seeds"])
    assert lines[header + 1].split()[:2] == ["1", "1"] and lines[header + 2].split()[:2] == ["5", "1"]


def test_the_members_differ_in_rho_inside_the_checkpoint(runs):
    payload, meta = checkpoint.load_meta(str(runs["A"] / "checkpoints"))
    i = next(i for i, p in enumerate(payload["paths"]) if p.endswith(".hyperparams.rho"))
    rec = payload["leaves"][i]
    assert rec["shape"] == [2]
    assert np.frombuffer(rec["data"], np.float32).tolist() == [1.0, 5.0]
    assert len(meta["members"]) == 2


def test_a_resumed_sweep_equals_the_uninterrupted_one(runs):
    for i in range(2):
        d = f"members/m{i:03d}/metrics.csv"
        _close(_rows(runs["B"] / d), _rows(runs["A"] / d))
    assert "resumed" in runs["out"]["B2"]


def test_a_sweep_member_equals_the_single_run_with_its_seed_and_rho(runs):
    _close(_rows(runs["A"] / "members" / "m001" / "metrics.csv"), _rows(runs["S"] / "metrics.csv"))
    # ...and member 0 (rho 1) is not that run, so the comparison can fail.
    m0 = _rows(runs["A"] / "members" / "m000" / "metrics.csv")
    single = _rows(runs["S"] / "metrics.csv")
    assert any(abs(m0[-1][k] - single[-1][k]) > 1e-3 for k in single[-1] if k.startswith("train/"))


def test_a_sweep_over_two_processes_equals_the_one_process_sweep(runs):
    assert "done: 2 members" in runs["out"]["M0"]
    m_rows, a_rows = _sweep_rows(runs["M"]), _sweep_rows(runs["A"])
    assert len(m_rows) == len(a_rows) == 2
    for x, y in zip(m_rows, a_rows, strict=True):
        for k in x:
            if x[k] == "" or y[k] == "":
                assert x[k] == y[k]
            else:
                np.testing.assert_allclose(float(x[k]), float(y[k]), rtol=1e-4, atol=1e-4, err_msg=k)
    assert "done:" not in runs["out"]["M1"]  # process 1 computes and stays quiet; process 0 writes


# --- bitwise determinism and restart -----------------------------------------------
TOY_TOTAL = 8 + 4 * 8  # warm-up and four chunks of 8 env steps
TOY = ["--num-envs", "4", "--learning-starts", "8", "--updates-per-step", "0.25", "--batch-size", "8", "--buffer-size",
       "64", "--hidden-sizes", "8", "--policy-delay", "1", "--episode-length", "5", "--eval-every", "8",
       "--num-eval-envs", "2", "--total-steps", str(TOY_TOTAL), "--no-progress"]  # fmt: skip
TOY_SWEEP = ["--sweep", "rho=1,5", "--seeds", "2"]  # 4 members
TOY_MEMBERS = 4
TIMING_SUMMARY = {"wall_time_s", "compile_time_s", "train_time_s", "env_steps_per_second",
                  "member_env_steps_per_second"}  # fmt: skip


def _csv_text(path: Path, drop: set[str]) -> list[dict[str, str]]:
    """The rows as written (strings: equal means bitwise equal floats), without the timing columns."""
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def _outcome(run: Path) -> dict:
    """Everything a sweep leaves behind that does not measure time: sweep.csv, the summaries, every member's
    metrics.csv, and the checkpoint's array paths and bytes."""
    payload, meta = checkpoint.load_meta(str(run / "checkpoints"))
    summary = lambda path: {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMING_SUMMARY}
    members = {}
    for m in sorted(p.name for p in (run / "members").iterdir()):
        members[m] = (
            summary(run / "members" / m / "summary.json"),
            _csv_text(run / "members" / m / "metrics.csv", TIMING),
        )
    return {
        "sweep.csv": _csv_text(run / "sweep.csv", TIMING),
        "summary.json": summary(run / "summary.json"),
        "members": members,
        "paths": payload["paths"],
        "leaves": payload["leaves"],
        "meta": {k: meta[k] for k in ("env_steps", "evals_done", "best_eval_return", "members")},
    }


@pytest.fixture(scope="module")
def toy_sweeps(tmp_path_factory):
    """A and B: the same 4-member sweep, two fresh processes side by side, each compiling for itself (B without
    a persistent cache). C: A's config.json and sweep.json with no checkpoint, as a sweep killed before its first
    leaves them, plus metrics rows of that aborted attempt (A's, with every value changed) and a dead writer's
    temp file; then `--resume C`, from A's compilation cache."""
    base = tmp_path_factory.mktemp("toy_sweeps")
    no_cache = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    no_cache["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    env = _env(tmp_path_factory.mktemp("xla_cache"))
    a, b, c = base / "A", base / "B", base / "C"
    procs = {"A": _start([*TOY, *TOY_SWEEP, "--out", str(a)], base, env),
             "B": _start([*TOY, *TOY_SWEEP, "--out", str(b)], base, no_cache)}  # fmt: skip
    out = {name: _finish(p) for name, p in procs.items()}

    (c / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "sweep.json"):
        (c / name).write_bytes((a / name).read_bytes())
    (c / "checkpoints" / ".tmp-dead.ckpt").write_bytes(b"half a checkpoint")
    for i in range(TOY_MEMBERS):
        rows = _csv_text(a / "members" / f"m{i:03d}" / "metrics.csv", set())
        (c / "members" / f"m{i:03d}").mkdir(parents=True)
        with open(c / "members" / f"m{i:03d}" / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: v if k == "env_steps" else "-999" for k, v in r.items()} for r in rows)
    out["C"] = _finish(_start(["--resume", str(c)], base, env))
    return {"A": a, "B": b, "C": c, "out": out}


def test_the_same_sweep_run_twice_is_bitwise_identical(toy_sweeps):
    a, b = _outcome(toy_sweeps["A"]), _outcome(toy_sweeps["B"])
    assert len(a["sweep.csv"]) == TOY_MEMBERS and a["summary.json"]["env_steps"] == TOY_TOTAL
    for key in a:
        assert a[key] == b[key], key
    # The members differ from one another (seeds 0, 1 and rho 1, 5), so equal files are not empty agreement.
    curves = [rows for _, rows in a["members"].values()]
    assert len(curves[0]) == 4 and all(curves[i] != curves[j] for i in range(4) for j in range(i))


def test_a_sweep_with_no_checkpoint_resumes_from_its_start(toy_sweeps):
    c = toy_sweeps["C"]
    assert f"no checkpoint in {c} yet (it stopped before its first): starting its run over" in toy_sweeps["out"]["C"]
    replay = checkpoint.load_meta(str(c / "checkpoints"))[1]["replay"]["file"]
    # the dead writer's temp file is gone: the state, its buffer and the best evaluation's state are left
    assert sorted(os.listdir(c / "checkpoints")) == [checkpoint.BEST, checkpoint.LATEST, replay]
    assert _outcome(c) == _outcome(toy_sweeps["A"])  # the aborted attempt's rows dropped, none repeated
