"""A small functional env interface over brax/MJX tasks, with actions in [-1, 1]^|A| (spec §8)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class ScaledActionEnv:
    """Wraps a brax `Env`: maps agent actions in [-1, 1] to the actuators' control range.

    reset(key) -> state and step(state, action) -> state act on ONE environment; callers vmap.
    `state.obs`, `state.reward` and `state.done` (1.0 on a true termination) follow brax's `State`.

    `env_scales_actions`: the wrapped env already maps [-1, 1] to its ctrlrange inside its own step (brax's
    inverted_pendulum, pusher and humanoid do); the wrapper then only clips, so the range is not applied twice.
    """

    def __init__(self, env: Any, env_scales_actions: bool = False):
        self._env = env
        # brax's `observation_size` runs a full eager reset (about 20 s op by op on a CPU); the shape
        # of an abstract reset is the same number, for free.
        self.observation_size: int = int(jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs.shape[-1])
        self.action_size: int = int(env.action_size)
        self.dt: float = float(env.dt)
        low, high = -np.ones(self.action_size), np.ones(self.action_size)
        sys = getattr(env, "sys", None)
        if not env_scales_actions and sys is not None and hasattr(sys, "actuator_ctrlrange"):
            ctrl = np.asarray(sys.actuator_ctrlrange, np.float32)
            limited = np.asarray(getattr(sys, "actuator_ctrllimited", np.ones(len(ctrl), bool)), bool)
            low = np.where(limited, ctrl[:, 0], -1.0)
            high = np.where(limited, ctrl[:, 1], 1.0)
        self._scale = jnp.asarray((high - low) / 2.0, jnp.float32)
        self._offset = jnp.asarray((high + low) / 2.0, jnp.float32)

    @property
    def action_scale(self) -> np.ndarray:
        """control = action_offset + action_scale * action, for actions in [-1, 1]."""
        return np.asarray(self._scale)

    @property
    def action_offset(self) -> np.ndarray:
        return np.asarray(self._offset)

    @property
    def unwrapped(self) -> Any:
        return self._env

    def reset(self, key: jax.Array) -> Any:
        return self._env.reset(key)

    def step(self, state: Any, action: jax.Array) -> Any:
        return self._env.step(state, self._offset + self._scale * jnp.clip(action, -1.0, 1.0))
