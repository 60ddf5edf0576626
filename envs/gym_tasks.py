"""The Gymnasium MuJoCo v5 tasks in MJX, with v5's default arguments (observation, reward, termination, reset).

Each class mirrors `gymnasium/envs/mujoco/<task>_v5.py`: same model file, frame skip, observation layout,
reward terms and weights, healthy ranges and reset noise. The 1000-step time limit is the pipeline's
`episode_length` (a truncation), never `done`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from mjx_tecrl.envs.gym_base import GymnasiumTask, control_cost, in_open_range


def _forward_velocity(task: GymnasiumTask, before: Any, after: Any) -> jax.Array:
    return (after.qpos[0] - before.qpos[0]) / task.control_dt()


class Hopper(GymnasiumTask):
    xml_file, frame_skip, observation_dim = "hopper.xml", 4, 11
    metric_names = ("reward_forward", "reward_ctrl", "reward_survive", "x_velocity")

    def initial_qpos_qvel(self, key):
        return self.uniform_noise(key, 5e-3)

    def observation(self, data):
        return jnp.concatenate([data.qpos[1:], jnp.clip(data.qvel, -10.0, 10.0)])

    def is_healthy(self, data):
        z, angle = data.qpos[1], data.qpos[2]
        state = jnp.concatenate([data.qpos, data.qvel])[2:]
        healthy_state = jnp.all(in_open_range(state, -100.0, 100.0))
        return healthy_state & in_open_range(z, 0.7, jnp.inf) & in_open_range(angle, -0.2, 0.2)

    def reward_and_termination(self, before, after, ctrl):
        healthy = self.is_healthy(after)
        x_velocity = _forward_velocity(self, before, after)
        survive = healthy.astype(jnp.float32)  # healthy_reward 1
        ctrl_cost = control_cost(1e-3, ctrl)
        reward = x_velocity + survive - ctrl_cost
        metrics = dict(reward_forward=x_velocity, reward_ctrl=-ctrl_cost, reward_survive=survive, x_velocity=x_velocity)
        return reward, ~healthy, metrics


class Walker2d(Hopper):
    xml_file, frame_skip, observation_dim = "walker2d_v5.xml", 4, 17

    def is_healthy(self, data):
        return in_open_range(data.qpos[1], 0.8, 2.0) & in_open_range(data.qpos[2], -1.0, 1.0)


class HalfCheetah(GymnasiumTask):
    xml_file, frame_skip, observation_dim = "half_cheetah.xml", 5, 17
    metric_names = ("reward_forward", "reward_ctrl", "x_velocity")

    def initial_qpos_qvel(self, key):
        return self.uniform_normal_noise(key, 0.1)

    def observation(self, data):
        return jnp.concatenate([data.qpos[1:], data.qvel])

    def reward_and_termination(self, before, after, ctrl):
        x_velocity = _forward_velocity(self, before, after)
        ctrl_cost = control_cost(0.1, ctrl)
        metrics = dict(reward_forward=x_velocity, reward_ctrl=-ctrl_cost, x_velocity=x_velocity)
        return x_velocity - ctrl_cost, jnp.array(False), metrics


class Swimmer(GymnasiumTask):
    xml_file, frame_skip, observation_dim = "swimmer.xml", 4, 8
    metric_names = ("reward_forward", "reward_ctrl", "x_velocity")

    def initial_qpos_qvel(self, key):
        return self.uniform_noise(key, 0.1)

    def observation(self, data):
        return jnp.concatenate([data.qpos[2:], data.qvel])

    def reward_and_termination(self, before, after, ctrl):
        x_velocity = _forward_velocity(self, before, after)
        ctrl_cost = control_cost(1e-4, ctrl)
        metrics = dict(reward_forward=x_velocity, reward_ctrl=-ctrl_cost, x_velocity=x_velocity)
        return x_velocity - ctrl_cost, jnp.array(False), metrics


class Ant(GymnasiumTask):
    xml_file, frame_skip, observation_dim = "ant.xml", 5, 105
    post_constraint = True
    metric_names = ("reward_forward", "reward_ctrl", "reward_contact", "reward_survive", "x_velocity")
    main_body = 1  # the torso

    def initial_qpos_qvel(self, key):
        return self.uniform_normal_noise(key, 0.1)

    def observation(self, data):
        contact_forces = jnp.clip(data.cfrc_ext, -1.0, 1.0)[1:]  # [nbody - 1, 6]
        return jnp.concatenate([data.qpos[2:], data.qvel, contact_forces.ravel()])

    def reward_and_termination(self, before, after, ctrl):
        x_velocity = (after.xpos[self.main_body, 0] - before.xpos[self.main_body, 0]) / self.control_dt()
        state = jnp.concatenate([after.qpos, after.qvel])
        healthy = jnp.all(jnp.isfinite(state)) & (0.2 <= after.qpos[2]) & (after.qpos[2] <= 1.0)
        survive = healthy.astype(jnp.float32)
        ctrl_cost = control_cost(0.5, ctrl)
        contact_cost = 5e-4 * jnp.sum(jnp.square(jnp.clip(after.cfrc_ext, -1.0, 1.0)))
        reward = x_velocity + survive - ctrl_cost - contact_cost
        metrics = dict(
            reward_forward=x_velocity,
            reward_ctrl=-ctrl_cost,
            reward_contact=-contact_cost,
            reward_survive=survive,
            x_velocity=x_velocity,
        )
        return reward, ~healthy, metrics


class Humanoid(GymnasiumTask):
    xml_file, frame_skip, observation_dim = "humanoid.xml", 5, 348
    post_constraint = True
    metric_names = ("reward_forward", "reward_ctrl", "reward_contact", "reward_survive", "x_velocity")

    def initial_qpos_qvel(self, key):
        return self.uniform_noise(key, 1e-2)

    def observation(self, data):
        return jnp.concatenate(
            [
                data.qpos[2:],
                data.qvel,
                data.cinert[1:].ravel(),
                data.cvel[1:].ravel(),
                data.qfrc_actuator[6:],
                data.cfrc_ext[1:].ravel(),
            ]
        )

    def mass_center_x(self, data) -> jax.Array:
        mass = self.sys.body_mass
        return jnp.sum(mass * data.xipos[:, 0]) / jnp.sum(mass)

    def reward_and_termination(self, before, after, ctrl):
        x_velocity = (self.mass_center_x(after) - self.mass_center_x(before)) / self.control_dt()
        healthy = in_open_range(after.qpos[2], 1.0, 2.0)
        survive = 5.0 * healthy.astype(jnp.float32)
        ctrl_cost = control_cost(0.1, ctrl)
        contact_cost = jnp.minimum(5e-7 * jnp.sum(jnp.square(after.cfrc_ext)), 10.0)
        reward = 1.25 * x_velocity + survive - ctrl_cost - contact_cost
        metrics = dict(
            reward_forward=1.25 * x_velocity,
            reward_ctrl=-ctrl_cost,
            reward_contact=-contact_cost,
            reward_survive=survive,
            x_velocity=x_velocity,
        )
        return reward, ~healthy, metrics


class HumanoidStandup(Humanoid):
    xml_file, frame_skip, observation_dim = "humanoidstandup.xml", 5, 348
    metric_names = ("reward_linup", "reward_quadctrl", "reward_impact")

    def reward_and_termination(self, before, after, ctrl):
        uph_cost = after.qpos[2] / self.sys.opt.timestep  # v5 divides by the physics timestep, not dt
        quad_ctrl_cost = control_cost(0.1, ctrl)
        quad_impact_cost = jnp.minimum(0.5e-6 * jnp.sum(jnp.square(after.cfrc_ext)), 10.0)
        reward = uph_cost - quad_ctrl_cost - quad_impact_cost + 1.0
        metrics = dict(reward_linup=uph_cost, reward_quadctrl=-quad_ctrl_cost, reward_impact=-quad_impact_cost)
        return reward, jnp.array(False), metrics


class InvertedPendulum(GymnasiumTask):
    xml_file, frame_skip, observation_dim = "inverted_pendulum.xml", 2, 4
    metric_names = ("reward_survive",)

    def initial_qpos_qvel(self, key):
        return self.uniform_noise(key, 0.01)

    def observation(self, data):
        return jnp.concatenate([data.qpos, data.qvel])

    def reward_and_termination(self, before, after, ctrl):
        obs = self.observation(after)
        terminated = ~jnp.all(jnp.isfinite(obs)) | (jnp.abs(obs[1]) > 0.2)
        survive = (~terminated).astype(jnp.float32)
        return survive, terminated, dict(reward_survive=survive)


class InvertedDoublePendulum(GymnasiumTask):
    xml_file, frame_skip, observation_dim = "inverted_double_pendulum.xml", 5, 9
    metric_names = ("reward_survive", "distance_penalty", "velocity_penalty")

    def initial_qpos_qvel(self, key):
        return self.uniform_normal_noise(key, 0.1)

    def observation(self, data):
        return jnp.concatenate(
            [
                data.qpos[:1],  # cart position
                jnp.sin(data.qpos[1:]),
                jnp.cos(data.qpos[1:]),
                jnp.clip(data.qvel, -10.0, 10.0),
                jnp.clip(data.qfrc_constraint, -10.0, 10.0)[:1],
            ]
        )

    def reward_and_termination(self, before, after, ctrl):
        x, y = after.site_xpos[0, 0], after.site_xpos[0, 2]  # the pole tip
        terminated = y <= 1.0
        v1, v2 = after.qvel[1], after.qvel[2]
        dist_penalty = 0.01 * x**2 + (y - 2.0) ** 2
        vel_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
        survive = 10.0 * (~terminated).astype(jnp.float32)
        metrics = dict(reward_survive=survive, distance_penalty=-dist_penalty, velocity_penalty=-vel_penalty)
        return survive - dist_penalty - vel_penalty, terminated, metrics


def _rejection_sample(key: jax.Array, draw, accept) -> jax.Array:
    """Draw until `accept(x)`, as Gymnasium's `while True` reset loops (a while_loop; vmaps)."""
    k0, k1 = jax.random.split(key)

    def body(carry):
        k, _ = carry
        k, sub = jax.random.split(k)
        return k, draw(sub)

    return jax.lax.while_loop(lambda c: ~accept(c[1]), body, (k0, draw(k1)))[1]


class Reacher(GymnasiumTask):
    xml_file, frame_skip, observation_dim = "reacher.xml", 2, 10
    metric_names = ("reward_dist", "reward_ctrl")

    def fingertip_minus_target(self, data) -> jax.Array:
        fingertip, target = self.body_id("fingertip"), self.body_id("target")
        return data.xpos[fingertip] - data.xpos[target]

    def initial_qpos_qvel(self, key):
        k_pos, k_goal, k_vel = jax.random.split(key, 3)
        nq, nv = self.mj_model.nq, self.mj_model.nv
        qpos = self.sys.qpos0 + jax.random.uniform(k_pos, (nq,), minval=-0.1, maxval=0.1)
        goal = _rejection_sample(
            k_goal,
            lambda k: jax.random.uniform(k, (2,), minval=-0.2, maxval=0.2),
            lambda g: jnp.linalg.norm(g) < 0.2,
        )
        qpos = qpos.at[-2:].set(goal)
        qvel = jax.random.uniform(k_vel, (nv,), minval=-0.005, maxval=0.005).at[-2:].set(0.0)
        return qpos, qvel

    def observation(self, data):
        theta = data.qpos[:2]
        return jnp.concatenate(
            [jnp.cos(theta), jnp.sin(theta), data.qpos[2:], data.qvel[:2], self.fingertip_minus_target(data)[:2]]
        )

    def reward_and_termination(self, before, after, ctrl):
        reward_dist = -jnp.linalg.norm(self.fingertip_minus_target(after))
        reward_ctrl = -jnp.sum(jnp.square(ctrl))
        return reward_dist + reward_ctrl, jnp.array(False), dict(reward_dist=reward_dist, reward_ctrl=reward_ctrl)


class Pusher(GymnasiumTask):
    xml_file, frame_skip, observation_dim = "pusher_v5.xml", 5, 23
    metric_names = ("reward_dist", "reward_ctrl", "reward_near")

    def initial_qpos_qvel(self, key):
        k_cyl, k_vel = jax.random.split(key)
        nv = self.mj_model.nv
        low, high = jnp.array([-0.3, -0.2]), jnp.array([0.0, 0.2])
        cylinder = _rejection_sample(
            k_cyl,
            lambda k: jax.random.uniform(k, (2,), minval=low, maxval=high),
            lambda c: jnp.linalg.norm(c) > 0.17,  # the goal is at (0, 0)
        )
        qpos = self.sys.qpos0.at[-4:-2].set(cylinder).at[-2:].set(0.0)
        qvel = jax.random.uniform(k_vel, (nv,), minval=-0.005, maxval=0.005).at[-4:].set(0.0)
        return qpos, qvel

    def observation(self, data):
        tips_arm, obj, goal = (data.xpos[self.body_id(n)] for n in ("tips_arm", "object", "goal"))
        return jnp.concatenate([data.qpos[:7], data.qvel[:7], tips_arm, obj, goal])

    def reward_and_termination(self, before, after, ctrl):
        tips_arm, obj, goal = (after.xpos[self.body_id(n)] for n in ("tips_arm", "object", "goal"))
        reward_near = -0.5 * jnp.linalg.norm(obj - tips_arm)
        reward_dist = -jnp.linalg.norm(obj - goal)
        reward_ctrl = -0.1 * jnp.sum(jnp.square(ctrl))
        metrics = dict(reward_dist=reward_dist, reward_ctrl=reward_ctrl, reward_near=reward_near)
        return reward_dist + reward_ctrl + reward_near, jnp.array(False), metrics


# Registry name -> (task class, Gymnasium id it mirrors).
TASKS: dict[str, tuple[type[GymnasiumTask], str]] = {
    "inverted_pendulum": (InvertedPendulum, "InvertedPendulum-v5"),
    "inverted_double_pendulum": (InvertedDoublePendulum, "InvertedDoublePendulum-v5"),
    "reacher": (Reacher, "Reacher-v5"),
    "pusher": (Pusher, "Pusher-v5"),
    "hopper": (Hopper, "Hopper-v5"),
    "halfcheetah": (HalfCheetah, "HalfCheetah-v5"),
    "ant": (Ant, "Ant-v5"),
    "swimmer": (Swimmer, "Swimmer-v5"),
    "walker2d": (Walker2d, "Walker2d-v5"),
    "humanoid": (Humanoid, "Humanoid-v5"),
    "humanoidstandup": (HumanoidStandup, "HumanoidStandup-v5"),
}
