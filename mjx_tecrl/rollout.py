"""Vmapped env stepping with in-program auto-reset that keeps the true final observation (spec §2.7)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from mjx_tecrl.types import Transition


@struct.dataclass
class EnvState:
    """A batch of N environments and their running episode statistics."""

    sim: Any  # the wrapped env's own state, every leaf [N, ...]
    episode_step: jax.Array  # [N] int32
    episode_return: jax.Array  # [N] float32 (unscaled reward)


@struct.dataclass
class EpisodeStats:
    """Completed-episode sums over a chunk, kept on the device."""

    count: jax.Array
    return_sum: jax.Array
    length_sum: jax.Array

    @classmethod
    def zeros(cls) -> EpisodeStats:
        return cls(*(jnp.zeros((), jnp.float32) for _ in range(3)))


def reset(env, key: jax.Array, num_envs: int) -> EnvState:
    sim = jax.vmap(env.reset)(jax.random.split(key, num_envs))
    return EnvState(
        sim=sim,
        episode_step=jnp.zeros((num_envs,), jnp.int32),
        episode_return=jnp.zeros((num_envs,), jnp.float32),
    )


def step(
    env, state: EnvState, action: jax.Array, key: jax.Array, episode_length: int
) -> tuple[EnvState, Transition, EpisodeStats]:
    """Step all envs, reset those that finished, and return the transition with the TRUE next_obs.

    Warning: termination and truncation differ. `terminated` comes from the task; `truncated` is the
    time limit and stays bootstrapped. A step that is both counts as terminated.
    """
    obs = state.sim.obs
    nxt = jax.vmap(env.step)(state.sim, action)
    episode_step = state.episode_step + 1
    terminated = nxt.done > 0.5  # [N]
    truncated = (episode_step >= episode_length) & ~terminated
    done = terminated | truncated
    # Mask with where, never by multiplying: a diverged env may hold NaN (NaN * 0 = NaN).
    episode_return = state.episode_return + jnp.where(jnp.isfinite(nxt.reward), nxt.reward, 0.0)
    stats = EpisodeStats(
        count=jnp.sum(done.astype(jnp.float32)),
        return_sum=jnp.sum(jnp.where(done, episode_return, 0.0)),
        length_sum=jnp.sum(jnp.where(done, episode_step, 0).astype(jnp.float32)),
    )
    transition = Transition(
        obs=obs,
        action=action,
        reward=nxt.reward,
        next_obs=nxt.obs,  # taken before the reset below overwrites it
        terminated=terminated.astype(jnp.float32),
        truncated=truncated.astype(jnp.float32),
    )

    def do_reset(sim):
        fresh = jax.vmap(env.reset)(jax.random.split(key, action.shape[0]))
        return jax.tree.map(lambda f, s: jnp.where(_bcast(done, s), f, s), fresh, sim)

    # A batch-level cond: most iterations finish no episode and skip the reset entirely.
    sim = jax.lax.cond(jnp.any(done), do_reset, lambda s: s, nxt)
    new_state = EnvState(
        sim=sim,
        episode_step=jnp.where(done, 0, episode_step),
        episode_return=jnp.where(done, 0.0, episode_return),
    )
    return new_state, transition, stats


def _bcast(mask: jax.Array, x: jax.Array) -> jax.Array:
    return mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
