"""MuJoCo Playground's tasks as `--env playground:<Name>` (the `playground` extra: `pip install '.[playground]'`).

Playground's `MjxEnv` already has brax's contract; the adapter only flattens its state for the learner:
- observations: the array, or for dict observations the `state` entry (the actor's; `privileged_state` and
  the others stay in the wrapped state, unread);
- actions in [-1, 1] go to Playground's `step` as they are, as its own trainers send them (its tasks scale them
  themselves); its MJX backend is `impl="jax"` (MJX in JAX, which needs no NVIDIA Warp);
- the wrapped `State` (its `data`, `info` and `metrics`) rides along untouched; Playground's domain
  randomisation belongs to its training wrappers and is not applied here.
No `sys` is exposed, so robustness studies and `--randomize` refuse these tasks (Playground's model lives in its
own `mjx_model`); videos draw its `mj_model`.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import jax
from flax import struct

PREFIX = "playground:"
INSTALL_HINT = "pip install 'mjx_tecrl[playground]'"


@struct.dataclass
class PlaygroundState:
    inner: Any  # Playground's State
    obs: jax.Array
    reward: jax.Array
    done: jax.Array

    @property
    def data(self) -> Any:
        """The MJX data: divergence checks and videos read qpos / qvel here."""
        return self.inner.data


class PlaygroundEnv:
    """One Playground task with brax's contract and a flat observation."""

    def __init__(self, env: Any):
        self._env = env
        self.action_size = int(env.action_size)
        self.dt = float(env.dt)
        self.mj_model = env.mj_model

    @property
    def unwrapped(self) -> Any:
        return self._env

    def _wrap(self, inner: Any) -> PlaygroundState:
        obs = inner.obs["state"] if isinstance(inner.obs, dict) else inner.obs
        return PlaygroundState(inner, obs, inner.reward, inner.done)

    def reset(self, key: jax.Array) -> PlaygroundState:
        return self._wrap(self._env.reset(key))

    def step(self, state: PlaygroundState, action: jax.Array) -> PlaygroundState:
        return self._wrap(self._env.step(state.inner, action))


def _registry():
    """mujoco_playground's registry, imported without MJX's 'Failed to import warp' prints; ImportError with the
    install hint when the extra is missing."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from mujoco_playground import registry
    except ImportError as e:
        raise ImportError(f"MuJoCo Playground is not installed ({e}): {INSTALL_HINT}") from None
    return registry


def names() -> tuple[str, ...]:
    """Every Playground task name, or () when the extra is not installed."""
    try:
        return tuple(_registry().ALL_ENVS)
    except ImportError:
        return ()


def make(name: str) -> PlaygroundEnv:
    """Playground's task `name` (e.g. CartpoleBalance) with its default config and MJX's JAX backend."""
    registry = _registry()
    if name not in registry.ALL_ENVS:
        raise KeyError(name)
    config = registry.get_default_config(name)
    with contextlib.suppress(AttributeError, KeyError):
        config.impl = "jax"
    with contextlib.redirect_stdout(io.StringIO()):
        return PlaygroundEnv(registry.load(name, config=config))


def episode_length(name: str) -> int:
    return int(_registry().get_default_config(name).episode_length)
