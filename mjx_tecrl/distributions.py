"""Tanh-squashed diagonal Gaussian on [-1, 1]^|A| (spec §2.1, with the §8 convention: no action-scale term)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOG_STD_MIN = -20.0
LOG_STD_MAX = 0.5
_HALF_LOG_2PI = 0.5 * jnp.log(2.0 * jnp.pi)


def _log_det_tanh(u: jax.Array) -> jax.Array:
    """log(1 - tanh(u)^2), computed stably as 2(log 2 - u - softplus(-2u)) (spec §2.9)."""
    return 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def log_prob_pre_tanh(mean: jax.Array, log_std: jax.Array, u: jax.Array) -> jax.Array:
    """log pi(tanh(u)) for pre-squash u; sums over the last axis."""
    z = (u - mean) * jnp.exp(-log_std)
    gauss = -0.5 * z**2 - log_std - _HALF_LOG_2PI
    return jnp.sum(gauss - _log_det_tanh(u), axis=-1)


def sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample a = tanh(u), u ~ N(mean, std); returns (action, log_prob)."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    return jnp.tanh(u), log_prob_pre_tanh(mean, log_std, u)


def mode(mean: jax.Array) -> jax.Array:
    """Deterministic evaluation action tanh(mean) (spec §2.1)."""
    return jnp.tanh(mean)
