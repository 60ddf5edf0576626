"""Small records shared by the replay buffer, the rollout and the learner."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Transition:
    """One env step. `next_obs` is the TRUE final observation, also when the env auto-reset after it.

    terminated: 1.0 on a true termination (no bootstrap); truncated: 1.0 when the time limit cut the
    episode (bootstrapped from next_obs like any other step).
    """

    obs: jax.Array  # [..., obs_dim]
    action: jax.Array  # [..., action_dim]
    reward: jax.Array
    next_obs: jax.Array  # [..., obs_dim]
    terminated: jax.Array
    truncated: jax.Array


@struct.dataclass
class Steps:
    """`n` consecutive replay rows per sample, for n-step targets: every leaf of `rows` is [n, B, ...], row k
    the k-th step after row 0 of the same env. `included` [n, B] (float 0/1): step k belongs to the return, i.e.
    it was written, and no earlier step of the sample ended its episode (terminated, truncated or reset)."""

    rows: Transition
    included: jax.Array


@struct.dataclass
class NormalizerState:
    """Running mean and variance of observations (parallel Welford / Chan et al. merge)."""

    mean: jax.Array  # [obs_dim]
    var: jax.Array  # [obs_dim]
    count: jax.Array  # scalar float32


def normalizer_init(obs_dim: int) -> NormalizerState:
    return NormalizerState(
        mean=jnp.zeros((obs_dim,), jnp.float32),
        var=jnp.ones((obs_dim,), jnp.float32),
        count=jnp.zeros((), jnp.float32),
    )


def normalizer_update(state: NormalizerState, obs: jax.Array) -> NormalizerState:
    """Merge a batch obs [N, obs_dim] into the running statistics."""
    n = jnp.asarray(obs.shape[0], jnp.float32)
    batch_mean = jnp.mean(obs, axis=0)
    batch_var = jnp.var(obs, axis=0)
    total = state.count + n
    delta = batch_mean - state.mean
    mean = state.mean + delta * n / total
    m2 = state.var * state.count + batch_var * n + delta**2 * state.count * n / total
    return NormalizerState(mean=mean, var=m2 / total, count=total)


def normalize(state: NormalizerState, obs: jax.Array) -> jax.Array:
    """(obs - mean) / std, clipped to [-10, 10]; the identity while nothing was seen."""
    std = jnp.sqrt(jnp.maximum(state.var, 1e-6))
    return jnp.clip((obs - state.mean) / std, -10.0, 10.0)
