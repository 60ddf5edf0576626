"""Registry envs: sizes, jit, NaN-free steps, action scaling to the ctrlrange, error messages, import path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import mjx_tecrl.envs
import mujoco
import numpy as np
import pytest
from mjx_tecrl.envs import registry
from mjx_tecrl.envs.registry import UnknownEnvError

from mjx_tecrl.config import ConfigError, make_config, validate

pytestmark = pytest.mark.usefixtures("fast_compile")

REPO = Path(__file__).resolve().parents[1]
ACTIONS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0], np.float32)  # 2.0 is outside [-1, 1]: clipped


def expected_ctrl(env, actions: np.ndarray) -> np.ndarray:
    """The actuator controls that agent actions in [-1, 1] should map to (linearly onto the ctrlrange)."""
    sys_ = env.unwrapped.sys
    ctrl = np.asarray(sys_.actuator_ctrlrange, np.float64)
    limited = np.asarray(sys_.actuator_ctrllimited, bool)
    low = np.where(limited, ctrl[:, 0], -1.0)
    high = np.where(limited, ctrl[:, 1], 1.0)
    a = np.clip(actions, -1.0, 1.0)
    return low + (a + 1.0) / 2.0 * (high - low)


def reset_and_step(env, actions: np.ndarray):
    """Reset len(actions) copies of ONE initial state (same key) and step each with its own action."""
    key = jax.random.PRNGKey(0)
    keys = jnp.broadcast_to(key, (actions.shape[0],) + key.shape)

    @jax.jit  # one program: brax's reset runs a forward pass too, so compiling once saves time
    def reset_and_step_jit(keys, actions):
        states = jax.vmap(env.reset)(keys)
        return states, jax.vmap(env.step)(states, actions)

    return reset_and_step_jit(keys, jnp.asarray(actions))


def check_reset_and_step(env, states, nxt, obs_size, action_size):
    assert env.observation_size == obs_size and env.action_size == action_size
    n = states.obs.shape[0]
    assert states.obs.shape == (n, obs_size) and nxt.obs.shape == (n, obs_size)
    assert nxt.reward.shape == (n,) and nxt.done.shape == (n,)
    for x in (states.obs, nxt.obs, nxt.reward, nxt.done):
        assert np.isfinite(np.asarray(x)).all()
    assert not np.array_equal(np.asarray(states.obs), np.asarray(nxt.obs))  # the step moved something


@pytest.fixture(scope="module")
def pendulum():
    env = registry.make("inverted_pendulum")
    actions = ACTIONS[:, None]  # [6, 1]
    states, nxt = reset_and_step(env, actions)
    return env, actions, states, nxt


def test_inverted_pendulum_resets_and_steps_under_jit(pendulum):
    env, _, states, nxt = pendulum
    check_reset_and_step(env, states, nxt, obs_size=4, action_size=1)
    np.testing.assert_array_equal(np.asarray(nxt.reward), 1.0)
    np.testing.assert_array_equal(np.asarray(nxt.done), 0.0)  # one step from upright does not fall


def test_inverted_pendulum_actions_map_to_ctrlrange(pendulum):
    env, actions, _, nxt = pendulum
    np.testing.assert_array_equal(np.asarray(env.unwrapped.sys.actuator_ctrlrange), [[-3.0, 3.0]])
    # -1 -> -3, -0.5 -> -1.5, 0 -> 0, 0.5 -> 1.5, 1 -> 3, 2 (clipped to 1) -> 3; never beyond the range
    ctrl = np.asarray(nxt.pipeline_state.ctrl)
    np.testing.assert_allclose(ctrl[:, 0], [-3.0, -1.5, 0.0, 1.5, 3.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(ctrl, expected_ctrl(env, actions), atol=1e-6)
    # The dynamics see it: from the same state, half force differs from full force; 2.0 acts as 1.0.
    qvel = np.asarray(nxt.obs[:, 2])  # slider velocity
    assert qvel[3] != qvel[4] and qvel[1] != qvel[0]
    assert qvel[4] == qvel[5]
    assert qvel[0] < qvel[1] < qvel[2] < qvel[3] < qvel[4]  # monotone in the action


@pytest.mark.slow
@pytest.mark.parametrize("name", registry.list_envs())
def test_every_registered_env_resets_and_steps(name):
    env = registry.make(name)
    brax_env = env.unwrapped
    a = env.action_size
    actions = np.stack([np.full(a, -1.0), np.zeros(a), np.full(a, 1.0), np.full(a, 2.0)]).astype(np.float32)
    states, nxt = reset_and_step(env, actions)
    # (brax's own observation_size runs an eager reset; the jitted reset's obs is the ground truth)
    check_reset_and_step(env, states, nxt, int(states.obs.shape[-1]), int(brax_env.action_size))
    ctrl = getattr(nxt.pipeline_state, "ctrl", None)
    if ctrl is not None:  # the MJX pipeline keeps the applied controls (swimmer's generalized one does not)
        np.testing.assert_allclose(np.asarray(ctrl), expected_ctrl(env, actions), rtol=1e-5, atol=1e-6)


def test_unknown_env_name_lists_the_known_names():
    with pytest.raises(UnknownEnvError) as info:
        registry.spec("no_such_env")
    message = str(info.value)
    assert "no_such_env" in message
    for name in registry.bare_names():
        assert name in message
    assert isinstance(info.value, KeyError)  # still a KeyError for callers that catch that
    with pytest.raises(UnknownEnvError):
        registry.make("brax:no_such_env")


def test_registry_names():
    bare = registry.bare_names()
    assert "inverted_pendulum" in bare and len(bare) == len(set(bare))
    assert all(":" not in n for n in bare)
    # the tasks other tests registered in this process (register, module:factory) aside
    assert set(registry.list_envs()) - set(registry.user_names()) == set(bare) | {f"brax:{n}" for n in bare}
    # Bare names are the Gymnasium v5 tasks; brax's stay reachable, with the same presets.
    for name in bare:
        gym_spec, brax_spec = registry.spec(name), registry.spec(f"brax:{name}")
        assert gym_spec.kind == "gymnasium" and "-v5" in gym_spec.source, name
        assert brax_spec.kind == "brax" and brax_spec.source.startswith("brax"), name
        limit = {"reacher": 50, "pusher": 100}.get(name)  # Gymnasium's time limits that are not 1000 steps
        for preset in ("tuned", "paper"):
            gym_preset, brax_preset = dict(getattr(gym_spec, preset)), getattr(brax_spec, preset)
            assert gym_preset.pop("episode_length", None) == limit, name
            assert gym_preset == brax_preset, name


def test_physics_choice_is_checked_and_sets_the_solver():
    with pytest.raises(ValueError, match="'exact'.*faithful, fast"):
        registry.make("hopper", physics="exact")
    with pytest.raises(ValueError, match="Gymnasium tasks only"):
        registry.make("brax:hopper", physics="fast")
    with pytest.raises(ConfigError, match="--physics 'exact'"):
        validate(make_config(physics="exact"))
    with pytest.raises(ConfigError, match="--physics 'fast'.*brax:hopper"):
        make_config(env="brax:hopper", physics="fast")
    from mjx_tecrl.envs.gym_base import load_model

    faithful, fast = load_model("humanoid.xml", "faithful"), load_model("humanoid.xml", "fast")
    assert faithful.opt.solver == fast.opt.solver == mujoco.mjtSolver.mjSOL_NEWTON  # the file asks for PGS
    assert faithful.opt.iterations == 50 and (fast.opt.iterations, fast.opt.ls_iterations) == (1, 4)
    assert faithful.opt.timestep == fast.opt.timestep and faithful.opt.integrator == fast.opt.integrator


def test_mjx_tecrl_envs_is_this_repository_envs_folder():
    assert Path(mjx_tecrl.envs.__file__).resolve() == REPO / "envs" / "__init__.py"
    assert Path(registry.__file__).resolve() == REPO / "envs" / "registry.py"
    assert registry.ScaledActionEnv.__module__ == "mjx_tecrl.envs.wrappers"
    assert mjx_tecrl.envs.UnknownEnvError is UnknownEnvError
    # From another directory (so no ./envs on sys.path), the installed package still points here.
    code = "import mjx_tecrl.envs, mjx_tecrl.envs.wrappers as w; print(mjx_tecrl.envs.__file__); print(w.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, check=True)
    init_file, wrappers_file = out.stdout.split()
    assert Path(init_file).resolve() == REPO / "envs" / "__init__.py"
    assert Path(wrappers_file).resolve() == REPO / "envs" / "wrappers.py"


def test_gymnasium_task_reads_a_swapped_sys_at_trace_time(pendulum):
    """The robustness wrappers' contract: setting `env.unwrapped.sys` inside a vmapped, traced function gives each
    environment its own model. Here a heavier pole (per-env mass scale) changes the step; scale 1 changes nothing."""
    env, _, states, _ = pendulum
    base = env.unwrapped
    sys0 = base.sys
    one = jax.tree.map(lambda x: x[0], states)
    action = jnp.array([0.7])

    def step_with_mass_scale(scale):
        base.sys = sys0.replace(body_mass=sys0.body_mass * scale)
        try:
            return env.step(base.reset_to(one.pipeline_state.qpos, one.pipeline_state.qvel), action).obs
        finally:
            base.sys = sys0

    obs = np.asarray(jax.jit(jax.vmap(step_with_mass_scale))(jnp.array([1.0, 3.0])))
    plain = np.asarray(jax.jit(lambda s: env.step(s, action).obs)(one))
    np.testing.assert_allclose(obs[0], plain, rtol=1e-6, atol=1e-7)
    assert np.abs(obs[1] - obs[0]).max() > 1e-4  # the heavier pole moved differently
    assert base.sys is sys0
