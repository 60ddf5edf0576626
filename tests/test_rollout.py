"""Rollout auto-reset: the transition keeps the TRUE final observation; termination vs truncation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_envs import ConstantRewardEnv, CounterEnv

from mjx_tecrl import losses, rollout
from mjx_tecrl.config import ALGOS
from mjx_tecrl.learner import Learner
from mjx_tecrl.types import Transition

pytestmark = pytest.mark.usefixtures("fast_compile")

_step = jax.jit(rollout.step, static_argnums=(0, 4))


def run(env, num_envs, episode_length, num_steps, seed=0, state=None):
    """Step `num_steps` times with distinct reset keys; return the states (incl. the first) and outputs."""
    key = jax.random.PRNGKey(seed)
    key, k0 = jax.random.split(key)
    if state is None:
        state = rollout.reset(env, k0, num_envs)
    states, transitions, stats = [state], [], []
    for i in range(num_steps):
        action = jnp.full((num_envs, env.action_size), 0.1 * (i + 1), jnp.float32)
        state, tr, st = _step(env, state, action, jax.random.fold_in(key, i), episode_length)
        states.append(state)
        transitions.append(jax.tree.map(np.asarray, tr))
        stats.append(jax.tree.map(float, st))
    return states, transitions, stats


def test_reset_gives_distinct_episodes_and_zero_counters():
    st = rollout.reset(CounterEnv(), jax.random.PRNGKey(0), 3)
    np.testing.assert_array_equal(np.asarray(st.sim.obs[:, 0]), 0.0)
    assert len(set(np.asarray(st.sim.episode_id).tolist())) == 3
    np.testing.assert_array_equal(np.asarray(st.episode_step), 0)
    np.testing.assert_array_equal(np.asarray(st.episode_return), 0.0)


def test_truncation_keeps_true_final_obs_and_resets_after():
    env, n, T = CounterEnv(), 2, 3
    states, trs, _ = run(env, n, T, 5)
    ids0 = np.asarray(states[0].sim.episode_id)
    for i in range(2):  # steps 1 and 2: ordinary transitions
        np.testing.assert_array_equal(trs[i].obs, np.stack([np.full(n, i), ids0], 1))
        np.testing.assert_array_equal(trs[i].next_obs, np.stack([np.full(n, i + 1), ids0], 1))
        np.testing.assert_array_equal(trs[i].terminated, 0.0)
        np.testing.assert_array_equal(trs[i].truncated, 0.0)
        np.testing.assert_array_equal(trs[i].action, np.full((n, 1), 0.1 * (i + 1), np.float32))
        np.testing.assert_array_equal(trs[i].reward, 1.0)
    # Step 3 hits the time limit: next_obs is the TRUE final obs [T, id], not the reset obs [0, id'].
    last = trs[2]
    np.testing.assert_array_equal(last.next_obs, np.stack([np.full(n, T), ids0], 1))
    np.testing.assert_array_equal(last.truncated, 1.0)
    np.testing.assert_array_equal(last.terminated, 0.0)
    # The env state after it is a fresh episode: t = 0, new ids, counters zeroed.
    after = states[3]
    ids1 = np.asarray(after.sim.episode_id)
    np.testing.assert_array_equal(np.asarray(after.sim.t), 0)
    assert not np.isin(ids1, ids0).any()
    np.testing.assert_array_equal(np.asarray(after.sim.obs), np.stack([np.zeros(n), ids1], 1))
    np.testing.assert_array_equal(np.asarray(after.episode_step), 0)
    np.testing.assert_array_equal(np.asarray(after.episode_return), 0.0)
    # The next transition starts from the reset obs.
    np.testing.assert_array_equal(trs[3].obs, np.stack([np.zeros(n), ids1], 1))
    np.testing.assert_array_equal(trs[3].next_obs, np.stack([np.ones(n), ids1], 1))
    np.testing.assert_array_equal(trs[3].truncated, 0.0)


def test_termination_flags_terminated_not_truncated():
    env, n = CounterEnv(terminate_after=2), 2
    states, trs, _ = run(env, n, 5, 3)
    ids0 = np.asarray(states[0].sim.episode_id)
    np.testing.assert_array_equal(trs[0].terminated, 0.0)
    np.testing.assert_array_equal(trs[1].terminated, 1.0)
    np.testing.assert_array_equal(trs[1].truncated, 0.0)
    np.testing.assert_array_equal(trs[1].next_obs, np.stack([np.full(n, 2), ids0], 1))
    np.testing.assert_array_equal(np.asarray(states[2].sim.t), 0)
    ids1 = np.asarray(states[2].sim.episode_id)
    assert not np.isin(ids1, ids0).any()
    np.testing.assert_array_equal(trs[2].obs, np.stack([np.zeros(n), ids1], 1))
    np.testing.assert_array_equal(trs[2].terminated, 0.0)


def test_step_that_is_both_terminal_and_at_the_limit_counts_as_terminated():
    env, n, T = CounterEnv(terminate_after=3), 2, 3
    states, trs, stats = run(env, n, T, 3)
    np.testing.assert_array_equal(trs[2].terminated, 1.0)
    np.testing.assert_array_equal(trs[2].truncated, 0.0)
    assert stats[2].count == n  # counted once, not twice
    np.testing.assert_array_equal(np.asarray(states[3].sim.t), 0)


def test_episode_stats_with_staggered_episodes():
    """env 1 starts one step into its episode with return 10: it truncates one step before env 0."""
    env, T = CounterEnv(), 3
    st = rollout.reset(env, jax.random.PRNGKey(5), 2)
    st = st.replace(episode_step=jnp.array([0, 1], jnp.int32), episode_return=jnp.array([0.0, 10.0]))
    states, trs, stats = run(env, 2, T, 4, state=st)
    # step 1: nobody finishes
    assert (stats[0].count, stats[0].return_sum, stats[0].length_sum) == (0.0, 0.0, 0.0)
    # step 2: env 1 reaches 3 steps (return 10 + 2 = 12); env 0 goes on, untouched by env 1's reset
    np.testing.assert_array_equal(trs[1].truncated, [0.0, 1.0])
    assert (stats[1].count, stats[1].return_sum, stats[1].length_sum) == (1.0, 12.0, 3.0)
    np.testing.assert_array_equal(np.asarray(states[2].sim.t), [2, 0])
    np.testing.assert_array_equal(np.asarray(states[2].episode_step), [2, 0])
    np.testing.assert_array_equal(np.asarray(states[2].episode_return), [2.0, 0.0])
    assert float(states[2].sim.episode_id[0]) == float(states[0].sim.episode_id[0])
    assert float(states[2].sim.episode_id[1]) != float(states[0].sim.episode_id[1])
    # step 3: env 0 finishes (return 3, length 3)
    np.testing.assert_array_equal(trs[2].truncated, [1.0, 0.0])
    assert (stats[2].count, stats[2].return_sum, stats[2].length_sum) == (1.0, 3.0, 3.0)
    np.testing.assert_array_equal(np.asarray(states[3].sim.t), [0, 1])
    assert (stats[3].count, stats[3].return_sum, stats[3].length_sum) == (0.0, 0.0, 0.0)


def test_always_done_env_auto_resets_every_step():
    env, n = ConstantRewardEnv(), 3
    states, trs, stats = run(env, n, 1000, 4)
    seen = set()
    for i, tr in enumerate(trs):
        ids = np.asarray(states[i].sim.episode_id)
        np.testing.assert_array_equal(tr.obs, np.stack([np.zeros(n), ids], 1))
        np.testing.assert_array_equal(tr.next_obs, np.stack([np.ones(n), ids], 1))  # true final obs
        np.testing.assert_array_equal(tr.terminated, 1.0)
        np.testing.assert_array_equal(tr.truncated, 0.0)
        np.testing.assert_array_equal(np.asarray(states[i + 1].sim.t), 0)
        assert (stats[i].count, stats[i].return_sum, stats[i].length_sum) == (n, n, n)
        seen.update(ids.tolist())
    assert len(seen) == 4 * n  # a new episode in every env at every step


# --- downstream: truncation bootstraps, termination does not (losses and learner) ----------------------

GAMMA = 0.9


def test_reward_critic_targets_bootstrap_truncated_not_terminated():
    # row 0 truncated (terminated = 0), row 1 terminated, row 2 ordinary
    terminated = jnp.array([0.0, 1.0, 0.0])
    discount = GAMMA * (1.0 - terminated)
    reward = jnp.array([1.0, 2.0, 3.0])
    q_next = jnp.array([[10.0, 20.0, 5.0], [8.0, 30.0, 7.0]])  # critic 1 smaller on row 0, critic 0 on 1, 2
    std_next = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    z = jnp.array([[0.5, 0.5, -1.0], [-0.5, 1.0, 2.0]])
    y_q, y_z = losses.reward_critic_targets(q_next, std_next, z, reward, discount, jnp.zeros(3))
    np.testing.assert_allclose(y_q, [1.0 + GAMMA * 8.0, 2.0, 3.0 + GAMMA * 5.0], rtol=1e-6)
    np.testing.assert_allclose(y_z, [1.0 + GAMMA * (8.0 - 0.5 * 4.0), 2.0, 3.0 + GAMMA * (5.0 - 1.0 * 3.0)], rtol=1e-6)
    # dsac-t's entropy bonus is also cut by termination only
    bonus = jnp.array([0.3, 0.3, 0.3])
    y_q, _ = losses.reward_critic_targets(q_next, std_next, z, reward, discount, bonus)
    np.testing.assert_allclose(y_q, [1.0 + GAMMA * 8.3, 2.0, 3.0 + GAMMA * 5.3], rtol=1e-6)
    y = losses.sac_critic_targets(q_next, reward, discount, bonus)
    np.testing.assert_allclose(y, [1.0 + GAMMA * 8.3, 2.0, 3.0 + GAMMA * 5.3], rtol=1e-6)


def test_entropy_critic_target_bootstraps_truncated_not_terminated():
    terminated = jnp.array([0.0, 1.0])
    y_e = losses.entropy_critic_target(jnp.array([-0.5, -0.5]), jnp.array([4.0, 4.0]), GAMMA * (1.0 - terminated))
    np.testing.assert_allclose(y_e, [GAMMA * 4.5, 0.0], rtol=1e-6)


def _batch(terminated, truncated, next_obs_shift=0.0):
    obs = jnp.array([[0.1, 0.2], [0.3, -0.4], [-0.5, 0.6], [0.7, 0.8]])
    return Transition(
        obs=obs,
        action=jnp.array([[0.5], [-0.5], [0.25], [-0.9]]),
        reward=jnp.array([1.0, 0.5, -1.0, 2.0]),
        next_obs=obs + 0.05 + next_obs_shift,
        terminated=jnp.asarray(terminated, jnp.float32),
        truncated=jnp.asarray(truncated, jnp.float32),
    )


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))


# dsac-e (distributional + entropy critic) and sac (plain twin critics) take the two target code paths;
# the other two variants share dsac-e's and run with -m slow.
@pytest.mark.parametrize(
    "algo", [a if a in ("dsac-e", "sac") else pytest.param(a, marks=pytest.mark.slow) for a in ALGOS]
)
def test_learner_discount_comes_from_terminated_only(algo, tiny_config):
    config = tiny_config(algo=algo, gamma=GAMMA)
    learner = Learner.from_config(config, 1)
    state = jax.jit(learner.init, static_argnums=1)(jax.random.PRNGKey(0), 2, config.hyperparams())
    update = jax.jit(learner.update, static_argnames="update_actor")
    key = jax.random.PRNGKey(1)

    def run(batch):
        return update(state, batch, key, update_actor=True)

    base = run(_batch([0, 1, 0, 0], [0, 0, 0, 0]))
    # `truncated` alone changes nothing: a truncated step is bootstrapped like any other.
    assert _leaves_equal(base, run(_batch([0, 1, 0, 0], [1, 0, 1, 1])))
    # `terminated` changes the critic targets, hence the reward critic.
    other_state, _ = run(_batch([1, 1, 0, 0], [0, 0, 0, 0]))
    assert not _leaves_equal(base[0].reward_critic_params, other_state.reward_critic_params)
    if learner.uses_entropy_critic:
        assert not _leaves_equal(base[0].entropy_critic_params, other_state.entropy_critic_params)
    # Terminated rows do not look at next_obs at all; truncated rows do.
    all_term = run(_batch([1, 1, 1, 1], [0, 0, 0, 0]))
    assert _leaves_equal(all_term, run(_batch([1, 1, 1, 1], [0, 0, 0, 0], next_obs_shift=3.0)))
    all_trunc = run(_batch([0, 0, 0, 0], [1, 1, 1, 1]))
    shifted, _ = run(_batch([0, 0, 0, 0], [1, 1, 1, 1], next_obs_shift=3.0))
    assert not _leaves_equal(all_trunc[0].reward_critic_params, shifted.reward_critic_params)
