"""The bench/ scripts' shared helpers do the work they report (the timings themselves are not tested)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import pytest
from toy_envs import CounterEnv

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import _brax  # noqa: E402
import _common as C  # noqa: E402

from mjx_tecrl.loop import make_train  # noqa: E402


def test_learner_case_runs_updates_per_iter_updates_per_iteration(tiny_config, fast_compile):
    config = tiny_config(updates_per_step=1.0, policy_delay=2, batch_size=6)  # 4 per iteration of 4 envs
    fns = make_train(config, CounterEnv())
    learner, replay = C.learner_and_replay(fns)
    assert int(replay.size) >= config.batch_size  # a batch is there to sample
    learner, metrics = C.learner_chunk_fn(fns, iters=2)(learner, replay, jax.random.PRNGKey(0))
    assert int(learner.step) == 2 * 4
    assert all(bool(jnp.isfinite(v)) for v in metrics.values())


def test_sim_case_steps_every_env_and_auto_resets(fast_compile):
    env = CounterEnv()
    state = C.sim_reset(env, num_envs=4)
    state, finished = C.sim_chunk_fn(env, num_envs=4, iters=7, episode_length=5)(state, jax.random.PRNGKey(0))
    assert int(finished) == 4  # each env hit the time limit once (at step 5)
    assert state.episode_step.tolist() == [2, 2, 2, 2]


def test_alternate_is_round_robin_after_a_warm_call():
    calls = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def step(self):
            calls.append(self.name)
            return float(len(calls))

    times = C.alternate({"a": Fake("a"), "b": Fake("b")}, repeats=2)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert times == {"a": [3.0, 5.0], "b": [4.0, 6.0]}


def test_quick_defaults_yield_to_given_flags():
    p = C.parser("x")
    p.add_argument("--envs", type=C.int_list, default="16,64")
    p.add_argument("--iters", type=int, default=100)
    args = C.parse(p, {"envs": [8], "iters": 5}, ["--quick", "--iters=7"])
    assert args.envs == [8] and args.iters == 7


@pytest.mark.parametrize(
    "script, argv, names",
    [("sim", ["--envs", "0"], "--envs"), ("sim", ["--envs", "16,x"], "--envs"),
     ("sim", ["--repeats", "0"], "--repeats"), ("sim", ["--tasks", "nope"], "'nope'"),
     ("gpu", ["--parts", "a,x"], "--parts x"), ("gpu", ["--budget-s", "0"], "--budget-s"),
     ("gpu", ["--train-seconds", "-1"], "--train-seconds"), ("linesearch", ["--iters", "0"], "--iters"),
     ("linesearch", ["--tasks", "nope"], "'nope'"), ("env_groups", ["--groups", "0"], "--groups")],
)  # fmt: skip
def test_bad_flags_exit_2_naming_the_flag(script, argv, names, capsys):
    """bench/sim.py and bench/gpu.py (issue 18): a bad flag is exit 2 and names itself on the last line."""
    import importlib

    with pytest.raises(SystemExit) as e:
        importlib.import_module(script).main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error:" in err[-1] and names in err[-1]


def test_seed_lists_take_zero_where_size_lists_do_not(capsys):
    import argparse

    import time_to_return

    assert C.seed_list("0,1,2") == [0, 1, 2] and C.int_list("1,16") == [1, 16]
    for parse, text in [(C.int_list, "0"), (C.seed_list, "-1"), (C.seed_list, "0,x")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    # Its own default seeds "0,1,2" parse (they once did not): the error is the bad --systems value's.
    with pytest.raises(SystemExit) as e:
        time_to_return.main(["--systems", "nope"])
    assert e.value.code == 2 and "--systems: unknown 'nope'" in capsys.readouterr().err


def test_device_put_replicated_shim_stacks_over_devices():
    devices = jax.local_devices()
    out = _brax.device_put_replicated({"w": jnp.arange(3.0), "s": jnp.float32(2.0)}, devices)
    assert out["w"].shape == (len(devices), 3) and out["s"].shape == (len(devices),)
    assert out["w"].tolist() == [[0.0, 1.0, 2.0]] * len(devices)


def test_shim_hands_brax_evaluator_params_on_one_device_once_wrapped():
    from brax.training import acting

    _brax.install_shim()
    _brax.install_shim()  # idempotent: wrapped once
    assert acting.Evaluator.run_evaluation._on_one_device
    assert not getattr(acting.Evaluator.run_evaluation.__wrapped__, "_on_one_device", False)
    seen = []
    wrapped = _brax._on_one_device(lambda self, params, metrics: seen.append((params, metrics)))
    pmapped = jax.pmap(lambda x: 2 * x)(_brax.device_put_replicated(jnp.arange(3.0), jax.local_devices()[:1]))
    params = {"w": pmapped.addressable_shards[0].data.squeeze(0)}  # as brax's _unpmap hands them over
    wrapped(None, params, {"m": 1})
    ((got, metrics),) = seen
    assert isinstance(got["w"].sharding, jax.sharding.SingleDeviceSharding) and metrics == {"m": 1}
    assert got["w"].tolist() == [0.0, 2.0, 4.0]


class _OneDimEnv:
    """A registry-like env (reset/step on one env) whose state is brax's `State` with a task metric of its own."""

    observation_size, action_size, dt = 1, 1, 0.1

    @property
    def unwrapped(self):
        return self  # not a brax Env: the adapter is needed

    def reset(self, key):
        from brax.envs.base import State

        zero = jnp.zeros(())
        return State(pipeline_state=None, obs=jnp.zeros(1), reward=zero, done=zero, metrics={"x": zero}, info={})

    def step(self, state, action):
        obs = state.obs + action
        return state.replace(obs=obs, reward=obs[0], metrics={"x": obs[0]})  # a fresh dict, as our tasks return


def test_brax_adapter_runs_under_brax_training_and_eval_wrappers(fast_compile, monkeypatch):
    """brax's wrappers add "reward" to `metrics` and need it kept through a step; ours return fresh dicts."""
    from brax.envs.wrappers import training

    monkeypatch.setattr(C, "env", lambda task: _OneDimEnv())
    env = _brax.brax_env("anything")
    assert isinstance(env, _brax.BraxEnvAdapter)
    wrapped = training.EvalWrapper(training.wrap(env, episode_length=3))
    state = jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), 2))

    def steps(state):
        return jax.lax.scan(lambda s, _: (wrapped.step(s, jnp.ones((2, 1))), None), state, None, length=4)[0]

    state = jax.jit(steps)(state)
    assert {"x", "reward"} <= set(state.metrics)
    # four steps of +1 with a 3-step time limit: the first episode ended at t = 3 and the next began from 0
    assert state.obs.tolist() == [[1.0], [1.0]]
    assert state.info["eval_metrics"].episode_metrics["reward"].tolist() == [6.0, 6.0]  # 1 + 2 + 3


def test_time_to_return_cases_take_an_eval_interval_of_their_own():
    import argparse

    import time_to_return

    assert time_to_return.case_list("tuned:32,parallel:256:40960") == [("tuned", 32, None), ("parallel", 256, 40960)]
    for bad in ("parallel:256:0", "parallel:256:1:2", "fast:32", "tuned"):
        with pytest.raises(argparse.ArgumentTypeError, match="PRESET:NUM_ENVS"):
            time_to_return.case_list(bad)


def test_time_to_return_window_reads_the_mean_of_recent_evaluations(capsys):
    """(steps, wall, return): one lucky draw of 6 at 30 s crosses 5 alone; the 20 s window's mean (3 and 6, and
    then 6 and 5.5) reaches 5 only at 40 s. Evaluations exactly `window` s back are out of it."""
    import time_to_return as ttr

    evals = [(1, 10.0, 2.0), (2, 20.0, 3.0), (3, 30.0, 6.0), (4, 40.0, 5.5)]
    assert ttr.reached_at(evals, 5.0) == 2 and ttr.reached_at(evals, 5.0, window=20.0) == 3
    assert ttr.window_mean(evals, 2, 20.0) == 4.5 and ttr.window_mean(evals, -1, 20.0) == 5.75
    assert ttr.window_mean(evals, 3, 1e9) == 4.125 and ttr.reached_at(evals, 7.0, 5.0) is None
    result = ttr._result(evals, 1.0, 41.0, 5.0, 20.0)
    assert (result["env_steps_to_threshold"], result["wall_to_threshold_s"], result["wall_minus_compile_s"]) == (
        4, 40.0, 39.0)  # fmt: skip
    with pytest.raises(SystemExit) as e:
        ttr.main(["--window", "-1"])
    assert e.value.code == 2 and "--window: -1 is not" in capsys.readouterr().err


def test_time_to_return_figure_groups_runs_and_refuses_other_json(tmp_path, capsys):
    """Rows of two cases of one task, out of seed order: one panel, the cases in the order they came, each case's
    seeds sorted; the figure is a PNG. A JSON without the bench's rows exits 2 with one line and writes nothing."""
    import time_to_return_figure as ttf

    run = dict(task="halfcheetah", threshold=10.0)
    rows = [
        dict(run, system="dsac-e parallel:64", seed=1, reached=False, wall_to_threshold_s=None, evals=[[8, 5.0, 2.0]]),
        dict(run, system="dsac-e tuned:32", seed=1, reached=True, wall_to_threshold_s=6.0,
             evals=[[4, 3.0, 4.0], [8, 6.0, 12.0]]),
        dict(run, system="dsac-e tuned:32", seed=0, reached=False, wall_to_threshold_s=None, evals=[]),
    ]  # fmt: skip
    grouped = ttf.runs_by_task(rows)
    assert list(grouped) == ["halfcheetah"]
    assert list(grouped["halfcheetah"]) == ["dsac-e parallel:64", "dsac-e tuned:32"]
    assert [r["seed"] for r in grouped["halfcheetah"]["dsac-e tuned:32"]] == [0, 1]
    good, out = tmp_path / "ttr.json", tmp_path / "fig.png"
    good.write_text(json.dumps({"rows": rows}))
    assert ttf.main([str(good), "--out", str(out)]) == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad, nothing = tmp_path / "other.json", tmp_path / "no.png"
    bad.write_text(json.dumps({"rows": [{"task": "halfcheetah"}]}))
    with pytest.raises(SystemExit) as e:
        ttf.main([str(bad), "--out", str(nothing)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "other.json is not a JSON written by" in err
    assert not nothing.exists()


def test_time_to_return_counts_env_steps_as_iterations_times_envs(tiny_config, fast_compile):
    """Its loop reports the env steps at each evaluation: the warm-up (3 iterations of 4 envs, run as chunks of 2
    and 1) and then chunks of 2 iterations. The warm-up's loop once reused `n`, the env count, so every step count
    after it was iterations x 1 (the last warm-up chunk's length)."""
    import time_to_return

    config = tiny_config(learning_starts=12, eval_every=8, total_steps=24)
    result = time_to_return.run_ours(config, threshold=float("inf"), time_cap=600.0)
    assert [e[0] for e in result["evals"]] == [20, 28] and not result["reached"]


def test_update_breakdown_cases_leave_out_only_what_they_name(tiny_config, fast_compile):
    import update_breakdown as ub

    fns = make_train(tiny_config(updates_per_step=0.5, policy_delay=1, batch_size=6), CounterEnv())
    learner, replay = C.learner_and_replay(fns)
    after = {}
    for variant in ("full", "no_metrics", "critic_only", "gelu_tanh"):
        chunk = jax.jit(ub._chunk(ub._with_activation(fns, variant), variant, iters=2))
        after[variant], metrics = chunk(C.copy_tree(learner), replay, jax.random.PRNGKey(3))
        assert bool(metrics) == (variant != "no_metrics")
    leaves = lambda tree: jax.tree.leaves(tree.actor_params)  # noqa: E731
    same = lambda a, b: all(  # noqa: E731 - XLA may fuse the two programs differently: float rounding only
        bool(jnp.allclose(x, y, rtol=1e-5, atol=1e-7)) for x, y in zip(leaves(a), leaves(b), strict=True)
    )
    assert same(after["full"], after["no_metrics"])  # dropping the metrics changes nothing that learns
    assert same(after["critic_only"], learner)  # the actor never stepped
    assert not same(after["full"], learner) and not same(after["gelu_tanh"], after["full"])


def test_linesearch_quick_times_both_loops_and_finds_the_same_numbers(tmp_path):
    """bench/linesearch.py at toy sizes: a row with both variants' env steps/s and no difference in their outputs."""
    import linesearch

    out = tmp_path / "linesearch.json"
    linesearch.main(["--quick", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert set(row["env_steps_per_s"]) == {"scan", "early_exit"} and min(row["env_steps_per_s"].values()) > 0
    assert row["max_abs_difference"] == {"scan": 0.0, "early_exit": 0.0} and row["speedup"]["early_exit"] > 0


def test_env_groups_quick_times_one_batch_against_groups(tmp_path):
    """bench/env_groups.py at toy sizes: one batch against groups of 4, both timed, their outputs close."""
    import env_groups

    out = tmp_path / "env_groups.json"
    env_groups.main(["--quick", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert set(row["env_steps_per_s"]) == {"one_batch", "groups_of_4"} and min(row["env_steps_per_s"].values()) > 0
    assert row["max_abs_difference"]["one_batch"] == 0.0 and row["max_abs_difference"]["groups_of_4"] < 1e-4


# --- bench/gpu.py (issue 18): its flags above, the whole script at toy sizes under -m slow -----------------
def test_gpu_script_interrupts_a_run_after_its_compile_and_time(tmp_path):
    """The train parts stop train.py with SIGINT a set time after 'compiled in' (so it writes its summary)."""
    import gpu

    script = tmp_path / "fake_train.py"
    script.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *a: (print('interrupted', flush=True), sys.exit(0)))\n"
        "print('compiled in 0.1s', flush=True)\n"
        "time.sleep(30)\n"
    )
    t0 = time.time()
    result = gpu.run_command([sys.executable, str(script)], timeout=20, interrupt_after=1.0)
    assert result["rc"] == 0 and not result["timed_out"] and "interrupted" in result["output_tail"]
    assert time.time() - t0 < 10
    killed = gpu.run_command([sys.executable, str(script)], timeout=2)  # no interrupt: killed at the deadline
    assert killed["timed_out"] and killed["rc"] != 0


@pytest.mark.slow
def test_gpu_script_quick_runs_its_parts_and_writes_what_finished(tmp_path):
    """(a) and (d) at toy sizes on the CPU: the train runs stop on time and report; the JSON holds both parts."""
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, os.path.join(os.path.dirname(C.__file__), "gpu.py"), "--quick", "--parts", "a,d",
           "--train-seconds", "5", "--sweep-seconds", "5", "--budget-s", "900", "--work-dir", str(tmp_path / "w"),
           "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=1200)
    report = json.loads(out.read_text())
    train = report["parts"]["a"]["train"]
    assert train["rc"] == 130 and train["summary"]["interrupted"] and train["evals"]  # 130: stopped as asked
    assert train["summary"]["compile_time_s"] > 0 and train["summary"]["env_steps_per_second"] > 0
    d = report["parts"]["d"]
    assert d["sweep"]["rc"] == 130 and d["sweep"]["summary"]["members"] == 2 and d["robustness"]["rc"] == 0
    assert "1000 points" in " ".join(d["robustness"]["output_tail"])


def test_checkpoint_cost_quick_times_every_case_and_the_before_save_is_the_old_revisions(tmp_path):
    """bench/checkpoint_cost.py (issue 21) at toy sizes: a row per case; 'before' is checkpoint.py at the given
    git revision (the blob writer, before the Checkpointer existed)."""
    import checkpoint_cost

    before = checkpoint_cost.load_before("8b555fe")
    if before is not None:  # a clone with that history (CI's is one)
        assert hasattr(before, "save") and not hasattr(before, "Checkpointer")
    assert checkpoint_cost.load_before("no-such-revision") is None
    out = tmp_path / "cost.json"
    checkpoint_cost.main(["--quick", "--out", str(out)])
    rows = {r["case"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"none", "streamed", "background"} | ({"before"} if before is not None else set())
    assert rows["none"]["save_cost_s"] == 0 and all(r["state_gb"] > 0.02 for r in rows.values())


def test_reference_learning_cut_at_compares_runs_stopped_at_a_common_step(tmp_path):
    """--cut-at: a run stopped without its summary.json is reported once its evaluations reach the step, and its
    curve (and so its score, the mean of the last three evaluations) ends there."""
    import reference_learning as R

    run = tmp_path / "walker2d" / "dsac-e"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"env": "walker2d", "algo": "dsac-e", "seed": 0}))
    rows = ["env_steps,wall_time_s,eval/episode_return"] + [f"{s},{s / 10},{s / 100}" for s in range(5000, 45000, 5000)]
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    assert not R._reportable(str(run), 0) and not R._reportable(str(run), 50_000) and R._reportable(str(run), 30_000)
    (record,) = R._curves({"task": "walker2d", "system": "dsac-e", "dir": str(run)}, cut_at=30_000)
    assert record["env_steps"][-1] == 30_000 and record["wall_s"] == 3000.0
    assert R.score(record["env_steps"], record["eval_return"]) == pytest.approx((200 + 250 + 300) / 3)


def test_reference_learning_merge_adds_an_earlier_reports_runs_where_this_one_has_none(tmp_path):
    """--merge: the runs of an earlier report (their directories gone) join the table, unless this report has the
    same task, system and seed; the figure is drawn from the records."""
    import reference_learning as R

    def record(system, seed, value):
        return {"task": "walker2d", "system": system, "seed": seed, "env_steps": [5000.0, 10000.0, 15000.0],
                "eval_return": [value, value + 1, value + 2], "alpha": [0.5, 0.2, 0.1], "wall_s": 10.0,
                "seeds_in_program": 1}  # fmt: skip

    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"runs": [record("dsac-e", 0, 100.0), record("sac", 0, 999.0),
                                            {**record("dsac-e", 1, 7.0), "task": "hopper"}]}))  # fmt: skip
    live = [record("sac", 0, 50.0)]
    merged = R._merged([str(earlier)], live, ["walker2d"])
    assert [(r["system"], r["seed"]) for r in merged] == [("dsac-e", 0)]  # sac 0 is this report's; hopper not asked
    rows = R._summarise(live + merged, 5000)
    assert {r["system"]: r["score"]["median"] for r in rows} == {"dsac-e": 101.0, "sac": 51.0}
    assert R._table_row(rows[0])[-1] == "10 s"  # one seed per program
    mixed = R._summarise(
        [{**record("sac", 0, 1.0), "seeds_in_program": 3}, {**record("sac", 3, 1.0), "seeds_in_program": 2}], 5000
    )
    assert R._table_row(mixed[0])[-1] == "10 s (median; programs of 2 and 3 seeds)"  # seeds 3, 4 merged with 0-2
    R._records_figures(str(tmp_path / "figs"), live + merged)
    assert (tmp_path / "figs" / "learning_walker2d.png").stat().st_size > 10_000


def test_reference_learning_first_seed_runs_the_next_seeds_of_every_system(tmp_path, capsys):
    """--first-seed 3 --seeds 2: ours runs seeds 3 and 4 as one program (train.py --seed 3 --seeds 2), SB3 one
    process per seed, s3 and s4; a negative first seed is refused before anything is written."""
    import reference_learning as R

    args = types.SimpleNamespace(runs_dir=str(tmp_path), sb3_dir=str(tmp_path), steps=100, eval_every=50, extra="",
                                 seeds=2, first_seed=3, torch_threads=1, gamma=None)  # fmt: skip
    cmd = R._ours_job(args, "hopper", "dsac-e", 50)["cmd"]
    assert cmd[cmd.index("--seed") + 1] == "3" and cmd[cmd.index("--seeds") + 1] == "2"
    sb3 = [R._sb3_job(args, "hopper", seed, 50) for seed in R._seeds(args)]
    assert [j["cmd"][j["cmd"].index("--seed") + 1] for j in sb3] == ["3", "4"]
    assert [os.path.basename(j["dir"]) for j in sb3] == ["s3", "s4"]
    out = tmp_path / "report.json"
    with pytest.raises(SystemExit) as e:
        R.main(["--first-seed", "-1", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)])
    assert e.value.code == 2 and "--first-seed: -1" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "runs").exists()
    # seeds 0-2's finished run in the same --runs-dir would be reported as seeds 3-4: refused, naming the run
    run = tmp_path / "runs" / "hopper" / "dsac-e"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"env": "hopper", "algo": "dsac-e", "seed": 0}))
    (run / "summary.json").write_text("{}")
    argv = ["--tasks", "hopper", "--systems", "dsac-e", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]
    with pytest.raises(SystemExit) as e:
        R.main([*argv, "--first-seed", "3", "--report-only"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"--first-seed: 3, but {run} holds a run from seed 0" in err and not out.exists()


def test_reference_learning_gamma_reaches_every_system_and_a_shared_sb3_run_of_another_gamma_is_refused(
    tmp_path, capsys
):
    """--gamma goes to ours (train.py --gamma) and to SB3 (bench/_sb3.py --gamma); without it neither gets the flag
    (each uses the task's preset gamma). SB3's runs are shared by variants of ours, so one recorded at another gamma
    is refused, naming it; a bad --gamma, or --gamma inside --extra, is refused before anything is written."""
    import reference_learning as R

    args = types.SimpleNamespace(runs_dir=str(tmp_path), sb3_dir=str(tmp_path), steps=100, eval_every=50, extra="",
                                 seeds=1, first_seed=0, torch_threads=1, gamma=0.9999)  # fmt: skip
    for job in (R._ours_job(args, "hopper", "dsac-e", 50), R._sb3_job(args, "hopper", 0, 50)):
        assert job["cmd"][job["cmd"].index("--gamma") + 1] == "0.9999"
    args.gamma = None
    assert "--gamma" not in R._ours_job(args, "hopper", "dsac-e", 50)["cmd"] + R._sb3_job(args, "hopper", 0, 50)["cmd"]

    run = tmp_path / "runs" / "hopper" / "sb3-sac" / "s0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"env": "hopper", "algo": "sb3-sac", "seed": 0, "gamma": 0.99}))
    out = tmp_path / "report.json"
    argv = ["--tasks", "hopper", "--systems", "sb3-sac", "--seeds", "1", "--runs-dir", str(tmp_path / "runs"),
            "--out", str(out), "--report-only"]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        R.main([*argv, "--gamma", "0.9999"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"--gamma: 0.9999, but {run} holds an SB3 run at gamma 0.99" in err
    R.main(argv)  # the task's own gamma, 0.99: the run is this invocation's
    assert out.exists()
    out.unlink()
    for bad, message in (
        (["--gamma", "1.5"], "--gamma 1.5 must lie in (0, 1)"),
        (
            ["--extra", "--gamma 0.9"],
            "--extra: --gamma is not allowed there",
        ),
    ):
        with pytest.raises(SystemExit) as e:
            R.main([*argv, *bad])
        assert e.value.code == 2 and message in capsys.readouterr().err and not out.exists()


def test_entropy_lag_models_an_ideal_critic_by_hand_and_refuses_bad_input(tmp_path, capsys):
    """bench/entropy_lag.py (docs/decisions.md, "The entropy critic's lag"): two backups at gamma 0.5, one per 5
    updates, of entropies logged as 1 at step 0 and 3 at step 10: depth 1 from step 10 (3), depth 2 from step 5
    (2): Q_e = 0.5 * 3 + 0.25 * 2, D = 0.75, the reading (3 + 2) / 1.75; a constant entropy reads as itself."""
    import entropy_lag

    reading, d = entropy_lag.ideal_reading([0.0, 10.0], [1.0, 3.0], 10.0, 0.5, 0, 1.0, 5.0)
    assert d == pytest.approx(0.75) and reading == pytest.approx(5.0 / 1.75)
    reading, _ = entropy_lag.ideal_reading([0.0, 1e5], [-2.0, -2.0], 9e4, 0.9999, 1e4, 1.0, 46.0)
    assert reading == pytest.approx(-2.0)
    assert entropy_lag.main([str(tmp_path / "missing")]) == 2
    assert entropy_lag.main([str(tmp_path), "--updates-per-backup", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "is not a directory" in err[0] and "--updates-per-backup 0" in err[1]


def test_same_training_finds_any_changed_parameter_or_metric_but_not_the_clock(tmp_path, capsys):
    """bench/same_training.py: two sweeps of two members with identical parameters and metrics (their clocks and
    settings records differ) are the same; one parameter moved by 1e-7 in one member, or one loss, is not; a folder
    that is not a run exits 2."""
    import numpy as np
    import same_training

    def run(name, wall=1.0, param=0.5, loss=2.0):
        d = tmp_path / name
        (d / "members").mkdir(parents=True)
        (d / "config.json").write_text("{}")
        (d / "sweep.json").write_text(json.dumps({"members": [{"member": 0}, {"member": 1}]}))
        for i in (0, 1):
            m = d / "members" / f"m{i:03d}"
            m.mkdir()
            rows = f"env_steps,wall_time_s,eval/episode_return,train/loss_actor\n10,{wall},3.0,{loss if i else 2.0}\n"
            (m / "metrics.csv").write_text(rows)
            w = np.full((2, 3), 0.5, np.float32)
            w[1, 2] = param if i else 0.5
            np.savez(m / "policy.npz", **{"actor/kernel": w, "meta": np.frombuffer(name.encode(), np.uint8)})
        return str(d)

    base = run("a")
    assert same_training.main([base, run("b", wall=9.0)]) == 0
    assert same_training.main([base, run("c", param=np.float32(0.5) + np.float32(1e-7))]) == 1
    assert same_training.main([base, run("d", loss=2.5)]) == 1
    assert same_training.main([base, str(tmp_path / "missing")]) == 2
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[2] == "same training" and lines[-1] == "different training"
    assert "differing: train/loss_actor" in lines[-2] and "differing: none" in lines[-3]
    assert "policy's largest difference 0;" not in lines[4] and "is not a run directory" in out.err
