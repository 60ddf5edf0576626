"""Registry of tasks by name: `make(name)` and the `--list-envs` table.

For now every bare name resolves to brax's MJX version of the task (`brax:<name>` too); the
Gymnasium-faithful tasks will take over the bare names. Swimmer has no MJX version in brax and uses
brax's `generalized` backend.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any

from mjx_tecrl.envs.wrappers import ScaledActionEnv


class UnknownEnvError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class EnvSpec:
    """A task and its per-task defaults (`preset` overrides applied to Config; `paper` ones too)."""

    name: str
    source: str
    brax_name: str
    backend: str = "mjx"
    env_scales_actions: bool = False  # brax's step maps [-1, 1] to the ctrlrange itself
    tuned: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)

    def make(self) -> ScaledActionEnv:
        import io
        import warnings

        # mujoco.mjx prints "Failed to import warp" at import on machines without NVIDIA Warp, which
        # MJX's JAX backend does not need; keep that line out of the user's output.
        with contextlib.redirect_stdout(io.StringIO()):
            from brax import envs as brax_envs

        _patch_brax_fluid_clip()
        with warnings.catch_warnings(), _mjx_models_on_a_local_device():
            warnings.simplefilter("ignore")
            env = brax_envs.get_environment(self.brax_name, backend=self.backend)
        return ScaledActionEnv(env, env_scales_actions=self.env_scales_actions)


@contextlib.contextmanager
def _mjx_models_on_a_local_device():
    """mjx.put_model without a device picks jax.devices()[0]; under jax.distributed that device belongs to
    process 0, and the other processes could not read their own env's model. Give it a local device."""
    import jax

    if jax.process_count() == 1:
        yield
        return
    from mujoco import mjx

    original = mjx.put_model
    mjx.put_model = functools.partial(original, device=jax.local_devices()[0])
    try:
        yield
    finally:
        mjx.put_model = original


def _patch_brax_fluid_clip() -> None:
    """brax 0.14's fluid model (swimmer, generalized backend) calls jnp.clip(x, a_min=...), which JAX 0.10
    removed (TypeError at the first reset). Give brax.fluid a jnp whose clip still takes a_min / a_max."""
    import types

    import jax.numpy as jnp
    from brax import fluid

    if getattr(fluid.jp, "_a_min_compat", False):
        return

    def clip(x, min=None, max=None, *, a_min=None, a_max=None):  # noqa: A002
        return jnp.clip(x, a_min if min is None else min, a_max if max is None else max)

    compat = types.SimpleNamespace(**{k: getattr(jnp, k) for k in dir(jnp) if not k.startswith("__")})
    compat.clip, compat._a_min_compat = clip, True
    fluid.jp = compat


# rho: 20 for Humanoid and Walker2d, 1 elsewhere (spec §3.4). `tuned` values were measured on the
# project's 2-core CPU for short runs (spec §8; docs/decisions.md); `paper` keeps the reference values.
_RHO_20 = {"rho": 20.0}
_TUNED_FAST = {"actor_lr": 1e-3, "critic_lr": 1e-3, "init_log_alpha": 0.0, "tau": 0.02}
_TASKS = {
    "inverted_pendulum": dict(env_scales_actions=True, tuned={**_TUNED_FAST, "learning_starts": 1_000}),
    "inverted_double_pendulum": dict(tuned={**_TUNED_FAST, "learning_starts": 5_000}),
    "reacher": dict(tuned={"actor_lr": 3e-4, "critic_lr": 3e-4, "init_log_alpha": 0.0}),
    "pusher": dict(env_scales_actions=True, tuned={"actor_lr": 3e-4, "critic_lr": 3e-4, "init_log_alpha": 0.0}),
    "hopper": dict(tuned={"actor_lr": 3e-4, "critic_lr": 3e-4, "init_log_alpha": 0.0}),
    "halfcheetah": dict(tuned={"actor_lr": 3e-4, "critic_lr": 3e-4, "init_log_alpha": 0.0}),
    "ant": dict(tuned={"actor_lr": 3e-4, "critic_lr": 3e-4, "init_log_alpha": 0.0}),
    "swimmer": dict(backend="generalized", tuned={"actor_lr": 3e-4, "critic_lr": 3e-4}),
    "walker2d": dict(tuned={**_RHO_20, "actor_lr": 3e-4, "critic_lr": 3e-4, "init_log_alpha": 0.0}, paper=_RHO_20),
    "humanoid": dict(
        env_scales_actions=True,
        tuned={**_RHO_20, "actor_lr": 3e-4, "critic_lr": 3e-4, "init_log_alpha": 0.0},
        paper=_RHO_20,
    ),
}

_REGISTRY: dict[str, EnvSpec] = {}
for _name, _kw in _TASKS.items():
    _backend = _kw.get("backend", "mjx")
    _src = f"brax ({_backend} backend)"
    for _alias in (_name, f"brax:{_name}"):
        _REGISTRY[_alias] = EnvSpec(
            name=_alias,
            source=_src,
            brax_name=_name,
            backend=_backend,
            env_scales_actions=_kw.get("env_scales_actions", False),
            tuned=dict(_kw.get("tuned", {})),
            paper=dict(_kw.get("paper", {})),
        )


def list_envs() -> tuple[str, ...]:
    """Every registered name, aliases included."""
    return tuple(_REGISTRY)


def bare_names() -> tuple[str, ...]:
    return tuple(n for n in _REGISTRY if ":" not in n)


def spec(name: str) -> EnvSpec:
    """The spec of a task; an unknown name raises UnknownEnvError listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownEnvError(
            f"unknown env {name!r}; known: {', '.join(bare_names())} (prefix brax: for brax's version)"
        ) from None


def make(name: str) -> ScaledActionEnv:
    return spec(name).make()
