"""Actor, reward critic (Gaussian return distribution) and entropy critic (spec §2.1, §3.4)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mjx_tecrl.distributions import LOG_STD_MAX, LOG_STD_MIN

Params = Any
Activation = Callable[[jax.Array], jax.Array]
GELU: Activation = functools.partial(nn.gelu, approximate=False)  # exact (erf), as PyTorch's nn.GELU (spec §2.8)


class MLP(nn.Module):
    """GELU hidden layers, linear output (spec §2.8). `activation` is for measurements (bench/), not a flag.

    `layer_norm` puts a LayerNorm between each hidden Dense and its activation (not in the spec;
    `--critic-layer-norm`, `--actor-layer-norm`, docs/decisions.md). `dtype` is the computation's
    (`--matmul-dtype`): parameters stay float32 and the output is float32.
    """

    hidden_sizes: Sequence[int]
    out_size: int
    activation: Activation = GELU
    layer_norm: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden_sizes:
            x = nn.Dense(width, dtype=self.dtype)(x)
            if self.layer_norm:
                x = nn.LayerNorm(dtype=self.dtype)(x)
            x = self.activation(x)
        return nn.Dense(self.out_size, dtype=self.dtype)(x).astype(jnp.float32)


class Actor(nn.Module):
    """obs -> (mean, log_std) of the pre-tanh Gaussian; log_std hard-clipped to [-20, 0.5] (spec §2.1)."""

    hidden_sizes: Sequence[int]
    action_dim: int
    activation: Activation = GELU
    layer_norm: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden_sizes, 2 * self.action_dim, self.activation, self.layer_norm, self.dtype)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class RewardCritic(nn.Module):
    """[obs, act] -> (Q, sigma) with sigma = softplus(raw) (spec §2.1). `sac` uses Q only."""

    hidden_sizes: Sequence[int]
    activation: Activation = GELU
    layer_norm: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = jnp.concatenate([obs, action], axis=-1)
        out = MLP(self.hidden_sizes, 2, self.activation, self.layer_norm, self.dtype)(x)
        return out[..., 0], jax.nn.softplus(out[..., 1])


class EntropyCritic(nn.Module):
    """[obs, act] -> (Q_e, D): Q_e the discounted entropy still to come after this step (spec §3.2, A1); with
    `horizon`, a second head D = E[sum_{t>=1} gamma^t 1{alive at t}], the discounted steps still to come, for the
    budget over the steps an episode lives (`--budget-horizon episode`); else D is None."""

    hidden_sizes: Sequence[int]
    activation: Activation = GELU
    layer_norm: bool = False
    horizon: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        x = jnp.concatenate([obs, action], axis=-1)
        out = MLP(self.hidden_sizes, 2 if self.horizon else 1, self.activation, self.layer_norm, self.dtype)(x)
        return out[..., 0], out[..., 1] if self.horizon else None


@dataclass(frozen=True)
class Networks:
    """The three networks and their twin-stacked apply functions. Critic params carry a leading twin axis."""

    actor: Actor
    reward_critic: RewardCritic
    entropy_critic: EntropyCritic
    num_entropy_critics: int

    def init(self, key: jax.Array, obs_dim: int) -> tuple[Params, Params, Params]:
        """Actor params, twin reward-critic params [2, ...], entropy-critic params [n, ...]."""
        k_actor, k_reward, k_entropy = jax.random.split(key, 3)
        obs = jnp.zeros((1, obs_dim), jnp.float32)
        act = jnp.zeros((1, self.actor.action_dim), jnp.float32)
        actor_params = self.actor.init(k_actor, obs)
        reward_params = jax.vmap(lambda k: self.reward_critic.init(k, obs, act))(jax.random.split(k_reward, 2))
        entropy_params = jax.vmap(lambda k: self.entropy_critic.init(k, obs, act))(
            jax.random.split(k_entropy, self.num_entropy_critics)
        )
        return actor_params, reward_params, entropy_params

    def reward_critics(self, params: Params, obs: jax.Array, action: jax.Array):
        """Both reward critics: (Q [2, B], sigma [2, B])."""
        return jax.vmap(self.reward_critic.apply, in_axes=(0, None, None))(params, obs, action)

    def entropy_critics(self, params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Q_e of every entropy critic [n, B]."""
        return self.entropy_critics_and_horizon(params, obs, action)[0]

    def entropy_critics_and_horizon(self, params: Params, obs: jax.Array, action: jax.Array):
        """(Q_e [n, B], D [n, B] or None) of every entropy critic."""
        return jax.vmap(self.entropy_critic.apply, in_axes=(0, None, None))(params, obs, action)


def make_networks(
    action_dim: int,
    hidden_sizes: Sequence[int],
    twin_entropy_critic: bool,
    activation: Activation = GELU,
    critic_layer_norm: bool = False,
    horizon: bool = False,
    actor_layer_norm: bool = False,
    matmul_dtype: str = "float32",
) -> Networks:
    hidden, dtype = tuple(hidden_sizes), jnp.dtype(matmul_dtype)
    return Networks(
        actor=Actor(hidden, action_dim, activation, actor_layer_norm, dtype),
        reward_critic=RewardCritic(hidden, activation, critic_layer_norm, dtype),
        entropy_critic=EntropyCritic(hidden, activation, critic_layer_norm, horizon, dtype),
        num_entropy_critics=2 if twin_entropy_critic else 1,
    )
