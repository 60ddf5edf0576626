"""Tiny pure-JAX environments with known answers, sharing the registry envs' interface.

Interface (as `envs.wrappers.ScaledActionEnv`): observation_size, action_size, dt, and single-env
reset(key) -> state and step(state, action) -> state, where state has .obs, .reward, .done.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ToyState:
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    t: jax.Array  # steps since reset (int32)
    episode_id: jax.Array  # float, increments on every reset via the key, to tell episodes apart


class CounterEnv:
    """obs = [t, episode_id]; reward = 1 each step; terminates after `terminate_after` steps (0: never).

    With the rollout's time limit this gives exact truncation vs termination cases: the true final
    observation of an episode is [T, id] while the reset observation is [0, id'].
    """

    observation_size = 2
    action_size = 1
    dt = 0.1

    def __init__(self, terminate_after: int = 0):
        self.terminate_after = terminate_after

    def reset(self, key: jax.Array) -> ToyState:
        episode_id = jax.random.uniform(key, (), minval=1.0, maxval=1000.0)
        return ToyState(
            obs=jnp.stack([jnp.zeros(()), episode_id]),
            reward=jnp.zeros(()),
            done=jnp.zeros(()),
            t=jnp.zeros((), jnp.int32),
            episode_id=episode_id,
        )

    def step(self, state: ToyState, action: jax.Array) -> ToyState:
        t = state.t + 1
        done = (t >= self.terminate_after) if self.terminate_after > 0 else jnp.zeros((), bool)
        return ToyState(
            obs=jnp.stack([t.astype(jnp.float32), state.episode_id]),
            reward=jnp.ones(()),
            done=done.astype(jnp.float32),
            t=t,
            episode_id=state.episode_id,
        )


class ConstantRewardEnv(CounterEnv):
    """One-step episodes with reward 1: Q_r -> 1 and Q_e -> 0 (every step terminates)."""

    def __init__(self):
        super().__init__(terminate_after=1)


class RandomLengthEnv(CounterEnv):
    """Like CounterEnv, but each episode terminates after its own length L in [1, max_length], drawn at
    reset (obs = [t, L]); reward = 0.5 per step, so an episode's return is half its length."""

    def __init__(self, max_length: int = 4):
        super().__init__(terminate_after=0)
        self.max_length = max_length

    def reset(self, key: jax.Array) -> ToyState:
        length = jax.random.randint(key, (), 1, self.max_length + 1).astype(jnp.float32)
        state = super().reset(key)
        return state.replace(obs=jnp.stack([jnp.zeros(()), length]), episode_id=length)

    def step(self, state: ToyState, action: jax.Array) -> ToyState:
        t = state.t + 1
        return ToyState(
            obs=jnp.stack([t.astype(jnp.float32), state.episode_id]),
            reward=jnp.full((), 0.5),
            done=(t >= state.episode_id).astype(jnp.float32),
            t=t,
            episode_id=state.episode_id,
        )
