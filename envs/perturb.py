"""Perturbed physics and noise, per environment, inside the traced step (robustness studies, domain randomisation).

`PerturbedEnv` wraps a registry env (single-env `reset`/`step`, callers vmap). Its state carries each
environment's `Perturbation` (one magnitude per name below) and its own PRNG key. In `reset` and `step` it builds
that environment's MJX model from the base model and the physics scales, and puts it in `env.unwrapped.sys` while
the wrapped env traces, so under `vmap` every environment simulates its own model (batched model fields, not a
global copy). Magnitudes at their neutral values (1 for scales, 0 for the rest) reproduce the wrapped env exactly.

Physics scales (neutral 1), applied to the model:
  mass      body masses and inertias (and the mass-derived model constants, scaled consistently)
  friction  geom (and explicit pair) friction coefficients
  gain      actuator force: gain and bias parameters of fixed/affine actuators, and their force limits
  damping   joint damping
  gravity   the gravity vector
Noise (neutral 0):
  obs_noise     std of Gaussian noise on the observation the policy sees (the simulation is untouched)
  action_noise  std of Gaussian noise on the action in [-1, 1] before it is clipped and applied
  push          velocity impulse (m/s) on the root body in a random horizontal direction, at random steps
                (each step with probability 1 / push_every)
  delay         the action applied is the one chosen this many control steps earlier (zeros before the start)
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

SCALES = ("mass", "friction", "gain", "damping", "gravity")
NOISES = ("obs_noise", "action_noise", "push", "delay")
NAMES = SCALES + NOISES
NEUTRAL = {**{n: 1.0 for n in SCALES}, **{n: 0.0 for n in NOISES}}
DEFAULT_PUSH_EVERY = 100  # mean control steps between pushes

# A scale must be positive for mass (a massless body is not a model); the others may reach zero.
_POSITIVE = ("mass",)


@struct.dataclass
class Perturbation:
    """One environment's magnitudes (scalars; a batch of environments has a leading axis on each)."""

    mass: jax.Array
    friction: jax.Array
    gain: jax.Array
    damping: jax.Array
    gravity: jax.Array
    obs_noise: jax.Array
    action_noise: jax.Array
    push: jax.Array
    delay: jax.Array  # int32

    @classmethod
    def make(cls, shape: tuple[int, ...] = (), **values: Any) -> Perturbation:
        """Magnitudes of `shape` from `values` (name -> scalar or array), neutral where not given."""
        unknown = sorted(set(values) - set(NAMES))
        if unknown:
            raise ValueError(f"unknown perturbations {unknown}; known: {', '.join(NAMES)}")
        out = {}
        for name in NAMES:
            dtype = jnp.int32 if name == "delay" else jnp.float32
            out[name] = jnp.broadcast_to(jnp.asarray(values.get(name, NEUTRAL[name]), dtype), shape)
        return cls(**out)


def magnitude_error(name: str, value: float) -> str | None:
    """Why `value` is not a magnitude of `name` (None when it is)."""
    if name not in NAMES:
        return f"unknown perturbation {name!r}; known: {', '.join(NAMES)}"
    if not math.isfinite(value):
        return f"{name} magnitude {value!r} is not a finite number"
    if name == "delay" and (value != int(value) or value < 0):
        return f"delay {value!r} must be a non-negative integer (control steps)"
    if name in _POSITIVE and value <= 0:
        return f"{name} scale {value!r} must be positive"
    if value < 0:
        kind = "scale" if name in SCALES else "std" if name.endswith("noise") else "magnitude"
        return f"{name} {kind} {value!r} must be non-negative"
    return None


def parse_ranges(text: str) -> dict[str, tuple[float, float]]:
    """'mass=0.8:1.2,friction=0.5:1.5' -> {name: (low, high)}; ValueError (one line) when malformed."""
    ranges: dict[str, tuple[float, float]] = {}
    form = f"NAME=LOW:HIGH[,NAME=LOW:HIGH...] with NAME one of {', '.join(SCALES)}"
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, span = item.partition("=")
        name = name.strip()
        if not sep or name not in SCALES:
            raise ValueError(f"{item!r} is not {form}")
        if name in ranges:
            raise ValueError(f"{name} is given twice")
        try:
            low, high = (float(v) for v in span.split(":"))
        except ValueError:
            raise ValueError(f"{item!r} is not {form}") from None
        for v in (low, high):
            err = magnitude_error(name, v)
            if err:
                raise ValueError(err)
        if low > high:
            raise ValueError(f"{item!r}: LOW {low} exceeds HIGH {high}")
        ranges[name] = (low, high)
    if not ranges and text.strip():
        raise ValueError(f"{text!r} is not {form}")
    return ranges


# --- the model -----------------------------------------------------------------------------------------------
def _replace_path(obj: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    return obj.replace(**{head: _replace_path(getattr(obj, head), rest, value) if rest else value})


def scale_model(sys: Any, p: Perturbation) -> Any:
    """`sys` (an mjx.Model or brax System) with p's physics scales applied; p's leaves may be tracers.

    Mass and inertia scale together, so the mass matrix scales by `mass` and its inverse-derived constants
    (`*_invweight0`, `actuator_acc0`) by 1 / `mass`, as `mj_setConst` would compute them.
    """
    m, f, g = p.mass, p.friction, p.gain
    updates: dict[str, Any] = {}

    def scale(path: str, factor: jax.Array) -> None:
        obj = sys
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return
        if np.size(obj):
            updates[path] = jnp.asarray(obj) * factor

    for name in ("body_mass", "body_inertia", "body_subtreemass"):
        scale(name, m)
    for name in ("body_invweight0", "dof_invweight0", "tendon_invweight0", "actuator_acc0"):
        scale(name, 1.0 / m)
    if getattr(sys, "link", None) is not None:  # brax's generalized backend keeps its own inertia copy
        scale("link.inertia.mass", m)
        scale("link.inertia.i", m)
        scale("link.invweight", 1.0 / m)
    scale("geom_friction", f)
    scale("pair_friction", f)
    scale("dof_damping", p.damping)
    scale("opt.gravity", p.gravity)
    nu = int(np.size(getattr(sys, "actuator_gaintype", ())))
    if nu:
        # force = gain * ctrl + bias with gain, bias affine in (length, velocity): scaling their three
        # coefficients scales the force; muscles (type 2) keep their own semantics and are left alone.
        cols = np.arange(np.shape(sys.actuator_gainprm)[1]) < 3
        gain_rows = np.isin(np.asarray(sys.actuator_gaintype), (0, 1))
        bias_rows = np.isin(np.asarray(sys.actuator_biastype), (0, 1))
        for name, rows in (("actuator_gainprm", gain_rows), ("actuator_biasprm", bias_rows)):
            prm = jnp.asarray(getattr(sys, name))
            updates[name] = jnp.where(rows[:, None] & cols, prm * g, prm)
        fr = jnp.asarray(sys.actuator_forcerange)
        updates["actuator_forcerange"] = jnp.where(jnp.isfinite(fr), fr * g, fr)
    for path, value in updates.items():
        sys = _replace_path(sys, path, value)
    return sys


def _root_push_basis(sys: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(dof indices, [k, 2] horizontal axes) of the root body's translational dofs, or None if it has none."""
    parent = np.asarray(sys.body_parentid)
    roots = [b for b in range(1, len(parent)) if parent[b] == 0]
    if not roots:
        return None
    jnt_body, jnt_type = np.asarray(sys.jnt_bodyid), np.asarray(sys.jnt_type)
    adr, axis = np.asarray(sys.jnt_dofadr), np.asarray(sys.jnt_axis)
    dofs, axes = [], []
    for j in np.flatnonzero(jnt_body == roots[0]):
        if jnt_type[j] == 0:  # free: world-frame linear velocity first
            dofs += [adr[j], adr[j] + 1]
            axes += [[1.0, 0.0], [0.0, 1.0]]
        elif jnt_type[j] == 2:  # slide
            a = axis[j][:2]
            if np.linalg.norm(a) > 1e-6:
                dofs.append(adr[j])
                axes.append(list(a))
    if not dofs:
        return None
    return np.asarray(dofs, np.int32), np.asarray(axes, np.float32)


# --- the wrapper ---------------------------------------------------------------------------------------------
@struct.dataclass
class PerturbedState:
    inner: Any  # the wrapped env's state (simulation untouched by observation noise)
    obs: jax.Array  # what the policy sees
    reward: jax.Array
    done: jax.Array
    perturbation: Perturbation
    key: jax.Array  # this environment's noise and push stream
    actions: jax.Array  # [max_delay, |A|] the last actions chosen, newest first

    @property
    def pipeline_state(self) -> Any:
        return self.inner.pipeline_state


class NotPerturbable(ValueError):
    """The env has no model (`env.unwrapped.sys`) whose fields a perturbation could scale."""


class PerturbedEnv:
    """A registry env whose every environment has its own physics and noise (see the module docstring).

    `reset(key)` draws the physics scales uniformly from `ranges` (domain randomisation, at every reset of the
    training pipeline; neutral for names not in `ranges`); `reset_with(key, perturbation)` sets them. The wrapped
    env's reset receives `key` itself, so a neutral perturbation starts from the same states as the wrapped env.
    `max_delay` (static) is the largest delay a perturbation may ask for.
    """

    def __init__(
        self,
        env: Any,
        ranges: dict[str, tuple[float, float]] | None = None,
        max_delay: int = 0,
        push_every: int = DEFAULT_PUSH_EVERY,
    ):
        self.env = env
        self.ranges = dict(ranges or {})
        bad = sorted(set(self.ranges) - set(SCALES))
        if bad:
            raise ValueError(f"only physics scales can be randomised ({', '.join(SCALES)}), not {bad}")
        self.max_delay = int(max_delay)
        self.push_every = int(push_every)
        self.observation_size = env.observation_size
        self.action_size = env.action_size
        self.dt = env.dt
        self.base_sys = getattr(env.unwrapped, "sys", None)
        if self.base_sys is None:
            raise NotPerturbable(
                f"{type(env.unwrapped).__name__} exposes no MJX model as `sys` to perturb (robustness studies and "
                "--randomize need one; docs/envs.md, 'Your own task')"
            )
        self._push = _root_push_basis(self.base_sys)

    @property
    def unwrapped(self) -> Any:
        return self.env.unwrapped

    @property
    def nominal(self) -> Any:
        """The wrapped env: what training-time evaluations run on."""
        return self.env

    @property
    def can_push(self) -> bool:
        return self._push is not None

    @contextlib.contextmanager
    def _model(self, p: Perturbation):
        """The wrapped env with this environment's model in `sys` while it traces; restored afterwards."""
        env = self.unwrapped
        env.sys = scale_model(self.base_sys, p)
        try:
            yield self.env
        finally:
            env.sys = self.base_sys

    def model(self, p: Perturbation) -> Any:
        """The model an environment with perturbation `p` simulates."""
        return scale_model(self.base_sys, p)

    def sample(self, key: jax.Array) -> Perturbation:
        """Physics scales drawn uniformly from `ranges`, each name from its own key."""
        values = {}
        for i, (name, (low, high)) in enumerate(sorted(self.ranges.items())):
            values[name] = jax.random.uniform(jax.random.fold_in(key, i), (), minval=low, maxval=high)
        return Perturbation.make(**values)

    def reset(self, key: jax.Array) -> PerturbedState:
        return self.reset_with(key, self.sample(jax.random.fold_in(key, 2)))

    def reset_with(self, key: jax.Array, perturbation: Perturbation) -> PerturbedState:
        with self._model(perturbation) as env:
            inner = env.reset(key)
        noise_key = jax.random.fold_in(key, 1)
        noise_key, k_obs = jax.random.split(noise_key)
        return PerturbedState(
            inner=inner,
            obs=self._observe(inner.obs, perturbation, k_obs),
            reward=inner.reward,
            done=inner.done,
            perturbation=perturbation,
            key=noise_key,
            actions=jnp.zeros((self.max_delay, self.action_size), jnp.float32),
        )

    def step(self, state: PerturbedState, action: jax.Array) -> PerturbedState:
        p = state.perturbation
        key, k_obs, k_act, k_push = jax.random.split(state.key, 4)
        history = jnp.concatenate([action[None].astype(jnp.float32), state.actions])  # newest first
        applied = history[jnp.clip(p.delay, 0, self.max_delay)]
        applied = applied + p.action_noise * jax.random.normal(k_act, applied.shape, applied.dtype)
        inner = self._pushed(state.inner, p, k_push)
        with self._model(p) as env:
            nxt = env.step(inner, applied)
        # A simulation that diverged under its perturbation ends its episode (a fall) with reward 0.
        finite = jnp.isfinite(nxt.reward) & jnp.all(jnp.isfinite(nxt.obs))
        return PerturbedState(
            inner=nxt,
            obs=self._observe(nxt.obs, p, k_obs),
            reward=jnp.where(finite, nxt.reward, 0.0),
            done=jnp.where(finite, nxt.done, 1.0),
            perturbation=p,
            key=key,
            actions=history[: self.max_delay],
        )

    @staticmethod
    def _observe(obs: jax.Array, p: Perturbation, key: jax.Array) -> jax.Array:
        return obs + p.obs_noise * jax.random.normal(key, obs.shape, obs.dtype)

    def _pushed(self, inner: Any, p: Perturbation, key: jax.Array) -> Any:
        """`inner` with a velocity impulse of `p.push` on the root, on a random step (else unchanged)."""
        if self._push is None:
            return inner
        dofs, axes = self._push
        k_when, k_dir = jax.random.split(key)
        # A uniformly random direction within the horizontal directions the root can move in.
        proj = np.linalg.pinv(axes) @ axes  # [2, 2] projector onto the span of the root's horizontal axes
        g = jnp.asarray(proj, jnp.float32) @ jax.random.normal(k_dir, (2,))
        direction = g / jnp.maximum(jnp.linalg.norm(g), 1e-6)
        hit = jax.random.uniform(k_when) < 1.0 / self.push_every
        dq = jnp.where(hit, p.push, 0.0) * (jnp.asarray(axes) @ direction)  # [k]
        ps = inner.pipeline_state
        fields = {"qvel": ps.qvel.at[dofs].add(dq)}
        if hasattr(ps, "qd"):  # brax keeps its own copy of the velocities
            fields["qd"] = ps.qd.at[dofs].add(dq)
        return inner.replace(pipeline_state=ps.replace(**fields))


def randomized(env: Any, text: str) -> PerturbedEnv:
    """`env` with training-time domain randomisation `text` ('mass=0.8:1.2,...'; see `parse_ranges`)."""
    return PerturbedEnv(env, parse_ranges(text))
