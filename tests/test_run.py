"""The host loop end to end on inverted_pendulum with tiny sizes: run-directory outputs and exact resume.

Every training run is a real `python train.py` process. They share a persistent XLA compilation cache
(a fresh directory per test session), so only the first one pays the 30-60 s compile of the MJX programs on
this CPU; the others load the same executables. The runs:

  B: one chunk, then resumed in a FRESH process to two chunks;
  A: two chunks straight through (same flags as B);
  C: one chunk saved without the replay buffer, then resumed (the buffer is warmed up again).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from mjx_tecrl.envs import registry

from mjx_tecrl import checkpoint, cli, rundir
from mjx_tecrl.config import Config, make_config

TRAIN = str(Path(__file__).resolve().parents[1] / "train.py")

NUM_ENVS, CHUNK, WARMUP = 4, 64, 64  # chunk = eval_every env steps; warm-up = learning_starts env steps
TINY = {
    "env": "inverted_pendulum", "hidden_sizes": "16,16", "num_envs": NUM_ENVS, "batch_size": 16,
    "buffer_size": 512, "learning_starts": WARMUP, "eval_every": CHUNK, "num_eval_envs": 2,
    "episode_length": 50, "updates_per_step": 0.5, "policy_delay": 2,
}  # fmt: skip
ONE_CHUNK = WARMUP + CHUNK  # total_steps that stops after the first chunk
TWO_CHUNKS = WARMUP + 2 * CHUNK
UPDATES_PER_CHUNK = CHUNK * TINY["updates_per_step"]
D_ITERS = 3  # run D's budget ends 3 iterations into its second chunk, one env step short of the third
D_TOTAL = ONE_CHUNK + D_ITERS * NUM_ENVS - 1
TIMING_COLUMNS = {"wall_time_s", "train/env_steps_per_second"}


def _argv(**flags) -> list[str]:
    argv = []
    for name, value in {**TINY, **flags}.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv + ["--no-progress"]


def _start(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, TRAIN, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"train.py {' '.join(proc.args[2:])} exited {proc.returncode}:\n{out}\n{err}"
    return out


def _rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, xla_cache_env):
    base = tmp_path_factory.mktemp("runs")
    env = xla_cache_env  # shared with tests/test_kills.py's runs, which use the same TINY flags
    a, b, c, d = base / "A", base / "B", base / "C", base / "D"

    # Phase 1 (pays the compile): B's first chunk.
    out = {"B1": _finish(_start(_argv(out=b, total_steps=ONE_CHUNK), base, env))}
    b_first_summary = _summary(b)
    b_first_ckpt = (b / "checkpoints" / checkpoint.LATEST).read_bytes()

    # Phase 2, from the cache, side by side: A straight through, B resumed in a fresh process, C's first chunk.
    procs = {
        "A": _start(_argv(out=a, total_steps=TWO_CHUNKS), base, env),
        "B2": _start(["--resume", str(b), "--total-steps", str(TWO_CHUNKS), "--no-progress"], base, env),
        "C1": _start(_argv(out=c, total_steps=ONE_CHUNK, checkpoint_buffer=False), base, env),
        "D": _start(_argv(out=d, total_steps=D_TOTAL), base, env),
    }
    out |= {name: _finish(p) for name, p in procs.items()}
    c_first_summary = _summary(c)
    c_first_meta = checkpoint.load_meta(str(c / "checkpoints"))

    # Phase 3: C resumed from a checkpoint without a buffer, also saying --no-checkpoint-buffer again.
    c_total = ONE_CHUNK + WARMUP + CHUNK  # the buffer's warm-up steps the envs again, then one chunk
    out["C2"] = _finish(
        _start(["--resume", str(c), "--total-steps", str(c_total), "--no-checkpoint-buffer"], base, env)
    )
    return {
        "A": a, "B": b, "C": c, "D": d, "out": out, "base": base, "c_total": c_total,
        "b_first_summary": b_first_summary, "b_first_ckpt": b_first_ckpt,
        "c_first_summary": c_first_summary, "c_first_meta": c_first_meta,
    }  # fmt: skip


# --- what a run leaves behind ----------------------------------------------------------------------
def test_run_directory_holds_config_metrics_summary_tensorboard_and_checkpoint(runs):
    a = runs["A"]
    assert sorted(p.name for p in a.iterdir()) == [
        "checkpoints", "config.json", "metrics.csv", "policy.npz", "policy_best.npz", "summary.json", "tb"
    ]  # fmt: skip
    # the state, its replay buffer, and the state at the best evaluation (checkpoint.py's layout)
    replay = f"replay-{TWO_CHUNKS:012d}.ckpt"
    assert sorted(os.listdir(a / "checkpoints")) == [checkpoint.BEST, checkpoint.LATEST, replay]
    assert not list(runs["base"].glob("runs")), "a run with --out also wrote under runs/"


def test_config_json_is_the_resolved_config(runs):
    a = runs["A"]
    with open(a / "config.json") as f:
        saved = Config.from_dict(json.load(f))
    overrides, _ = cli.parse_overrides(_argv(out=a, total_steps=TWO_CHUNKS))
    assert saved == make_config(**overrides)
    assert saved.hidden_sizes == (16, 16) and saved.out == str(a)
    assert saved.actor_lr == registry.spec("inverted_pendulum").tuned["actor_lr"]  # the preset was applied


def test_metrics_csv_has_one_row_per_evaluation_with_the_spec_metrics(runs):
    rows = _rows(runs["A"])
    assert [r["env_steps"] for r in rows] == [ONE_CHUNK, TWO_CHUNKS]
    for name in ("eval/episode_return", "eval/episode_length", "train/alpha", "train/trajectory_entropy",
                 "train/entropy_budget", "train/loss_reward_critic", "train/loss_entropy_critic",
                 "train/policy_entropy", "wall_time_s"):  # fmt: skip
        assert name in rows[0], name
        assert all(math.isfinite(r[name]) for r in rows), name
    for r in rows:
        assert r["train/entropy_budget"] == pytest.approx(-1.0 / (1.0 - 0.99), rel=1e-5)  # rho H0/(1-gamma), |A|=1
        assert 0.0 < r["train/alpha"] < 10.0
        assert 0.0 < r["eval/episode_length"] <= TINY["episode_length"]
        assert 0.0 <= r["eval/episode_return"] <= TINY["episode_length"]  # reward 1 per step alive
    assert rows[1]["train/alpha"] != rows[0]["train/alpha"]  # the temperature is learned
    assert rows[1]["wall_time_s"] > rows[0]["wall_time_s"]


def test_summary_json_reports_returns_steps_and_timings(runs):
    s, rows = _summary(runs["A"]), _rows(runs["A"])
    assert s["env_steps"] == TWO_CHUNKS
    assert s["final_eval_return"] == rows[-1]["eval/episode_return"]
    assert s["final_eval_return_last3"] == pytest.approx(np.mean([r["eval/episode_return"] for r in rows[-3:]]))
    assert s["best_eval_return"] == max(r["eval/episode_return"] for r in rows)
    assert s["updates_per_step"] == TINY["updates_per_step"]
    assert s["gradient_steps"] == 2 * UPDATES_PER_CHUNK
    assert s["wall_time_s"] > s["compile_time_s"] > 0.0
    assert s["env_steps_per_second"] > 0.0
    assert s["backend"] == jax.default_backend() and s["interrupted"] is False
    assert (s["env"], s["algo"], s["seed"]) == ("inverted_pendulum", "dsac-e", 0)


def test_total_steps_is_a_budget_the_run_stops_within_one_iteration_of(runs):
    """D's budget falls inside its second chunk: that chunk runs only the iterations the budget has left (the same
    compiled program, its other iterations skipped), and the run ends at the first iteration at or past it."""
    s, rows = _summary(runs["D"]), _rows(runs["D"])
    assert s["env_steps"] == ONE_CHUNK + D_ITERS * NUM_ENVS  # D_TOTAL rounded up to whole iterations
    assert [r["env_steps"] for r in rows] == [ONE_CHUNK, s["env_steps"]]
    per_iter = round(TINY["updates_per_step"] * NUM_ENVS)
    assert s["gradient_steps"] == UPDATES_PER_CHUNK + D_ITERS * per_iter
    assert math.isfinite(rows[-1]["train/loss_reward_critic"])  # means over the 3 iterations that ran


def _tb_values(tb_dir: Path):
    """Every summary value of the TFRecord event files (length, crc, Event proto, crc), with its event's step."""
    from tensorboardX.proto import event_pb2

    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                yield event.step, v


def _tb_scalars(tb_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} of the scalars."""
    scalars: dict[str, dict[int, float]] = {}
    for step, v in _tb_values(tb_dir):
        if v.metadata.plugin_data.plugin_name != "hparams":
            value = v.simple_value if v.HasField("simple_value") else v.tensor.float_val[0]
            scalars.setdefault(v.tag, {})[step] = value
    return scalars


def test_tensorboard_holds_the_runs_hyperparameters(runs):
    """TensorBoard's HPARAMS view: the resolved config of the run (numbers, strings, booleans, text otherwise),
    against the eval return."""
    from tensorboardX.proto import plugin_hparams_pb2

    starts, experiments = [], []
    for _, v in _tb_values(runs["A"] / "tb"):
        if v.metadata.plugin_data.plugin_name == "hparams":
            data = plugin_hparams_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
            (starts if data.HasField("session_start_info") else experiments).append(data)
    hparams = starts[0].session_start_info.hparams
    config = json.loads((runs["A"] / "config.json").read_text())
    assert hparams["actor_lr"].number_value == pytest.approx(config["actor_lr"])
    assert hparams["algo"].string_value == config["algo"] and hparams["hidden_sizes"].string_value == "[16, 16]"
    assert hparams["critic_layer_norm"].bool_value is config["critic_layer_norm"]
    assert any("eval/episode_return" in str(e.experiment.metric_infos) for e in experiments)


def test_tensorboard_events_hold_the_metrics_at_each_evaluation(runs):
    scalars, rows = _tb_scalars(runs["A"] / "tb"), _rows(runs["A"])
    for tag in ("eval/episode_return", "train/alpha", "train/trajectory_entropy", "train/entropy_budget"):
        assert sorted(scalars[tag]) == [ONE_CHUNK, TWO_CHUNKS], tag
        for r in rows:
            assert scalars[tag][int(r["env_steps"])] == pytest.approx(r[tag], rel=1e-6), tag


def test_checkpoint_meta_matches_the_run(runs):
    payload, meta = checkpoint.load_meta(str(runs["A"] / "checkpoints"))
    assert meta["env_steps"] == TWO_CHUNKS and meta["evals_done"] == 2 and meta["has_buffer"] is False
    assert meta["best_eval_return"] == _summary(runs["A"])["best_eval_return"]
    # the buffer is in its own file, which latest.ckpt names
    assert not any(p.startswith(".replay") for p in payload["paths"])
    assert meta["replay"] == {"file": f"replay-{TWO_CHUNKS:012d}.ckpt", "env_steps": TWO_CHUNKS}
    replay, replay_meta = checkpoint.load_meta(str(runs["A"] / "checkpoints"), meta["replay"]["file"])
    assert replay_meta == {"env_steps": TWO_CHUNKS} and any(p.startswith(".data") for p in replay["paths"])


def test_first_output_line_names_the_jax_backend(runs):
    for name in ("A", "B1", "C1"):
        first = runs["out"][name].splitlines()[0]
        assert first.startswith("JAX backend: ") and jax.default_backend() in first, first


# --- exact resume ------------------------------------------------------------------------------------
def test_resume_in_a_fresh_process_equals_the_uninterrupted_run(runs):
    a, b = runs["A"], runs["B"]
    assert runs["b_first_summary"]["env_steps"] == ONE_CHUNK
    assert f"resumed {b} at env step {ONE_CHUNK}" in runs["out"]["B2"]

    # The final checkpoints hold bit-identical states.
    payload_a, meta_a = checkpoint.load_meta(str(a / "checkpoints"))
    payload_b, meta_b = checkpoint.load_meta(str(b / "checkpoints"))
    assert payload_b["paths"] == payload_a["paths"]
    differing = [p for p, la, lb in zip(payload_a["paths"], payload_a["leaves"], payload_b["leaves"], strict=True)
                 if la != lb]  # fmt: skip
    assert differing == [], f"{len(differing)} arrays differ after resume, e.g. {differing[:5]}"
    for key in ("env_steps", "evals_done", "best_eval_return", "has_buffer", "replay"):
        assert meta_b[key] == meta_a[key], key
    # and so do their replay buffers (the file latest.ckpt names)
    replay = meta_a["replay"]["file"]
    assert replay == f"replay-{TWO_CHUNKS:012d}.ckpt"
    assert (b / "checkpoints" / replay).read_bytes() == (a / "checkpoints" / replay).read_bytes()
    assert (b / "checkpoints" / checkpoint.LATEST).read_bytes() != runs["b_first_ckpt"]  # it did move on

    # metrics.csv: the same rows, and the resumed chunk's row equals the uninterrupted one.
    rows_a, rows_b = _rows(a), _rows(b)
    assert [r["env_steps"] for r in rows_b] == [ONE_CHUNK, TWO_CHUNKS]
    assert set(rows_b[1]) == set(rows_a[1])
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert {k: v for k, v in ra.items() if k not in TIMING_COLUMNS} == {
            k: v for k, v in rb.items() if k not in TIMING_COLUMNS
        }

    # The summary carries the best return and wall time across the two processes.
    sa, sb = _summary(a), _summary(b)
    assert sb["final_eval_return"] == sa["final_eval_return"] and sb["best_eval_return"] == sa["best_eval_return"]
    assert sb["gradient_steps"] == sa["gradient_steps"] == 2 * UPDATES_PER_CHUNK
    assert sb["wall_time_s"] > runs["b_first_summary"]["wall_time_s"]
    assert rows_b[1]["wall_time_s"] > rows_b[0]["wall_time_s"]


def test_restore_into_a_template_state_gives_the_checkpointed_arrays(runs):
    """checkpoint.restore with a real training state as the template (no compile of the training chunk)."""
    from mjx_tecrl.loop import make_train
    from mjx_tecrl.population import abstract_state
    from mjx_tecrl.rundir import run_members

    with open(runs["A"] / "config.json") as f:
        config = Config.from_dict(json.load(f))
    fns = make_train(config, registry.make(config.env))
    template = abstract_state(fns, config, run_members(config, None))  # a single run: a population of one
    state, meta, replay_steps = checkpoint.restore_run(str(runs["A"] / "checkpoints"), template)
    assert int(state.iteration[0]) * NUM_ENVS == meta["env_steps"] == replay_steps == TWO_CHUNKS
    assert int(state.learner.step[0]) == 2 * UPDATES_PER_CHUNK
    assert state.replay.data.obs.shape[:2] == (1, config.buffer_capacity)


def test_resume_from_a_checkpoint_without_buffer_completes(runs):
    c, total = runs["C"], runs["c_total"]
    payload, meta = runs["c_first_meta"]
    assert meta["has_buffer"] is False and not any(p.startswith(".replay") for p in payload["paths"])
    assert meta["replay"] is None and not any(n.startswith("replay-") for n in os.listdir(c / "checkpoints"))
    assert runs["c_first_summary"]["env_steps"] == ONE_CHUNK

    s = _summary(c)
    assert s["env_steps"] == total and s["interrupted"] is False
    assert s["gradient_steps"] == 2 * UPDATES_PER_CHUNK  # the learner went on from the checkpoint, not from scratch
    assert [r["env_steps"] for r in _rows(c)] == [ONE_CHUNK, total]
    payload, meta = checkpoint.load_meta(str(c / "checkpoints"))
    assert meta["env_steps"] == total and meta["evals_done"] == 2 and meta["has_buffer"] is False
    assert not any(p.startswith(".replay") for p in payload["paths"])
    assert f"resumed {c} at env step {ONE_CHUNK}" in runs["out"]["C2"]


PATCHED_TRAIN = """
import sys
from mjx_tecrl import checkpoint, population
from mjx_tecrl.__main__ import main
def fail(*args, **kwargs):
    raise {error}
{target} = fail
sys.argv = ["train.py", *sys.argv[1:]]
sys.exit(main())
"""


def _patched(target: str, error: str, argv: list[str], cwd: Path, env: dict[str, str]):
    script = PATCHED_TRAIN.format(target=target, error=error)
    return subprocess.run([sys.executable, "-c", script, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_a_failure_beside_a_compile_thread_exits_with_its_own_status_not_an_abort(runs, tmp_path, xla_cache_env):
    """The evaluation compiles on a thread beside the chunk, and the interpreter aborts (status 134) if it exits
    while XLA compiles there. A checkpoint that does not restore stops the run before that thread starts (exit 2,
    one line); a chunk that fails to compile waits for the thread and ends with the chunk's error (exit 1)."""
    run = tmp_path / "A"
    shutil.copytree(runs["A"], run)
    argv = ["--resume", str(run), "--total-steps", str(TWO_CHUNKS + CHUNK), "--no-progress"]
    r = _patched("checkpoint.restore_run", 'checkpoint.CheckpointError("simulated: does not restore")', argv, tmp_path,
                 xla_cache_env)  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert r.stderr.strip().splitlines()[-1].endswith("simulated: does not restore") and "Traceback" not in r.stderr
    argv = _argv(out=tmp_path / "new", total_steps=ONE_CHUNK)
    r = _patched("population.Population.chunk", 'RuntimeError("simulated: no chunk")', argv, tmp_path, xla_cache_env)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "RuntimeError: simulated: no chunk" in r.stderr


def test_resume_refuses_a_changed_non_resumable_flag(runs):
    a = runs["A"]
    before = {p: p.read_bytes() for p in a.rglob("*") if p.is_file()}
    for argv, flag in (
        (["--resume", str(a), "--algo", "sac"], "--algo"),
        (["--resume", str(a), "--num-envs", "8"], "--num-envs"),
        (["--resume", str(a), "--out", str(a) + "-elsewhere", "--total-steps", "999"], "--out"),
    ):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2, argv
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and flag in lines[0], lines
    assert {p: p.read_bytes() for p in a.rglob("*") if p.is_file()} == before
    assert not Path(str(a) + "-elsewhere").exists()


def test_resume_accepts_an_unchanged_flag(runs):
    """Repeating a flag with its saved value is not a change (prepare only; nothing runs)."""

    a = runs["A"]
    plan = rundir.prepare({"resume": str(a), "algo": "dsac-e", "num_envs": NUM_ENVS, "total_steps": 10 * CHUNK})
    assert plan.resume and plan.run_dir == str(a) and plan.config.total_steps == 10 * CHUNK
    assert plan.config.hidden_sizes == (16, 16)


def test_metrics_csv_rows_are_not_duplicated_by_resume(runs):
    for name in ("B", "C"):
        steps = [r["env_steps"] for r in _rows(runs[name])]
        assert steps == sorted(set(steps)), (name, steps)
    assert np.all(np.diff([r["env_steps"] for r in _rows(runs["B"])]) == CHUNK)


def test_the_runs_policy_file_acts_as_its_checkpoint_and_export_rewrites_it(runs, tmp_path):
    """policy.npz, written at the end of the run, is the checkpoint's deterministic policy; `python -m
    mjx_tecrl.export RUN_DIR` writes the same arrays from the checkpoint."""
    from mjx_tecrl.export import NumpyPolicy
    from mjx_tecrl.policy import load_run

    a = runs["A"]
    policy = NumpyPolicy.load(str(a / "policy.npz"))
    run = load_run(str(a))
    obs = np.random.default_rng(0).normal(size=(16, run.env.observation_size)).astype(np.float32)
    jax_action = np.asarray(run.fns.learner.deterministic_action(run.members[0].learner, obs))
    np.testing.assert_allclose(policy.act_unit(obs), jax_action, rtol=1e-5, atol=2e-6)
    before = dict(np.load(a / "policy.npz"))
    r = subprocess.run([sys.executable, "-m", "mjx_tecrl.export", str(a)], capture_output=True, text=True)
    assert r.returncode == 0 and "policy.npz" in r.stdout, r.stderr
    after = dict(np.load(a / "policy.npz"))
    assert sorted(before) == sorted(after) and all(np.array_equal(before[k], after[k]) for k in before)
    bad = subprocess.run([sys.executable, "-m", "mjx_tecrl.export", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "holds no run" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_second_process_on_a_live_run_directory_is_refused_and_a_killed_one_leaves_no_lock(runs, tmp_path):
    """A process holding the run directory (as a training or resuming train.py does) makes `--resume` exit 2 with
    one line before anything is compiled or written; once that process is SIGKILLed, the directory is free."""
    import signal

    a = runs["A"]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mjx_tecrl.rundir import lock; lock(sys.argv[1]); "
         "print('held', flush=True); import time; time.sleep(600)", str(a)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(str(p) for p in a.rglob("*"))
        proc = subprocess.run([sys.executable, TRAIN, "--resume", str(a), "--total-steps", str(TWO_CHUNKS + CHUNK)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 2 and "is being trained by another process" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "compiled" not in proc.stdout
        assert sorted(str(p) for p in a.rglob("*")) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    os.close(rundir.lock(str(a)))  # the kernel released the killed holder's lock


def test_policy_best_is_the_policy_of_the_best_evaluation(runs):
    """policy_best.npz is written whenever an evaluation beats the run's best: its meta names that evaluation, and
    it acts as the checkpoint's policy did then (the final policy, where the last evaluation was the best)."""
    from mjx_tecrl.export import NumpyPolicy

    for name in ("A", "B", "D"):
        rows = _rows(runs[name])
        best = max(range(len(rows)), key=lambda i: (rows[i]["eval/episode_return"], -i))  # the first of equals
        policy = NumpyPolicy.load(str(runs[name] / "policy_best.npz"))
        assert policy.meta["eval_return"] == pytest.approx(rows[best]["eval/episode_return"], rel=1e-6), name
        assert policy.meta["eval_return"] == pytest.approx(_summary(runs[name])["best_eval_return"], rel=1e-6)
        assert policy.meta["env_steps"] == rows[best]["env_steps"], name
        final = NumpyPolicy.load(str(runs[name] / "policy.npz"))
        obs = np.random.default_rng(0).normal(size=(8, final.meta["observation_size"])).astype(np.float32)
        same = np.array_equal(policy.act(obs), final.act(obs))
        assert same == (best == len(rows) - 1), (name, best, len(rows))


def test_progress_callbacks_get_every_evaluation_as_the_run_logs_it(tmp_path, monkeypatch):
    """`run(plan, progress_fn=...)` (brax's progress_fn): called after each evaluation with the env step and one row
    per member, the rows metrics.csv gets; a sweep of two gives two rows, its members' own."""
    from toy_envs import CounterEnv

    from mjx_tecrl import run as run_lib
    from mjx_tecrl.logging import read_csv
    from mjx_tecrl.sweep import SweepSpec

    monkeypatch.setattr(registry, "make", lambda name, **kw: CounterEnv(terminate_after=3))
    flags = {"num_envs": 4, "learning_starts": 4, "eval_every": 16, "total_steps": 36, "hidden_sizes": (16, 16),
             "batch_size": 4, "buffer_size": 64, "num_eval_envs": 2, "progress": False}  # fmt: skip
    for name, sweep in (("single", None), ("sweep", SweepSpec((("rho", (1.0, 2.0)),), 1))):
        calls = []
        plan = rundir.prepare({**flags, "out": str(tmp_path / name)}, sweep)
        run_lib.run(plan, out=io.StringIO(), progress_fn=lambda steps, rows, calls=calls: calls.append((steps, rows)))
        assert [steps for steps, _ in calls] == [20, 36]
        members = 1 if sweep is None else 2
        assert all(len(rows) == members for _, rows in calls)
        for i in range(members):
            logged = read_csv(os.path.join(rundir.metrics_dir(plan.run_dir, i if sweep else None), "metrics.csv"))
            for (steps, rows), row in zip(calls, logged, strict=True):
                assert row["env_steps"] == steps
                assert all(row[k] == pytest.approx(v) for k, v in rows[i].items()), (rows[i], row)


def test_track_logs_every_evaluation_to_weights_and_biases_under_a_stable_id(tmp_path, monkeypatch):
    """RunLogger with `track`: wandb.init gets the project, name, config and an id that follows from the directory
    (a resume continues the same W&B run); every evaluation's scalars go to it at its env step; close finishes it.
    Then the real library, offline, writes that run under the run directory."""
    import hashlib
    import types

    from mjx_tecrl.logging import RunLogger

    calls = []

    class _Run:
        def log(self, metrics, step):
            calls.append(("log", metrics, step))

        def finish(self):
            calls.append(("finish",))

    fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw)) or _Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    track = {"project": "p", "name": "n", "config": {"actor_lr": 3e-4}}
    for _ in range(2):  # a run, then its resume: the same id
        logger = RunLogger(str(tmp_path / "run"), tensorboard=False, track=track)
        logger.scalars({"eval/episode_return": 5.0}, 128)
        logger.close()
    inits = [c[1] for c in calls if c[0] == "init"]
    run_id = hashlib.sha1(str(tmp_path / "run").encode()).hexdigest()[:16]
    assert [i["id"] for i in inits] == [run_id, run_id] and inits[0]["resume"] == "allow"
    assert inits[0]["project"] == "p" and inits[0]["config"] == {"actor_lr": 3e-4}
    assert ("log", {"eval/episode_return": 5.0}, 128) in calls and calls[-1] == ("finish",)

    monkeypatch.delitem(sys.modules, "wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = RunLogger(str(tmp_path / "real"), tensorboard=False, track={"project": "p", "name": "n", "config": {}})
    logger.scalars({"eval/episode_return": 5.0}, 128)
    logger.close()
    real_id = hashlib.sha1(str(tmp_path / "real").encode()).hexdigest()[:16]
    files = list((tmp_path / "real" / "wandb").glob(f"offline-run-*-{real_id}/run-{real_id}.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 0


def test_track_without_wandb_exits_2_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "wandb" else object())
    from mjx_tecrl.config import ConfigError
    from mjx_tecrl.rundir import prepare

    with pytest.raises(ConfigError, match=r"--track needs Weights & Biases: pip install 'mjx_tecrl\[wandb\]'"):
        prepare({**{k: v for k, v in TINY.items() if k != "hidden_sizes"}, "track": True, "out": str(tmp_path / "r")})
    assert not (tmp_path / "r").exists()


# --- checkpoint faults and options (mjx_tecrl.checkpoint.Checkpointer) ------------------------------------------
_FAULTY_DISK = r"""
import errno, os, runpy, sys
from mjx_tecrl import checkpoint
fail_at, exit_after = int(os.environ.get("FAIL_SAVE_AT", 0)), int(os.environ.get("EXIT_AFTER_SAVES", 0))
real_save, calls = checkpoint.save, [0]
def save(directory, state, meta, name=checkpoint.LATEST):
    calls[0] += 1
    if calls[0] == fail_at:  # the disk fills while this file is written
        real_write = checkpoint._write_payload
        def full(f, *args):
            real_write(f, *args)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        checkpoint._write_payload = full
        try:
            return real_save(directory, state, meta, name)
        finally:
            checkpoint._write_payload = real_write
    path = real_save(directory, state, meta, name)
    if calls[0] == exit_after:  # killed right after this file
        os._exit(9)
    return path
checkpoint.save = save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _faulty(argv: list[str], cwd: Path, env: dict[str, str], **faults: int) -> subprocess.CompletedProcess:
    env = {**env, **{k.upper(): str(v) for k, v in faults.items()}}
    return subprocess.run([sys.executable, "-c", _FAULTY_DISK, TRAIN, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip


def test_a_disk_that_fills_during_a_save_stops_the_run_and_leaves_the_previous_checkpoint(tmp_path, xla_cache_env):
    """The second save's replay file (the 3rd file written) hits ENOSPC: the run stops with one line naming the
    directory (exit 4), latest.ckpt of the first chunk loads with its buffer, and --resume finishes the run."""
    run_dir, total = tmp_path / "full", WARMUP + 3 * CHUNK
    proc = _faulty(_argv(out=run_dir, total_steps=total), tmp_path, xla_cache_env, fail_save_at=3)
    ckpt_dir = run_dir / "checkpoints"
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"train.py: stopped: writing a checkpoint in {ckpt_dir} failed (No space left on device); latest.ckpt "
        f"(env step {ONE_CHUNK}) is intact"
    ]
    meta = checkpoint.load_meta(str(ckpt_dir))[1]
    assert meta["env_steps"] == ONE_CHUNK and meta["replay"]["env_steps"] == ONE_CHUNK
    assert not any(n.startswith(".tmp-") for n in os.listdir(ckpt_dir))
    out = _finish(_start(["--resume", str(run_dir), "--no-progress"], tmp_path, xla_cache_env))
    assert f"resumed {run_dir} at env step {ONE_CHUNK}" in out and _summary(run_dir)["env_steps"] == total


def test_buffer_every_k_and_keep_last_n_through_train_py(tmp_path, xla_cache_env):
    """--checkpoint-buffer-every 2 --keep-checkpoints 2: the second save holds no buffer; a process killed right
    after it resumes with the first save's buffer (and says so), keeps training, and ends with the newest two
    saves kept, the last one's buffer and best.ckpt."""
    run_dir, total = tmp_path / "k", WARMUP + 3 * CHUNK
    argv = _argv(out=run_dir, total_steps=total, checkpoint_buffer_every=2, keep_checkpoints=2)
    # files: chunk 1 -> replay, latest; chunk 2 -> latest (killed after it)
    proc = _faulty(argv, tmp_path, xla_cache_env, exit_after_saves=3)
    assert proc.returncode == 9, proc.stderr
    meta = checkpoint.load_meta(str(run_dir / "checkpoints"))[1]
    assert meta["env_steps"] == WARMUP + 2 * CHUNK and meta["replay"]["env_steps"] == ONE_CHUNK
    out = _finish(_start(["--resume", str(run_dir), "--no-progress"], tmp_path, xla_cache_env))
    assert f"note: the replay buffer was saved at env step {ONE_CHUNK} (--checkpoint-buffer-every 2)" in out
    # no warm-up again (it would step the envs WARMUP more): the buffer came back
    assert [r["env_steps"] for r in _rows(run_dir)] == [ONE_CHUNK, WARMUP + 2 * CHUNK, total]
    assert _summary(run_dir)["gradient_steps"] == 3 * UPDATES_PER_CHUNK
    names = sorted(os.listdir(run_dir / "checkpoints"))
    assert [n for n in names if n != checkpoint.BEST] == [
        checkpoint.LATEST, f"replay-{total:012d}.ckpt", f"step-{WARMUP + 2 * CHUNK:012d}.ckpt",
        f"step-{total:012d}.ckpt",
    ]  # fmt: skip
