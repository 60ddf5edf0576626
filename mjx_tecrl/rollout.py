"""Vmapped env stepping with in-program auto-reset that keeps the true final observation (spec §2.7).

An env whose physics diverges (non-finite observation or reward, or |qpos| / |qvel| beyond
`DIVERGENCE_LIMIT`, which MJX can produce) is reset like a finished episode, counted in
`EpisodeStats.diverged`, and its transition is marked invalid so the replay buffer never stores it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from mjx_tecrl.types import Transition

DIVERGENCE_LIMIT = 1e6  # |qpos| or |qvel| above this (or NaN / inf anywhere) counts as diverged physics

# Envs stepped per vectorised group: a batch of N steps as `lax.map` over groups of ENV_GROUP vmapped envs, where
# one vmap over all N would process each op on every env before the next op (N envs' arrays fall out of a CPU's
# caches, and every solver loop runs until the slowest of N has converged). None: GROUP_ON_CPU envs on a CPU,
# one group elsewhere; 0: one group. Read while tracing. docs/performance.md, section 1, "Env groups".
ENV_GROUP: int | None = None
GROUP_ON_CPU = 16


def env_group(num_envs: int) -> int:
    """The group size a batch of `num_envs` envs is stepped in while tracing now: the largest divisor of
    num_envs up to ENV_GROUP, or num_envs itself (one group) where that divisor is below half of ENV_GROUP."""
    group = ENV_GROUP
    if group is None:
        group = GROUP_ON_CPU if jax.default_backend() == "cpu" else 0
    if not 0 < group < num_envs:
        return num_envs
    divisor = max(g for g in range(1, group + 1) if num_envs % g == 0)
    return divisor if 2 * divisor >= group else num_envs


def vmap_envs(fn, *batched: Any) -> Any:
    """`jax.vmap(fn)(*batched)` (every leaf [N, ...]), as a `lax.map` over N / G groups of G = `env_group(N)`
    vmapped envs: the same values up to float rounding."""
    n = jax.tree.leaves(batched)[0].shape[0]
    group = env_group(n)
    if group == n:
        return jax.vmap(fn)(*batched)
    split = jax.tree.map(lambda x: x.reshape((n // group, group) + x.shape[1:]), batched)
    out = jax.lax.map(lambda args: jax.vmap(fn)(*args), split)
    return jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), out)


@struct.dataclass
class EnvState:
    """A batch of N environments and their running episode statistics."""

    sim: Any  # the wrapped env's own state, every leaf [N, ...]
    episode_step: jax.Array  # [N] int32
    episode_return: jax.Array  # [N] float32 (unscaled reward)


@struct.dataclass
class EpisodeStats:
    """Completed-episode sums over a chunk, and the count of diverged (reset, not stored) env steps."""

    count: jax.Array
    return_sum: jax.Array
    length_sum: jax.Array
    diverged: jax.Array
    reward_abs_max: jax.Array  # the largest |reward| of a stored (not diverged) step: a physics blow-up shows here

    @classmethod
    def zeros(cls) -> EpisodeStats:
        return cls(*(jnp.zeros((), jnp.float32) for _ in range(5)))


def reset(env, key: jax.Array, num_envs: int) -> EnvState:
    sim = vmap_envs(env.reset, jax.random.split(key, num_envs))
    return EnvState(
        sim=sim,
        episode_step=jnp.zeros((num_envs,), jnp.int32),
        episode_return=jnp.zeros((num_envs,), jnp.float32),
    )


def diverged(sim: Any) -> jax.Array:
    """[N] bool: the env's observation or reward is not finite, or its qpos / qvel is NaN, inf or huge.

    qpos / qvel are read from `sim.pipeline_state` (MJX: qpos, qvel; brax generalized: q, qd), or else
    `sim.data` (MuJoCo Playground's), when there is one; envs without either are judged by observation and reward
    alone. A few reductions per step.
    """
    n = sim.reward.shape[0]
    bad = ~jnp.all(jnp.isfinite(sim.obs.reshape(n, -1)), axis=1) | ~jnp.isfinite(sim.reward)
    for x in _physics_arrays(sim):
        bad = bad | ~jnp.all(jnp.abs(x.reshape(n, -1)) <= DIVERGENCE_LIMIT, axis=1)  # NaN fails <= too
    return bad


def _physics_arrays(sim: Any) -> list[jax.Array]:
    ps = getattr(sim, "pipeline_state", None)
    if ps is None:
        ps = getattr(sim, "data", None)
    if ps is None:
        return []
    for names in (("qpos", "qvel"), ("q", "qd")):
        found = [getattr(ps, name, None) for name in names]
        if all(x is not None for x in found):
            return found
    return []


def step(
    env, state: EnvState, action: jax.Array, key: jax.Array, episode_length: int
) -> tuple[EnvState, Transition, EpisodeStats]:
    """`step_with_mask` without the mask: (state, transition, stats)."""
    return step_with_mask(env, state, action, key, episode_length)[:3]


def step_with_mask(
    env, state: EnvState, action: jax.Array, key: jax.Array, episode_length: int
) -> tuple[EnvState, Transition, EpisodeStats, jax.Array]:
    """Step all envs, reset those that finished or diverged, and return the transition with the TRUE next_obs.

    Returns (state, transition, stats, valid): `valid` [N] is False for envs whose physics diverged in
    this step; their rows of `transition` hold garbage and must not be stored (`replay.add(..., valid)`).

    Warning: termination and truncation differ. `terminated` comes from the task; `truncated` is the
    time limit and stays bootstrapped. A step that is both counts as terminated.
    """
    obs = state.sim.obs
    nxt = vmap_envs(env.step, state.sim, action)
    bad = diverged(nxt)
    episode_step = state.episode_step + 1
    terminated = nxt.done > 0.5  # [N]
    truncated = (episode_step >= episode_length) & ~terminated
    finished = (terminated | truncated) & ~bad  # a diverged episode is not a completed one
    done = finished | bad  # reset either way
    # Mask with where, never by multiplying: a diverged env may hold NaN (NaN * 0 = NaN).
    episode_return = state.episode_return + jnp.where(jnp.isfinite(nxt.reward), nxt.reward, 0.0)
    stats = EpisodeStats(
        count=jnp.sum(finished.astype(jnp.float32)),
        return_sum=jnp.sum(jnp.where(finished, episode_return, 0.0)),
        length_sum=jnp.sum(jnp.where(finished, episode_step, 0).astype(jnp.float32)),
        diverged=jnp.sum(bad.astype(jnp.float32)),
        reward_abs_max=jnp.max(jnp.where(bad, 0.0, jnp.abs(nxt.reward))),
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
        fresh = vmap_envs(env.reset, jax.random.split(key, action.shape[0]))
        return jax.tree.map(lambda f, s: jnp.where(_bcast(done, s), f, s), fresh, sim)

    # A batch-level cond: most iterations finish no episode and skip the reset entirely.
    sim = jax.lax.cond(jnp.any(done), do_reset, lambda s: s, nxt)
    new_state = EnvState(
        sim=sim,
        episode_step=jnp.where(done, 0, episode_step),
        episode_return=jnp.where(done, 0.0, episode_return),
    )
    return new_state, transition, stats, ~bad


def _bcast(mask: jax.Array, x: jax.Array) -> jax.Array:
    return mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
