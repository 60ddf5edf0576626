"""n-step targets (`--n-step`): replay sequences that follow one episode and stop at its end, the n-step return
and bootstrap discount against a hand computation, one step equal to the one-step path, and the critics' fixed
points unchanged by n."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_envs import CounterEnv

from mjx_tecrl import replay, rollout
from mjx_tecrl.config import Config
from mjx_tecrl.learner import Learner
from mjx_tecrl.networks import make_networks
from mjx_tecrl.types import Steps, Transition

OPTS = {"xla_backend_optimization_level": 0}
N_ENVS, BLOCKS, N = 3, 7, 4


@pytest.mark.parametrize(
    "terminate_after, episode_length, diverge",
    [(5, 100, False), (0, 6, False), (0, 100, True)],
    ids=["termination", "truncation", "divergence"],
)
def test_sample_steps_follow_one_episode_and_stop_at_its_end(terminate_after, episode_length, diverge):
    """CounterEnv's obs is [t, episode id]: step k of a sample must be [t0 + k, id0] of the same env, and every
    step of the same episode that was written must be included, up to n. Ten inserts into seven blocks wrap."""
    env = CounterEnv(terminate_after)
    state = rollout.reset(env, jax.random.PRNGKey(0), N_ENVS)
    buf = replay.init(N_ENVS * BLOCKS, env.observation_size, env.action_size)
    step = jax.jit(rollout.step_with_mask, static_argnums=(0, 4))
    sample = jax.jit(replay.sample_steps, static_argnums=(2, 3, 4))
    partial = full = 0
    for i in range(10):
        state, tr, _, valid = step(env, state, jnp.zeros((N_ENVS, 1)), jax.random.PRNGKey(100 + i), episode_length)
        if diverge and i == 4:  # env 1's row is replaced by a copy of another env's (as a diverged env's would be)
            valid = jnp.array([True, False, True])
        buf = replay.add(buf, tr, valid)
        steps = sample(buf, jax.random.PRNGKey(i), 512, N, N_ENVS)
        obs, inc = np.asarray(steps.rows.obs), np.asarray(steps.included)
        t0, id0 = obs[0, :, 0], obs[0, :, 1]
        same = np.stack([(obs[k, :, 0] == t0 + k) & (obs[k, :, 1] == id0) for k in range(N)])
        want = np.cumprod(same, axis=0)
        np.testing.assert_array_equal(inc, want, err_msg=f"insert {i}")
        # an included step is the previous one's true successor: its obs is that step's next_obs
        nxt = np.asarray(steps.rows.next_obs)
        assert np.all(~inc[1:, :, None].astype(bool) | (obs[1:] == nxt[:-1]))
        partial += int(np.sum((inc.sum(0) > 1) & (inc.sum(0) < N)))
        full += int(np.sum(inc.sum(0) == N))
    assert full > 0 and partial > 0  # both cut and whole sequences were checked


OBS_DIM, ACT_DIM, B = 2, 2, 8
NETS = make_networks(ACT_DIM, (16, 16), twin_entropy_critic=False)


def _steps(seed: int, n: int, included) -> Steps:
    rng = np.random.default_rng(seed)
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    rows = Transition(
        obs=f(rng.normal(size=(n, B, OBS_DIM))),
        action=f(np.tanh(rng.normal(size=(n, B, ACT_DIM)))),
        reward=f(rng.normal(size=(n, B))),
        next_obs=f(rng.normal(size=(n, B, OBS_DIM))),
        terminated=f(rng.random(size=(n, B)) < 0.3),
        truncated=jnp.zeros((n, B)),
    )
    return Steps(rows=rows, included=f(included))


def test_n_step_return_and_bootstrap_match_a_hand_computation():
    """reward = scale * sum_{k<m} gamma^k r_k, discount = gamma^m (1 - terminated_{m-1}), bootstrap from
    next_obs_{m-1}, entropy between = sum_{0<k<m} gamma^k (-log pi_target(s_k)) and the horizon head's steps
    between = sum_{0<k<m} gamma^k, for m = 1 .. 3 included steps."""
    n, gamma, scale = 3, 0.9, 0.5
    included = np.array([[1] * B, [1, 1, 1, 0, 1, 0, 1, 1], [1, 0, 1, 0, 0, 0, 1, 0]], np.float32)
    batch = _steps(0, n, included)
    learner = Learner(NETS, "dsac-e", "nll", False)
    hp = Config(gamma=gamma, reward_scale=scale).hyperparams()
    state = learner.init(jax.random.PRNGKey(0), OBS_DIM, hp)
    key = jax.random.PRNGKey(7)
    ret = jax.jit(learner._returns, compiler_options=OPTS)(state, batch, key)
    obs, action, reward, next_obs, discount = ret.obs, ret.action, ret.reward, ret.next_obs, ret.discount
    between, steps_between = ret.entropy_between, ret.steps_between
    _, log_prob = learner.sample_action(state.actor_target_params, state, batch.rows.obs[1:], key)
    r, term = np.asarray(batch.rows.reward), np.asarray(batch.rows.terminated)
    lp = np.asarray(log_prob)
    for b in range(B):
        m = int(included[:, b].sum())
        np.testing.assert_allclose(reward[b], scale * sum(gamma**k * r[k, b] for k in range(m)), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(discount[b], gamma**m * (1 - term[m - 1, b]), rtol=1e-6)
        np.testing.assert_array_equal(next_obs[b], batch.rows.next_obs[m - 1, b])
        np.testing.assert_allclose(between[b], sum(-(gamma**k) * lp[k - 1, b] for k in range(1, m)), atol=1e-5)
        np.testing.assert_allclose(steps_between[b], sum(gamma**k for k in range(1, m)), atol=1e-6)
    np.testing.assert_array_equal(obs, batch.rows.obs[0])
    np.testing.assert_array_equal(action, batch.rows.action[0])


@pytest.mark.parametrize("algo", ["dsac-e", "dsac-t"])
def test_one_included_step_updates_exactly_as_a_one_step_batch(algo):
    """n = 1 (or sequences cut after their first step) is the one-step update, bit for bit."""
    learner = Learner(NETS, algo, "nll", False)
    state = learner.init(jax.random.PRNGKey(1), OBS_DIM, Config().hyperparams())
    steps = _steps(3, 2, np.array([[1] * B, [0] * B], np.float32))
    one = jax.tree.map(lambda x: x[0], steps.rows)
    update = jax.jit(learner.update, static_argnames="update_actor", compiler_options=OPTS)
    a, ma = update(state, steps, jax.random.PRNGKey(2), update_actor=True)
    b, mb = update(state, one, jax.random.PRNGKey(2), update_actor=True)
    assert float(ma.pop("diag/n_step_mean")) == 1.0  # the one metric only sequences report
    for x, y in zip(jax.tree.leaves((a, ma)), jax.tree.leaves((b, mb)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("baseline", [False, True], ids=["", "entropy baseline"])
def test_n_step_critics_keep_their_one_step_fixed_points(baseline):
    """One state, reward 1, never terminating, fixed policy, n = 3: Q_r -> 1 / (1 - gamma), Q_e -> gamma H /
    (1 - gamma) and the lived budget's horizon D -> gamma / (1 - gamma), as with one step (a discount of gamma
    instead of gamma^3 would give other fixed points); with `--entropy-baseline`, the Q_e its head stands for."""
    gamma, n = 0.6, 3
    nets = make_networks(ACT_DIM, (16, 16), twin_entropy_critic=False, horizon=True)
    learner = Learner(nets, "dsac-e", "nll", False, baseline)
    hp = Config(gamma=gamma, tau=1.0, entropy_critic_tau=1.0, actor_lr=0.0, alpha_lr=0.0, critic_lr=1e-2).hyperparams()
    state = learner.init(jax.random.PRNGKey(3), OBS_DIM, hp)
    rows = Transition(
        obs=jnp.zeros((n, B, OBS_DIM)),
        action=jax.random.uniform(jax.random.PRNGKey(4), (n, B, ACT_DIM), minval=-1.0, maxval=1.0),
        reward=jnp.ones((n, B)),
        next_obs=jnp.zeros((n, B, OBS_DIM)),
        terminated=jnp.zeros((n, B)),
        truncated=jnp.zeros((n, B)),
    )
    batch = Steps(rows=rows, included=jnp.ones((n, B)))
    update = jax.jit(learner.update, static_argnames="update_actor", compiler_options=OPTS)
    q_r, q_e, h, d = [], [], [], []
    for i in range(1500):
        state, m = update(state, batch, jax.random.PRNGKey(i), update_actor=True)
        q_r.append(float(m["train/q_r"]))
        q_e.append(float(m["train/q_e"]))
        h.append(float(m["train/policy_entropy"]))
        d.append(float(m["diag/horizon"]))
    entropy = np.mean(h)  # the fixed policy's entropy at this state (single-sample estimates, averaged)
    np.testing.assert_allclose(np.mean(q_r[-500:]), 1.0 / (1.0 - gamma), rtol=0.03)
    want = gamma * entropy / (1.0 - gamma)
    assert abs(np.mean(q_e[-500:]) - want) < 0.05 * abs(want) + 0.1, (np.mean(q_e[-500:]), want)
    np.testing.assert_allclose(np.mean(d[-500:]), gamma / (1.0 - gamma), rtol=0.03)


def test_the_loop_trains_on_n_step_sequences(tiny_config):
    """`n_step` reaches the fused loop: its updates see sequences, cut at the time limit (5 steps)."""
    from mjx_tecrl.loop import make_train

    fns = make_train(tiny_config(n_step=3, buffer_size=128, total_steps=128, eval_every=32), CounterEnv())
    ts = fns.init(jax.random.PRNGKey(0))
    ts, _ = jax.jit(fns.warmup)(ts)
    ts, metrics = jax.jit(fns.run_chunk)(ts)
    mean_steps = float(metrics["diag/n_step_mean"])
    assert 2.0 < mean_steps < 3.0, mean_steps  # mostly whole sequences, some cut by the 5-step episodes
    assert all(np.isfinite(float(v)) for v in metrics.values())
