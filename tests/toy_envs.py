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


@struct.dataclass
class ToyPhysics:
    """Stands in for MJX's `pipeline_state`: what `rollout.diverged` reads qpos / qvel from."""

    qpos: jax.Array
    qvel: jax.Array


@struct.dataclass
class ToyPhysicsState(ToyState):
    pipeline_state: ToyPhysics = None


class DivergingEnv(CounterEnv):
    """CounterEnv with a `pipeline_state` whose physics diverges on demand: any step with action > `threshold`.

    `mode` says how: "nan_qpos" (NaN qpos, observation still finite), "huge_qvel" (|qvel| = 1e7, finite),
    "nan_obs" (NaN observation), "inf_reward" (reward +inf); the diverged step's reward is -1 (a marker the
    replay buffer must never hold) unless it is inf. Otherwise qpos = [t], qvel = [1], reward 1.
    """

    MODES = ("nan_qpos", "huge_qvel", "nan_obs", "inf_reward")

    def __init__(self, mode: str = "nan_qpos", threshold: float = 0.5, terminate_after: int = 0):
        super().__init__(terminate_after=terminate_after)
        assert mode in self.MODES, mode
        self.mode, self.threshold = mode, threshold

    def reset(self, key: jax.Array) -> ToyPhysicsState:
        s = super().reset(key)
        physics = ToyPhysics(qpos=jnp.zeros((1,)), qvel=jnp.ones((1,)))
        return ToyPhysicsState(s.obs, s.reward, s.done, s.t, s.episode_id, pipeline_state=physics)

    def step(self, state: ToyPhysicsState, action: jax.Array) -> ToyPhysicsState:
        s = super().step(state, action)
        blow = action[0] > self.threshold
        qpos = jnp.where(blow & (self.mode == "nan_qpos"), jnp.nan, s.t.astype(jnp.float32))[None]
        qvel = jnp.where(blow & (self.mode == "huge_qvel"), jnp.float32(1e7), jnp.float32(1.0))[None]
        obs = jnp.where(blow & (self.mode == "nan_obs"), jnp.nan, s.obs)
        reward = jnp.where(blow, jnp.where(self.mode == "inf_reward", jnp.inf, -1.0), s.reward)  # -1: a marker
        return ToyPhysicsState(obs, reward, s.done, s.t, s.episode_id, pipeline_state=ToyPhysics(qpos, qvel))


class HugeRewardEnv(CounterEnv):
    """CounterEnv whose reward is `reward` (1e38: finite, so not a divergence) at step `blow_up_at` of an episode,
    which then terminates: stored and learned from, it overflows the reward critic's loss (a numerical blow-up)."""

    def __init__(self, blow_up_at: int, reward: float = 1e38):
        super().__init__(terminate_after=blow_up_at)
        self.blow_up_at, self.reward = blow_up_at, reward

    def step(self, state: ToyState, action: jax.Array) -> ToyState:
        s = super().step(state, action)
        return s.replace(reward=jnp.where(s.t >= self.blow_up_at, jnp.float32(self.reward), jnp.float32(1.0)))


PROBE_XML = """
<mujoco>
  <worldbody>
    <body name="cart">
      <joint name="slider" type="slide" axis="1 0 0" damping="0.3"/>
      <geom type="box" size=".1 .1 .1" mass="2" friction="0.8 0.01 0.001"/>
      <body name="pole">
        <joint name="hinge" type="hinge" axis="0 1 0" damping="0.5"/>
        <geom type="capsule" fromto="0 0 0 0 0 1" size=".05" mass="1"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor joint="slider" gear="10" ctrlrange="-1 1"/>
    <position joint="hinge" kp="5" kv="0.5" ctrlrange="-1 1" forcerange="-3 3"/>
  </actuator>
</mujoco>
"""

PROBE_FIELDS = (
    "body_mass", "body_inertia", "dof_invweight0", "geom_friction", "actuator_gainprm", "actuator_biasprm",
    "actuator_forcerange", "dof_damping", "opt.gravity",
)  # fmt: skip


@struct.dataclass
class ProbeData:
    qvel: jax.Array


@struct.dataclass
class ProbeState:
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    pipeline_state: ProbeData
    t: jax.Array


class ProbeEnv:
    """No physics: a small MJX model in `sys` (read at trace time, like the registry envs), and an observation
    that shows what the env was given: the model fields `PROBE_FIELDS`, the action it received, its qvel.

    qvel never changes by itself (so only pushes move it); reward = 0.01 * sum(obs); terminates after
    `terminate_after` steps (0: never). `split(obs)` names the parts.
    """

    dt = 0.01

    def __init__(self, terminate_after: int = 0):
        import mujoco
        from mujoco import mjx

        mj = mujoco.MjModel.from_xml_string(PROBE_XML)
        self.sys = mjx.put_model(mj)
        self.action_size = mj.nu
        self.nv = mj.nv
        self.terminate_after = terminate_after
        self._sizes = [int(jnp.size(self._field(f))) for f in PROBE_FIELDS]
        self.observation_size = sum(self._sizes) + self.action_size + self.nv

    @property
    def unwrapped(self):
        return self

    def _field(self, path: str):
        obj = self.sys
        for part in path.split("."):
            obj = getattr(obj, part)
        return jnp.asarray(obj, jnp.float32)

    def _obs(self, action: jax.Array, qvel: jax.Array) -> jax.Array:
        fields = [jnp.where(jnp.isfinite(x), x, 0.0).ravel() for x in map(self._field, PROBE_FIELDS)]
        return jnp.concatenate([*fields, action, qvel])

    def split(self, obs):
        """{field name: values, "action": ..., "qvel": ...} of an observation (any leading axes)."""
        out, i = {}, 0
        sizes = (*self._sizes, self.action_size, self.nv)
        for name, size in zip((*PROBE_FIELDS, "action", "qvel"), sizes, strict=True):
            out[name] = obs[..., i : i + size]
            i += size
        return out

    def reset(self, key: jax.Array) -> ProbeState:
        qvel = jax.random.normal(key, (self.nv,))
        obs = self._obs(jnp.zeros(self.action_size), qvel)
        zero = jnp.zeros(())
        return ProbeState(obs, zero, zero, ProbeData(qvel), jnp.zeros((), jnp.int32))

    def step(self, state: ProbeState, action: jax.Array) -> ProbeState:
        t = state.t + 1
        obs = self._obs(action, state.pipeline_state.qvel)
        done = (t >= self.terminate_after) if self.terminate_after > 0 else jnp.zeros((), bool)
        return ProbeState(obs, 0.01 * jnp.sum(obs), done.astype(jnp.float32), state.pipeline_state, t)
