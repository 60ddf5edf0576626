"""Your own task: a point mass on a rail that must hold x = 1, in MJX, with brax's env contract (docs/envs.md).

Train it from the repository's root: `python train.py --env examples.point_mass:make_env --total-steps 20000`.
"""

import jax
import jax.numpy as jnp
import mujoco
from flax import struct
from mujoco import mjx

XML = """<mujoco><option timestep="0.02"/><worldbody><body><joint name="x" type="slide" axis="1 0 0" damping="1"/>
<geom type="sphere" size="0.1" mass="1"/></body></worldbody>
<actuator><motor joint="x" ctrlrange="-2 2" ctrllimited="true"/></actuator></mujoco>"""


@struct.dataclass
class State:
    pipeline_state: mjx.Data  # brax's name: divergence checks, pushes and videos read qpos / qvel here
    obs: jax.Array
    reward: jax.Array
    done: jax.Array  # 1.0 on a termination (this task never terminates; the time limit truncates)


class PointMass:
    action_size = 1  # the agent's actions in [-1, 1] are mapped to sys.actuator_ctrlrange, [-2, 2]

    def __init__(self, frame_skip: int = 5):
        self.mj_model = mujoco.MjModel.from_xml_string(XML)  # the host model: videos
        self.sys = mjx.put_model(self.mj_model)  # the MJX model: robustness studies perturb it
        self.frame_skip, self.dt = frame_skip, float(self.mj_model.opt.timestep) * frame_skip

    def reset(self, key: jax.Array) -> State:
        data = mjx.make_data(self.sys).replace(qpos=jax.random.uniform(key, (1,), minval=-1.0, maxval=1.0))
        data = mjx.forward(self.sys, data)
        return State(data, self._obs(data), jnp.zeros(()), jnp.zeros(()))

    def step(self, state: State, action: jax.Array) -> State:
        data = state.pipeline_state.replace(ctrl=action)
        data = jax.lax.fori_loop(0, self.frame_skip, lambda _, d: mjx.step(self.sys, d), data)
        reward = -jnp.abs(data.qpos[0] - 1.0) - 0.01 * jnp.sum(action**2)
        return State(data, self._obs(data), reward, jnp.zeros(()))

    def _obs(self, data: mjx.Data) -> jax.Array:
        return jnp.concatenate([data.qpos - 1.0, data.qvel])


def make_env() -> PointMass:
    return PointMass()
