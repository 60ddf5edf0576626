"""Sweeps: grid parsing and errors, member planning, and the vmapped program equal to runs one at a time.

The program-level tests use the toy CounterEnv (cheap to compile); the sharded one runs in a subprocess
with two forced CPU devices. The train.py end-to-end sweep is in test_sweep_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from toy_envs import CounterEnv

from mjx_tecrl import cli, population
from mjx_tecrl import sweep as sweep_lib
from mjx_tecrl.config import ConfigError
from mjx_tecrl.loop import make_train
from mjx_tecrl.population import Population
from mjx_tecrl.rundir import RunPlan

HERE = Path(__file__).resolve().parent


# --- parsing -------------------------------------------------------------------------------------
def test_axis_parses_names_and_values():
    assert sweep_lib.parse_axis("rho=1,5,10") == ("rho", (1.0, 5.0, 10.0))
    assert sweep_lib.parse_axis("actor-lr=1e-4, 3e-4") == ("actor_lr", (1e-4, 3e-4))


@pytest.mark.parametrize(
    "text, words",
    [
        ("rho", "NAME=V1,V2"),
        ("=1,2", "NAME=V1,V2"),
        ("bogus=1,2", "'bogus' is not a hyperparameter"),
        ("num_envs=4,8", "'num_envs' is static"),
        ("algo=1,2", "one sweep per algo"),
        ("rho=", "empty value list"),
        ("rho=1,,2", "empty value list"),
        ("rho=1,x", "'x' is not a number"),
        ("rho=1,inf", "finite"),
        ("rho=1,1", "lists a value twice"),
    ],
)
def test_bad_axes_are_one_line_errors_naming_the_flag(text, words):
    with pytest.raises(ConfigError) as e:
        sweep_lib.parse_axis(text)
    msg = str(e.value)
    assert msg.startswith("--sweep") and words in msg and "\n" not in msg


def test_no_sweep_flags_mean_a_single_run():
    assert sweep_lib.parse_sweep([], None) is None
    assert sweep_lib.parse_sweep([], 1) is None
    assert sweep_lib.parse_sweep([], 3) == sweep_lib.SweepSpec((), 3)


@pytest.mark.parametrize("seeds", [0, -2])
def test_bad_seed_counts_are_refused(seeds):
    with pytest.raises(ConfigError, match="--seeds"):
        sweep_lib.parse_sweep(["rho=1,2"], seeds)


def test_an_axis_given_twice_is_refused():
    with pytest.raises(ConfigError, match="given twice"):
        sweep_lib.parse_sweep(["rho=1,2", "rho=3"], None)


def test_members_are_the_product_with_seeds_innermost():
    spec = sweep_lib.parse_sweep(["rho=1,5", "gamma=0.9,0.99,0.999"], 2)
    members = spec.members(base_seed=10)
    assert len(members) == 2 * 3 * 2
    assert [m["member"] for m in members] == list(range(12))
    assert [m["seed"] for m in members[:4]] == [10, 11, 10, 11]
    assert members[0]["hyperparams"] == {"rho": 1.0, "gamma": 0.9}
    assert members[3]["hyperparams"] == {"rho": 1.0, "gamma": 0.99}
    assert members[-1]["hyperparams"] == {"rho": 5.0, "gamma": 0.999}
    assert sweep_lib.SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_a_member_value_invalid_on_its_own_is_refused(tiny_config):
    spec = sweep_lib.parse_sweep(["gamma=0.9,1.5"], None)
    with pytest.raises(ConfigError, match=r"--sweep gamma=1.5: --gamma 1.5 must lie in \(0, 1\)"):
        sweep_lib.check_members(tiny_config(), spec)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--sweep", "num_envs=4,8"], "'num_envs' is static"),
        (["--sweep", "rho=1,zz"], "'zz' is not a number"),
        (["--sweep", "rho=1,2", "--seeds", "0"], "--seeds 0"),
        (["--sweep", "actor_lr=-1,1e-3"], "--sweep actor_lr=-1: --actor-lr -1.0 must be positive"),
        (["--coordinator", "x:1"], "go together"),
    ],
)
def test_bad_grids_exit_2_with_one_line_before_anything_is_written(argv, words, capsys, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert not out.exists()


# --- summaries -----------------------------------------------------------------------------------
def test_area_under_curve_is_the_trapezoid_mean():
    # (0,0) -> (10,10) -> (20,10): area 50 + 100 = 150 over 20 steps.
    assert sweep_lib.area_under_curve(np.array([0, 10, 20]), np.array([0.0, 10.0, 10.0])) == pytest.approx(7.5)


def test_bootstrap_interval_brackets_the_mean_and_ignores_nan():
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    lo, hi = sweep_lib.bootstrap_ci(x)
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert sweep_lib.bootstrap_ci(np.array([5.0])) == (5.0, 5.0)


def test_group_table_reports_each_grid_point_across_seeds():
    rows = [
        {"rho": 1.0, "final_eval_return": 10.0, "best_eval_return": 12.0, "diverged_at_env_step": ""},
        {"rho": 1.0, "final_eval_return": 20.0, "best_eval_return": 22.0, "diverged_at_env_step": ""},
        {"rho": 5.0, "final_eval_return": 30.0, "best_eval_return": 30.0, "diverged_at_env_step": 64},
    ]
    lines = sweep_lib.group_table(rows, ("rho",)).splitlines()
    assert len(lines) == 3
    assert "15.0 ± 5.0" in lines[1] and "17.0" in lines[1]
    assert lines[2].split()[-1] == "1"  # one diverged member at rho 5


# --- the vmapped program -------------------------------------------------------------------------
MEMBERS = [
    {"member": 0, "seed": 3, "hyperparams": {"rho": 1.0, "actor_lr": 1e-3}},
    {"member": 1, "seed": 4, "hyperparams": {"rho": 7.0, "actor_lr": 3e-3}},
]


def _sweep_plan(config):
    spec = sweep_lib.SweepSpec((("rho", (1.0, 7.0)), ("actor_lr", (1e-3, 3e-3))), 1)
    return RunPlan(config, "unused", False, spec, tuple(MEMBERS))


@pytest.fixture(scope="module")
def toy(tiny_config):
    config = tiny_config(learning_starts=16, num_envs=4, policy_delay=1)
    return config, make_train(config, CounterEnv(terminate_after=3))


def _leaves_close(a, b, rtol=1e-5, atol=1e-6):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_a_sweep_of_two_members_equals_the_two_runs_one_at_a_time(toy):
    config, fns = toy
    prog = Population.build(_sweep_plan(config), fns)
    ts = prog.init()
    ts, _ = jax.jit(prog.warmup)(ts)
    chunk = jax.jit(prog.chunk)
    for _ in range(2):
        ts, metrics = chunk(ts)
    evaluation = jax.jit(prog.evaluate)(ts.learner, prog.eval_keys(1))

    single_chunk = jax.jit(fns.run_chunk)
    for i, m in enumerate(MEMBERS):
        hp = population.stacked_hyperparams(config, [m])
        one = fns.init(jax.random.PRNGKey(m["seed"]), jax.tree.map(lambda x: x[0], hp))
        one, _ = jax.jit(fns.warmup)(one)
        for _ in range(2):
            one, one_metrics = single_chunk(one)
        key = jax.random.fold_in(jax.random.PRNGKey(m["seed"] + 1_000_003), 1)
        one_eval = jax.jit(fns.evaluate)(one.learner, key)
        member = jax.tree.map(lambda x, i=i: x[i], ts)
        _leaves_close(member, one)
        _leaves_close({k: v[i] for k, v in metrics.items()}, one_metrics)
        _leaves_close({k: v[i] for k, v in evaluation.items()}, one_eval)
        assert float(member.learner.hyperparams.rho) == m["hyperparams"]["rho"]
    # The members really differ (different seeds and hyperparameters): the test could fail.
    assert not np.allclose(np.asarray(ts.learner.log_alpha[0]), np.asarray(ts.learner.log_alpha[1]))


def test_a_single_run_is_a_population_of_one_that_computes_the_plain_functions_numbers(toy):
    """A single run's state carries the member axis (size 1) through every program of the host loop, and computes
    exactly, bit for bit, what the functions compute without the axis (`population.lift`)."""
    config, fns = toy
    prog = Population.build(RunPlan(config, "unused", False, None, ({"member": 0, "seed": 5},)), fns)
    ts = prog.init()
    assert all(x.shape[0] == 1 for x in jax.tree.leaves(ts))
    ts, _ = jax.jit(prog.warmup)(ts)
    ts, metrics = jax.jit(prog.chunk)(ts)
    evaluation = jax.jit(prog.evaluate)(ts.learner, prog.eval_keys(1))

    one, _ = jax.jit(fns.warmup)(fns.init(jax.random.PRNGKey(5)))
    one, one_metrics = jax.jit(fns.run_chunk)(one)
    one_eval = jax.jit(fns.evaluate)(one.learner, jax.random.fold_in(jax.random.PRNGKey(5 + 1_000_003), 1))
    for got, want in ((ts, one), (metrics, one_metrics), (evaluation, one_eval)):
        got = jax.tree.map(lambda x: x[0], got)
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    assert prog.rows(jax.device_get(metrics)) == [{k: float(v) for k, v in one_metrics.items()}]


SHARDED_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    import jax, numpy as np
    from conftest import _tiny_config
    from toy_envs import CounterEnv
    from mjx_tecrl import sweep as sweep_lib
    from mjx_tecrl.loop import make_train
    from mjx_tecrl.population import Population
    from mjx_tecrl.rundir import RunPlan
    jax.config.update("jax_disable_most_optimizations", True)
    config = _tiny_config(learning_starts=16, num_envs=4, policy_delay=1)
    fns = make_train(config, CounterEnv(terminate_after=3))
    if {single!r}:
        plan = RunPlan(config, "unused", False, None, ({{"member": 0, "seed": 3}},))
    else:
        spec = sweep_lib.SweepSpec((("rho", (1.0, 7.0)),), 2)
        plan = RunPlan(config, "unused", False, spec, tuple(spec.members(3)))
    prog = Population.build(plan, fns)
    ts = prog.init()
    ts, _ = prog.jit(prog.warmup, donate=True)(ts)
    chunk = prog.jit(prog.chunk, donate=True).lower(ts).compile()
    for _ in range(2):
        ts, metrics = chunk(ts)
    devices = {{len(x.sharding.device_set) for x in jax.tree.leaves(ts)}}
    env_split = all(x.sharding.shard_shape(x.shape)[1] * jax.device_count() == x.shape[1]
                    for x in jax.tree.leaves(ts.env))
    rest_whole = all(x.sharding.is_fully_replicated for x in jax.tree.leaves(ts.replace(env=None)))
    leaves = [np.asarray(x) for x in jax.tree.leaves(prog.to_host(ts))]
    np.savez(sys.argv[1], devices=np.array(sorted(devices)), n=jax.device_count(), env_split=env_split,
             rest_whole=rest_whole, *leaves)
    """
)


def _run_script(out: Path, devices: int, single: bool = False) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    script = SHARDED_SCRIPT.format(tests=str(HERE), single=single)
    proc = subprocess.run([sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


def test_a_sweep_sharded_over_two_devices_equals_the_unsharded_one(tmp_path):
    sharded = _run_script(tmp_path / "two.npz", 2)
    single = _run_script(tmp_path / "one.npz", 1)
    assert int(sharded["n"]) == 2 and list(sharded["devices"]) == [2]  # every leaf split over both devices
    assert int(single["n"]) == 1
    keys = [k for k in single if k.startswith("arr_")]
    assert keys and set(keys) == {k for k in sharded if k.startswith("arr_")}
    for k in keys:
        np.testing.assert_allclose(sharded[k], single[k], rtol=1e-5, atol=1e-6)


def test_a_single_run_splits_its_environments_over_two_devices_and_equals_the_unsharded_one(tmp_path):
    """The same mesh rule for one member: the member axis takes one device, its environments are split over the
    devices left (`population.mesh_shape`), everything else is whole on each."""
    sharded = _run_script(tmp_path / "two.npz", 2, single=True)
    single = _run_script(tmp_path / "one.npz", 1, single=True)
    assert int(sharded["n"]) == 2 and list(sharded["devices"]) == [2]
    assert bool(sharded["env_split"]) and bool(sharded["rest_whole"])
    keys = [k for k in single if k.startswith("arr_")]
    assert keys and set(keys) == {k for k in sharded if k.startswith("arr_")}
    for k in keys:
        np.testing.assert_allclose(sharded[k], single[k], rtol=1e-5, atol=1e-6)
