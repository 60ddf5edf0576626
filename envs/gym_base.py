"""Gymnasium MuJoCo v5 tasks in MJX: model loading, physics settings, and the shared reset/step.

A task loads the XML that the installed `gymnasium` package ships and changes at load time only what MJX
needs (PGS -> Newton) or what `physics="fast"` asks for. `reset(key)` and `step(state, ctrl)` act on ONE
environment; `ctrl` is in actuator units (the registry's `ScaledActionEnv` maps [-1, 1] to the ctrlrange).

`sys` (an `mjx.Model`) is read at trace time by `reset`, `reset_to` and `step`: a wrapper may set
`env.unwrapped.sys` to a perturbed, per-environment model inside a vmapped function.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import threading
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import mujoco
from flax import struct

PHYSICS = ("faithful", "fast")
# `fast`: one Newton iteration and 4 line-search steps per physics step, as brax's MJX ant and humanoid use.
FAST_ITERATIONS, FAST_LS_ITERATIONS = 1, 4


@struct.dataclass
class State:
    """One environment's state; the fields of brax's `State`. `done` is 1.0 on termination only."""

    pipeline_state: Any  # mjx.Data
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    metrics: dict[str, jax.Array] = struct.field(default_factory=dict)
    info: dict[str, Any] = struct.field(default_factory=dict)


def mjx_module():
    """`mujoco.mjx`, imported without its 'Failed to import warp' print (MJX's JAX backend needs no Warp)."""
    with contextlib.redirect_stdout(io.StringIO()):
        from mujoco import mjx
    return mjx


def gymnasium_asset(xml_file: str) -> str:
    """Path of a model file shipped in the installed gymnasium package (found without importing it)."""
    found = importlib.util.find_spec("gymnasium")
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError("the Gymnasium tasks load gymnasium's model files: pip install 'gymnasium>=1.0'")
    path = os.path.join(list(found.submodule_search_locations)[0], "envs", "mujoco", "assets", xml_file)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing from the installed gymnasium")
    return path


def _plane_capsule_axis_frame(original):
    """MJX's plane-capsule collider with MuJoCo C's contact frame: first tangent along the capsule axis projected
    onto the plane, also for steep capsules (MJX 3.17 switches to a fixed axis when that projection is shorter than
    0.5). With pyramidal friction cones the frame orients the pyramid, so it changes the dynamics (Ant's legs)."""

    def collide(m, d, key, geom):
        dist, pos, frame = original(m, d, key, geom)  # frame [2 * pairs, 3, 3], two contacts per pair in a row
        n = jnp.repeat(d.geom_xmat[geom[:, 0]][:, :, 2], 2, axis=0)  # [2 * pairs, 3] plane normals
        axis = jnp.repeat(d.geom_xmat[geom[:, 1]][:, :, 2], 2, axis=0)  # capsule axes
        projected = axis - n * jnp.sum(n * axis, axis=-1, keepdims=True)
        norm = jnp.linalg.norm(projected, axis=-1, keepdims=True)
        b = jnp.where(norm > 1e-6, projected / jnp.maximum(norm, 1e-6), frame[:, 1])  # vertical capsule: MJX's
        return dist, pos, jnp.stack([n, b, jnp.cross(n, b)], axis=1)

    collide.ncon = original.ncon
    return collide


# MJX's Newton line search runs as a scan of `ls_iterations` steps (50 in the v5 model files) that a `lax.cond`
# turns into no-ops once converged (mjx/_src/solver.py, `_while_loop_scan`: a scan so that it differentiates in
# reverse). Under vmap that cond becomes a select, so every env pays all 50 steps, where the line search converges
# in a few. While tracing a Gymnasium task the loop is a `while_loop` with the same cap instead: it stops once every
# env of the batch has converged, with the same numbers (docs/performance.md, "The line search"). No physics
# here is differentiated. On by default where measured (CPUs); None: on when the default backend is a CPU.
EARLY_EXIT_LINESEARCH: bool | None = None


def early_exit_linesearch_on() -> bool:
    """Whether tracing uses the early-exit line search (EARLY_EXIT_LINESEARCH; None: on CPUs)."""
    if EARLY_EXIT_LINESEARCH is None:
        return jax.default_backend() == "cpu"
    return EARLY_EXIT_LINESEARCH


def _capped_while_loop(cond_fun, body_fun, init_val, max_iter):
    """`_while_loop_scan`'s contract, as a while_loop: body while cond holds, at most `max_iter` times."""

    def cond(carry):
        i, val = carry
        return (i < max_iter) & cond_fun(val)

    def body(carry):
        i, val = carry
        return i + 1, body_fun(val)

    return jax.lax.while_loop(cond, body, (jnp.int32(0), init_val))[1]


# How deep this thread is in tracing a Gymnasium task's physics. The changes to MJX above are installed once, as
# dispatchers in MJX's tables that act only on a thread inside `gymnasium_physics`: run.py traces the training chunk
# and the evaluation on two threads at once, and a module attribute swapped for the length of one trace would leak
# into the other (one program traced half with MJX's contact frame, and the swap left in place after both).
_tracing = threading.local()
_install_lock = threading.Lock()


def tracing_gymnasium_physics() -> bool:
    """True on a thread that is tracing a Gymnasium task's physics."""
    return getattr(_tracing, "depth", 0) > 0


def _install_dispatchers() -> None:
    """Put the two dispatchers into MJX, once per process: C's contact frame for plane-capsule pairs and the
    early-exit line search, each only while this thread traces a Gymnasium task; MJX's own otherwise."""
    from mujoco.mjx._src import collision_driver, solver
    from mujoco.mjx._src.types import GeomType

    with _install_lock:
        table, key = collision_driver._COLLISION_FUNC, (GeomType.PLANE, GeomType.CAPSULE)
        mjx_collide = table[key]
        if not getattr(mjx_collide, "gymnasium_dispatch", False):
            c_collide = _plane_capsule_axis_frame(mjx_collide)

            def collide(m, d, key, geom):
                return (c_collide if tracing_gymnasium_physics() else mjx_collide)(m, d, key, geom)

            collide.ncon = mjx_collide.ncon
            collide.gymnasium_dispatch = True
            table[key] = collide

        mjx_loop = solver._while_loop_scan
        if not getattr(mjx_loop, "gymnasium_dispatch", False):

            def loop(cond_fun, body_fun, init_val, max_iter):
                early = tracing_gymnasium_physics() and early_exit_linesearch_on()
                return (_capped_while_loop if early else mjx_loop)(cond_fun, body_fun, init_val, max_iter)

            loop.gymnasium_dispatch = True
            solver._while_loop_scan = loop


@contextlib.contextmanager
def gymnasium_physics():
    """Trace MJX as a Gymnasium task does, on this thread only: MuJoCo C's contact frames (above) and the early-exit
    line search. brax's MJX tasks, and other threads, keep MJX's own."""
    _install_dispatchers()
    _tracing.depth = getattr(_tracing, "depth", 0) + 1
    try:
        yield
    finally:
        _tracing.depth -= 1


@contextlib.contextmanager
def _mujoco_warnings_to(sink: list[str]):
    """Route MuJoCo's C warnings to `sink` while loading: by default MuJoCo prints them and appends them to
    MUJOCO_LOG.TXT in the working directory, a file nobody asked for (half_cheetah.xml's settotalmass is
    deprecated in MuJoCo 4 but still applied)."""
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(sink.append)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def load_model(xml_file: str, physics: str) -> mujoco.MjModel:
    """The gymnasium model with MJX's changes: PGS (unsupported) -> Newton; `fast`: fewer solver iterations."""
    if physics not in PHYSICS:
        raise ValueError(f"physics {physics!r} is unknown; allowed: {', '.join(PHYSICS)}")
    with _mujoco_warnings_to([]):
        model = mujoco.MjModel.from_xml_path(gymnasium_asset(xml_file))
    if model.opt.solver == mujoco.mjtSolver.mjSOL_PGS:
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
    if physics == "fast":
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
        model.opt.iterations = FAST_ITERATIONS
        model.opt.ls_iterations = FAST_LS_ITERATIONS
    return model


class GymnasiumTask:
    """Base of the v5 tasks: subclasses set the file and frame skip and define obs, reward and reset noise.

    Warning: after `mjx.step` the kinematic fields (xpos, xipos, cinert, cvel, site_xpos, ...) belong to the
    last evaluation inside the step, not to the new qpos; Gymnasium reads them the same way, so the tasks do.
    """

    xml_file: ClassVar[str]
    frame_skip: ClassVar[int]
    observation_dim: ClassVar[int]  # Gymnasium's observation size (the tests check the traced one against it)
    post_constraint: ClassVar[bool] = False  # the task reads cfrc_ext (MuJoCo's mj_rnePostConstraint)
    metric_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, physics: str = "faithful"):
        self.physics = physics
        self.mj_model = load_model(self.xml_file, physics)
        self.sys = mjx_module().put_model(self.mj_model)
        self.action_size: int = int(self.mj_model.nu)
        self.dt: float = float(self.mj_model.opt.timestep * self.frame_skip)
        self.observation_size: int = self.observation_dim

    @property
    def unwrapped(self) -> GymnasiumTask:
        return self

    def body_id(self, name: str) -> int:
        return int(mujoco.mj_name2id(self.mj_model, mujoco.mjtObj.mjOBJ_BODY, name))

    def control_dt(self) -> jax.Array:
        """The control timestep from the (possibly swapped) `sys`."""
        return self.sys.opt.timestep * self.frame_skip

    # --- the interface -------------------------------------------------------------------------------
    def reset(self, key: jax.Array) -> State:
        qpos, qvel = self.initial_qpos_qvel(key)
        return self.reset_to(qpos, qvel)

    def reset_to(self, qpos: jax.Array, qvel: jax.Array) -> State:
        """The state at (qpos, qvel) after a forward pass, as Gymnasium's `set_state`."""
        mjx = mjx_module()
        data = mjx.make_data(self.sys)
        data = data.replace(qpos=jnp.asarray(qpos, data.qpos.dtype), qvel=jnp.asarray(qvel, data.qvel.dtype))
        with gymnasium_physics():
            data = mjx.forward(self.sys, data)
        zero = jnp.zeros((), jnp.float32)
        return State(
            pipeline_state=data,
            obs=self.observation(data),
            reward=zero,
            done=zero,
            metrics={k: zero for k in self.metric_names},
        )

    def step(self, state: State, ctrl: jax.Array) -> State:
        """`frame_skip` MJX steps with `ctrl` held, then the task's observation, reward and termination."""
        mjx, sys = mjx_module(), self.sys
        before = state.pipeline_state
        data = before.replace(ctrl=jnp.asarray(ctrl, before.ctrl.dtype))
        with gymnasium_physics():  # the loop body is traced here, once
            data = jax.lax.fori_loop(0, self.frame_skip, lambda _, d: mjx.step(sys, d), data)
        if self.post_constraint:
            data = mjx.rne_postconstraint(sys, data)
        reward, terminated, metrics = self.reward_and_termination(before, data, data.ctrl)
        return state.replace(
            pipeline_state=data,
            obs=self.observation(data),
            reward=jnp.asarray(reward, jnp.float32),
            done=jnp.asarray(terminated, jnp.float32),
            metrics={k: jnp.asarray(metrics[k], jnp.float32) for k in self.metric_names},
        )

    # --- per task -----------------------------------------------------------------------------------
    def initial_qpos_qvel(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def observation(self, data: Any) -> jax.Array:
        raise NotImplementedError

    def reward_and_termination(self, before: Any, after: Any, ctrl: jax.Array) -> tuple[Any, Any, dict]:
        raise NotImplementedError

    # --- helpers for the reset noise of the v5 tasks --------------------------------------------------
    def uniform_noise(self, key: jax.Array, scale: float) -> tuple[jax.Array, jax.Array]:
        """qpos0 + U(-scale, scale) and 0 + U(-scale, scale): most v5 tasks' reset."""
        k_pos, k_vel = jax.random.split(key)
        qpos = self.sys.qpos0 + jax.random.uniform(k_pos, (self.mj_model.nq,), minval=-scale, maxval=scale)
        qvel = jax.random.uniform(k_vel, (self.mj_model.nv,), minval=-scale, maxval=scale)
        return qpos, qvel

    def uniform_normal_noise(self, key: jax.Array, scale: float) -> tuple[jax.Array, jax.Array]:
        """qpos0 + U(-scale, scale) and 0 + scale * N(0, 1): HalfCheetah, Ant and the double pendulum."""
        k_pos, k_vel = jax.random.split(key)
        qpos = self.sys.qpos0 + jax.random.uniform(k_pos, (self.mj_model.nq,), minval=-scale, maxval=scale)
        qvel = scale * jax.random.normal(k_vel, (self.mj_model.nv,))
        return qpos, qvel


def in_open_range(x: jax.Array, low: float, high: float) -> jax.Array:
    return (low < x) & (x < high)


def control_cost(weight: float, ctrl: jax.Array) -> jax.Array:
    return weight * jnp.sum(jnp.square(ctrl))


def as_float(x: Any) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


__all__ = ["PHYSICS", "GymnasiumTask", "State", "gymnasium_asset", "load_model"]
