"""What the learner trains on is what the env did: the replay rows of a shaped-reward task line up with its steps.

HalfCheetah's reward is shaped (forward velocity minus a control cost, no termination), so a row whose reward
belonged to another step, another env or another action would go unnoticed by the pendulum tests (reward 1 per
step alive). The rows written by the pipeline's own act-step-store (`TrainFns._act_and_store`, which the training
iteration and the warm-up share; the warm-up's is used here, so no learner is compiled) are checked against a second
step from the same state and against the task's definition, recomputed from the physics states before and after.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mjx_tecrl.envs import registry

from mjx_tecrl.config import make_config
from mjx_tecrl.loop import make_train

pytestmark = pytest.mark.usefixtures("fast_compile")
NUM_ENVS, ITERS = 4, 6


def test_replay_rows_are_the_steps_of_a_shaped_reward_task():
    env = registry.make("halfcheetah")
    config = make_config(env="halfcheetah", num_envs=NUM_ENVS, learning_starts=NUM_ENVS, batch_size=NUM_ENVS,
                         buffer_size=NUM_ENVS * ITERS, hidden_sizes=(16,), total_steps=10**6)  # fmt: skip
    fns = make_train(config, env)
    ts = jax.jit(fns._init)(jax.random.PRNGKey(0), config.hyperparams())
    iteration = jax.jit(fns.warmup_iteration)
    before = []
    for _ in range(ITERS):
        before.append(ts.env.sim)
        ts, _ = iteration(ts)
    data = jax.device_get(ts.replay.data)
    dt = float(env.unwrapped.dt)
    for t, sim in enumerate(before):
        rows = slice(t * NUM_ENVS, (t + 1) * NUM_ENVS)  # insert t
        obs, action, reward = data.obs[rows], data.action[rows], data.reward[rows]
        np.testing.assert_array_equal(obs, np.asarray(sim.obs))  # the observation the actor saw
        assert np.all(np.abs(action) <= 1.0) and np.std(action) > 0.1
        after = jax.vmap(env.step)(sim, jnp.asarray(action))  # the same step, taken again from the same state
        np.testing.assert_allclose(data.next_obs[rows], np.asarray(after.obs), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(reward, np.asarray(after.reward), rtol=1e-6, atol=1e-6)
        # Gymnasium's HalfCheetah-v5: (x after - x before) / dt - 0.1 |ctrl|^2, ctrl = action (ctrlrange [-1, 1])
        x_velocity = (np.asarray(after.pipeline_state.qpos[:, 0]) - np.asarray(sim.pipeline_state.qpos[:, 0])) / dt
        np.testing.assert_allclose(reward, x_velocity - 0.1 * np.sum(action**2, axis=1), rtol=1e-4, atol=1e-4)
        assert np.all(data.terminated[rows] == 0.0) and np.all(data.truncated[rows] == 0.0)
    # what the learner's targets read: reward_scale times the stored reward (the scale is 1 by default)
    assert float(ts.learner.hyperparams.reward_scale) == 1.0
