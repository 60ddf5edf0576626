"""Numerical blow-ups. A diverged env is reset, counted, and kept out of the replay buffer; a NaN or inf in a
loss, gradient norm, parameter or observation is reported by the chunk (first bad iteration per quantity) and
stops the run with exit status 3, naming the quantity and the env step, the last good checkpoint intact."""

from __future__ import annotations

import contextlib
import io
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mjx_tecrl.envs import registry
from toy_envs import CounterEnv, DivergingEnv, HugeRewardEnv

from mjx_tecrl import checkpoint, cli, health, replay, rollout
from mjx_tecrl.loop import NONFINITE_PREFIX, make_train
from mjx_tecrl.types import Transition

pytestmark = pytest.mark.usefixtures("fast_compile")

_step = jax.jit(rollout.step_with_mask, static_argnums=(0, 4))


# --- rollout: a diverged env is reset, counted and marked invalid ------------------------------------
@pytest.mark.parametrize("mode", DivergingEnv.MODES)
def test_a_diverged_env_is_reset_counted_and_marked_invalid(mode):
    env, n = DivergingEnv(mode), 4
    key = jax.random.PRNGKey(0)
    state = rollout.reset(env, key, n)
    calm = jnp.zeros((n, 1))
    for i in range(2):
        state, _, stats, valid = _step(env, state, calm, jax.random.fold_in(key, i), 100)
        assert bool(jnp.all(valid)) and float(stats.diverged) == 0.0
    ids = np.asarray(state.sim.episode_id)
    action = calm.at[2, 0].set(1.0)  # env 2 diverges
    new, tr, stats, valid = _step(env, state, action, jax.random.fold_in(key, 2), 100)
    np.testing.assert_array_equal(np.asarray(valid), [True, True, False, True])
    assert float(stats.diverged) == 1.0 and float(stats.count) == 0.0  # not a completed episode
    # env 2 starts afresh; the others carry on
    np.testing.assert_array_equal(np.asarray(new.episode_step), [3, 3, 0, 3])
    assert float(new.episode_return[2]) == 0.0 and float(new.episode_return[0]) == 3.0
    assert int(new.sim.t[2]) == 0 and float(new.sim.episode_id[2]) != ids[2]
    for leaf in jax.tree.leaves(new.sim):
        assert np.all(np.isfinite(np.asarray(leaf)))
    np.testing.assert_array_equal(np.asarray(new.sim.obs[[0, 1, 3], 0]), 3.0)
    assert np.all(np.asarray(tr.reward)[[0, 1, 3]] == 1.0)


def test_qvel_below_the_divergence_limit_is_not_divergence():
    env = DivergingEnv("huge_qvel")
    sim = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 3))
    ps = sim.pipeline_state
    sim = sim.replace(pipeline_state=ps.replace(qvel=jnp.array([[0.5e6], [-0.99e6], [-2e6]])))
    np.testing.assert_array_equal(np.asarray(rollout.diverged(sim)), [False, False, True])
    assert rollout.DIVERGENCE_LIMIT == 1e6


def test_divergence_reads_qpos_and_qvel_of_a_real_mjx_state():
    """The state structure of brax's MJX inverted_pendulum (abstract: nothing compiled), filled with zeros."""
    env = registry.make("inverted_pendulum")
    shapes = jax.eval_shape(jax.vmap(env.reset), jax.random.split(jax.random.PRNGKey(0), 3))
    sim = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    qpos, qvel = rollout._physics_arrays(sim)
    assert qpos.shape == qvel.shape == (3, 2)
    ps = sim.pipeline_state
    sim = sim.replace(pipeline_state=ps.replace(qvel=ps.qvel.at[1, 1].set(2e6), qpos=ps.qpos.at[2, 0].set(jnp.inf)))
    np.testing.assert_array_equal(np.asarray(rollout.diverged(sim)), [False, True, True])


@pytest.mark.slow
def test_a_real_mjx_env_pushed_to_nan_or_huge_velocity_is_reset_and_marked():
    """brax's MJX inverted_pendulum, 3 envs: env 1's qvel set to 1e8, env 2's qpos to NaN."""
    env = registry.make("inverted_pendulum")
    key = jax.random.PRNGKey(0)
    state = jax.jit(rollout.reset, static_argnums=(0, 2))(env, key, 3)
    ps = state.sim.pipeline_state
    ps = ps.replace(qvel=ps.qvel.at[1].set(1e8), qpos=ps.qpos.at[2, 0].set(jnp.nan))
    state = state.replace(sim=state.sim.replace(pipeline_state=ps))
    new, tr, stats, valid = _step(env, state, jnp.zeros((3, 1)), key, 1000)
    np.testing.assert_array_equal(np.asarray(valid), [True, False, False])
    assert float(stats.diverged) == 2.0
    np.testing.assert_array_equal(np.asarray(new.episode_step), [1, 0, 0])
    for x in (new.sim.obs, new.sim.pipeline_state.qpos, new.sim.pipeline_state.qvel):
        x = np.asarray(x)
        assert np.all(np.isfinite(x)) and np.all(np.abs(x) < 1e3)
    assert np.all(np.isfinite(np.asarray(tr.next_obs[0])))


# --- replay: invalid rows never reach a slot that sample can return --------------------------------
def _rows(values, obs_dim=2) -> Transition:
    v = jnp.asarray(values, jnp.float32)
    n = v.shape[0]
    return Transition(
        obs=jnp.repeat(v[:, None], obs_dim, 1),
        action=v[:, None],
        reward=v,
        next_obs=jnp.repeat(v[:, None] + 0.5, obs_dim, 1),
        terminated=jnp.zeros((n,)),
        truncated=jnp.zeros((n,)),
    )


def test_replay_add_replaces_invalid_rows_by_copies_of_valid_ones():
    state = replay.init(8, 2, 1)
    rows = _rows([10.0, np.nan, 12.0, np.nan])
    state = jax.jit(replay.add)(state, rows, jnp.array([True, False, True, False]))
    assert int(state.size) == 4 and int(state.insert_pos) == 4
    r = np.asarray(state.data.reward[:4])
    np.testing.assert_array_equal(r[[0, 2]], [10.0, 12.0])
    assert set(r[[1, 3]]) == {10.0, 12.0}  # the copies are spread over the valid rows
    for leaf in jax.tree.leaves(state.data):
        assert np.all(np.isfinite(np.asarray(leaf)))
    # each copied row is a whole transition (obs, action, reward, next_obs of the same source row)
    d = jax.tree.map(np.asarray, state.data)
    np.testing.assert_array_equal(d.obs[:4, 0], r)
    np.testing.assert_array_equal(d.action[:4, 0], r)
    np.testing.assert_array_equal(d.next_obs[:4, 0], r + 0.5)


@pytest.mark.parametrize("full", [False, True])
def test_replay_add_with_no_valid_row_writes_nothing(full):
    state = replay.init(8, 2, 1)
    add = jax.jit(replay.add)
    state = add(state, _rows([1.0, 2.0, 3.0, 4.0]), jnp.ones((4,), bool))
    if full:
        state = add(state, _rows([5.0, 6.0, 7.0, 8.0]), jnp.ones((4,), bool))
    before = jax.tree.map(np.asarray, state)
    after = add(state, _rows([np.nan] * 4), jnp.zeros((4,), bool))
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(x, np.asarray(y))
    batch = replay.sample(after, jax.random.PRNGKey(0), 256)
    assert np.all(np.isfinite(np.asarray(batch.reward)))


def test_replay_add_without_mask_is_unchanged():
    state = replay.add(replay.init(8, 2, 1), _rows([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(np.asarray(state.data.reward[:4]), [1.0, 2.0, 3.0, 4.0])
    assert int(state.size) == 4


# --- the fused loop: divergences are counted, never stored, and trip no non-finite check -------------
def test_training_with_diverging_envs_keeps_the_buffer_clean(tiny_config):
    config = tiny_config(learning_starts=16, buffer_size=128, eval_every=16, policy_delay=1)  # 4 + 4 iterations
    fns = make_train(config, DivergingEnv("nan_qpos", threshold=0.3))  # uniform warm-up actions: 35% diverge
    ts = fns.init(jax.random.PRNGKey(0))
    ts, warm = jax.jit(fns.warmup)(ts)
    chunk = jax.jit(fns.run_chunk)
    diverged = float(warm["train/diverged_envs"])
    for _ in range(3):
        ts, metrics = chunk(ts)
        metrics = jax.device_get(metrics)
        diverged += float(metrics["train/diverged_envs"])
        assert np.isfinite(metrics["diag/reward_abs_max"])  # the diverged steps' rewards are left out
        _, bad = health.split_nonfinite(metrics)
        assert bad == {}, bad
        report = {k: int(v) for k, v in metrics.items() if k.startswith(NONFINITE_PREFIX)}
        assert {"observations", "actor_params", "reward_critic_params", "entropy_critic_params", "log_alpha",
                "train/loss_reward_critic", "diag/grad_norm_reward_critic", "diag/grad_norm_actor"} <= {
            k[len(NONFINITE_PREFIX):] for k in report}  # fmt: skip
        assert set(report.values()) == {-1}
    assert diverged >= 5, diverged
    size = int(ts.replay.size)
    d = jax.tree.map(lambda x: np.asarray(x)[:size], ts.replay.data)
    assert size > 0 and all(np.all(np.isfinite(x)) for x in jax.tree.leaves(d))
    assert np.all(d.reward == 1.0), "a diverged transition (reward -1) reached the buffer"
    np.testing.assert_array_equal(d.next_obs[:, 0], d.obs[:, 0] + 1.0)  # every stored row is a real step
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(ts.learner))


# --- non-finite learner quantities: the chunk's report -----------------------------------------------
def _report(metrics) -> dict[str, int]:
    return {
        k[len(NONFINITE_PREFIX) :]: int(v) for k, v in jax.device_get(metrics).items() if k.startswith(NONFINITE_PREFIX)
    }


def test_non_finite_observations_from_a_broken_reset_are_flagged(tiny_config):
    class NaNResetEnv(CounterEnv):  # a broken env: its reset state is NaN, so resetting cannot help
        def reset(self, key):
            s = super().reset(key)
            return s.replace(obs=jnp.full_like(s.obs, jnp.nan))

    act = jax.jit(lambda fns, ts, k: fns._act_and_store(ts, k, random_actions=True)[2], static_argnums=0)
    for env, expected in ((CounterEnv(), False), (NaNResetEnv(), True)):
        fns = make_train(tiny_config(normalize_obs=True), env)
        checks = act(fns, fns.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
        assert {k: bool(v) for k, v in checks.items()} == {"observations": expected, "obs_normalizer": expected}


def test_nonfinite_message_names_quantities_and_env_steps():
    bad = {"diag/grad_norm_actor": 5, "train/loss_reward_critic": 3, "reward_critic_params": 3, "observations": 7}
    msg = health.nonfinite_message(bad, chunk_start_steps=1000, num_envs=8, checkpoint_note="ckpt ok")
    assert msg == (
        "non-finite reward_critic loss, reward_critic params at env step 1032 "
        "(then also actor grad norm, observations); ckpt ok"
    )
    bad = {f"q{i}": 1 for i in range(6)} | {"log_alpha": 0}
    msg = health.nonfinite_message(bad, chunk_start_steps=0, num_envs=2, checkpoint_note="-")
    assert msg == "non-finite log_alpha at env step 2 (then also q0, q1, q2, q3 and 2 more); -"
    rest, found = health.split_nonfinite({"train/alpha": 0.1, NONFINITE_PREFIX + "log_alpha": -1.0,
                                          NONFINITE_PREFIX + "actor_params": 2.0})  # fmt: skip
    assert rest == {"train/alpha": 0.1} and found == {"actor_params": 2}


# --- the host loop: stop with exit 3, message, checkpoint intact -----------------------------------
def _blow_up_run(tmp_path, monkeypatch, *extra, reward=1e38):
    """The run of the next test (its reward of 1e38 at t = 7 blows the reward critic up at env step 28), with
    `extra` flags; returns (exit status, stdout, stderr lines, run dir)."""
    monkeypatch.setattr(registry, "make", lambda name, **kw: HugeRewardEnv(blow_up_at=7, reward=reward))
    run_dir = tmp_path / "run"
    argv = ["--num-envs", "4", "--buffer-size", "4", "--batch-size", "4", "--learning-starts", "4",
            "--eval-every", "16", "--total-steps", "400", "--hidden-sizes", "16,16", "--episode-length", "100",
            "--updates-per-step", "0.5", "--num-eval-envs", "2", "--out", str(run_dir), "--no-progress",
            *extra]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue().strip().splitlines(), run_dir


def test_blow_up_stops_the_run_with_exit_3_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """4 envs, warm-up 1 iteration, chunks of 4: t = 2..5 in chunk 1 (checkpointed at env step 20), then the
    1e38 reward of t = 7 (chunk 2, iteration 1, env step (1 + 4 + 2) * 4 = 28) blows up the reward critic.
    The buffer holds one insert, so the updates of an iteration learn from its own steps only."""
    code, out, lines, run_dir = _blow_up_run(tmp_path, monkeypatch)
    assert code == 3, (out, lines)
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    ckpt_dir = str(run_dir / "checkpoints")
    assert lines[0].startswith("train.py: stopped: non-finite ")
    # The reward of t = 7 is stored and learned from in iteration 1 of chunk 2: the reward critic's loss,
    # gradient and parameters go non-finite there, and nothing earlier (the step is exact).
    first = lines[0].split(" at env step ")[0]
    for q in ("reward_critic loss", "reward_critic grad norm", "reward_critic params"):
        assert q in first, (q, lines[0])
    assert "observations" not in lines[0]
    assert " at env step 28 " in lines[0], lines[0]
    assert f"the last good checkpoint (env step 20) in {ckpt_dir} is intact" in lines[0]
    # The checkpoint holds the state after chunk 1: loadable, finite, at env step 20.
    replay = f"replay-{20:012d}.ckpt"  # its buffer, and the same state as the best evaluation's
    assert sorted(os.listdir(ckpt_dir)) == [checkpoint.BEST, checkpoint.LATEST, replay]
    payload, meta = checkpoint.load_meta(ckpt_dir)
    assert meta["env_steps"] == 20 and meta["replay"]["file"] == replay
    for rec in payload["leaves"] + checkpoint.load_meta(ckpt_dir, replay)[0]["leaves"]:
        x = np.frombuffer(rec["data"], dtype=rec["dtype"])
        if np.issubdtype(x.dtype, np.floating):
            assert np.all(np.isfinite(x)), rec["shape"]


def test_a_sweep_member_that_blows_up_is_marked_and_the_others_go_on(tmp_path, monkeypatch):
    """A reward of 1e30 (its episode returns finite, its square not): member 0 blows up as the run above; member
    1's reward scale of 1e-28 makes it 100, and the run goes on to its budget, member 0 marked diverged (in the
    output and sweep.csv), member 1 not."""
    flags = ("--sweep", "reward_scale=1,1e-28", "--total-steps", "64")
    code, out, err, run_dir = _blow_up_run(tmp_path, monkeypatch, *flags, reward=1e30)
    assert code == 0, (out, err)
    marked = [line for line in out.splitlines() if "marked diverged" in line]
    assert len(marked) == 1 and marked[0].startswith("member 0 (reward_scale=1 seed 0) went non-finite"), marked
    assert "reward_critic grad norm" in marked[0] and " at env step 28" in marked[0]
    import csv

    with open(run_dir / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["diverged_at_env_step"] for r in rows] == ["36", ""], rows  # marked at its chunk's end
    assert [int(float(r["env_steps"])) for r in rows] == [64, 64]


def test_a_sweep_stops_with_exit_3_when_every_member_has_blown_up(tmp_path, monkeypatch):
    """Both seeds blow up in the same chunk: one line naming the last member and the checkpoint left, exit 3."""
    code, out, err, run_dir = _blow_up_run(tmp_path, monkeypatch, "--seeds", "2")
    assert code == 3, (out, err)
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("train.py: stopped: every member went non-finite, the last, member 1: non-finite ")
    assert " at env step 28 " in err[0]
    assert f"the last good checkpoint (env step 20) in {run_dir / 'checkpoints'} is intact" in err[0]
    assert "marked diverged" not in out  # nobody was left to go on


def test_the_report_is_split_per_sweep_member():
    from types import SimpleNamespace

    from mjx_tecrl.population import Population

    def population(members):  # the host side of a population: its plan and members, no functions
        return Population(SimpleNamespace(is_sweep=members > 1, members=[{"member": i, "seed": i} for i in
                                          range(members)], config=SimpleNamespace(seed=0)), None, None)  # fmt: skip

    metrics = {"train/alpha": np.array([0.1, 0.2, 0.3]), NONFINITE_PREFIX + "actor_params": np.array([-1, 4, -1]),
               NONFINITE_PREFIX + "observations": np.array([-1, 6, 0])}  # fmt: skip
    rest, per_member = population(3).split_nonfinite(metrics)
    assert list(rest) == ["train/alpha"]
    assert per_member == [{}, {"actor_params": 4, "observations": 6}, {"observations": 0}]
    rest, per_member = population(1).split_nonfinite({"x": np.ones(1), NONFINITE_PREFIX + "log_alpha": np.int32([2])})
    assert list(rest) == ["x"] and rest["x"].tolist() == [1.0] and per_member == [{"log_alpha": 2}]  # one member
