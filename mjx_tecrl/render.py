"""Videos of a trained policy: `python -m mjx_tecrl.render RUN_DIR --out policy.mp4 --episodes 2`.

The deterministic policy (tanh of the actor mean) acts in the run's own MJX env; the positions of each step
are then drawn by MuJoCo's renderer offscreen on the host. The OpenGL backend is the user's `MUJOCO_GL`
when set; otherwise the first of EGL (a GPU's driver, or Mesa's software EGL) and OSMesa that can open a
context here, and `MUJOCO_GL` is set to it. Writes an mp4 (imageio-ffmpeg) and a PNG strip of still frames.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from mjx_tecrl import commands
from mjx_tecrl.config import ConfigError

BACKENDS = ("egl", "osmesa")
INSTALL_HINT = (
    "install an offscreen OpenGL: apt-get install libegl1 libgl1-mesa-dri (EGL; on an NVIDIA GPU the driver's "
    "libEGL) or apt-get install libosmesa6 (OSMesa), or set MUJOCO_GL to a working backend"
)


class RendererMissing(RuntimeError):
    """No offscreen OpenGL context can be opened; the message says what to install."""


@contextlib.contextmanager
def _exec_child():
    """JAX warns at every fork; the children here (the probe, ffmpeg) exec a new program at once, which is safe."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        yield


@functools.cache
def _probe(backend: str) -> bool:
    """Whether `backend` opens a GL context, tried in a child process (a failed GL load can abort one)."""
    code = f"from mujoco.{backend} import GLContext\nc = GLContext(8, 8)\nc.make_current()\nc.free()"
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        with _exec_child():
            result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def select_backend() -> str:
    """The offscreen backend: MUJOCO_GL if the user set it, else the first of EGL, OSMesa that works here
    (written to MUJOCO_GL and PYOPENGL_PLATFORM, for mujoco and PyOpenGL imported after this)."""
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen:
        return chosen
    # PyOpenGL fixes its platform when first imported: if something already chose, only that one can work.
    platform = os.environ.get("PYOPENGL_PLATFORM", "").strip().lower()
    for backend in [platform] if platform in BACKENDS else BACKENDS:
        if _probe(backend):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    raise RendererMissing(f"no offscreen OpenGL context could be opened (tried {', '.join(BACKENDS)}); {INSTALL_HINT}")


def _gl_context_class(backend: str):
    """The GL context class of `backend`, imported directly so that it does not matter whether mujoco was
    imported (and read MUJOCO_GL) before the backend was chosen."""
    try:
        if backend == "egl":
            from mujoco.egl import GLContext
        elif backend == "osmesa":
            from mujoco.osmesa import GLContext
        else:  # glfw, glx, ...: mujoco's own choice from MUJOCO_GL
            from mujoco.gl_context import GLContext
    except Exception as e:  # ImportError, or PyOpenGL failing to load the library
        raise RendererMissing(f"MUJOCO_GL={backend}: cannot load it ({e}); {INSTALL_HINT}") from None
    return GLContext


def host_model(env: Any):
    """The host `mujoco.MjModel` of a registry env: `mj_model` on the unwrapped env, or `sys.mj_model`
    (brax's PipelineEnv keeps it there). Raises ConfigError when the env has none."""
    inner = getattr(env, "unwrapped", env)
    for owner in (inner, getattr(inner, "sys", None), env):
        model = getattr(owner, "mj_model", None)
        if model is not None:
            return model
    raise ConfigError(f"env {type(inner).__name__} exposes no host MjModel (mj_model or sys.mj_model) to render")


def _qpos(state: Any):
    """Joint positions of one env state (mjx Data `qpos`, or brax's `q`)."""
    for holder in (getattr(state, "pipeline_state", None), getattr(state, "data", None)):
        if holder is not None:
            q = getattr(holder, "qpos", None)
            return q if q is not None else holder.q
    raise ConfigError(f"env state {type(state).__name__} has no pipeline_state or data with positions")


def rollout(run, member: int, episodes: int, max_steps: int, seed: int) -> tuple[list[np.ndarray], list[float]]:
    """Per episode, the positions [1 + steps, nq] from reset until termination or `max_steps` steps, and the
    episode return. The episodes run vmapped in one jitted program; the host gets them back at once."""
    import jax
    import jax.numpy as jnp

    env, learner_fns = run.fns.env, run.fns.learner

    def episode(learner, key):
        def body(state, _):
            nxt = env.step(state, learner_fns.deterministic_action(learner, state.obs))
            return nxt, (_qpos(nxt), nxt.reward, nxt.done)

        first = env.reset(key)
        _, (qpos, reward, done) = jax.lax.scan(body, first, None, length=max_steps)
        return _qpos(first), qpos, reward, done  # [nq], [T, nq], [T], [T]

    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    learner = jax.tree.map(jnp.asarray, run.members[member].learner)
    q0, qpos, reward, done = jax.device_get(jax.jit(jax.vmap(episode, in_axes=(None, 0)))(learner, keys))
    positions, returns = [], []
    for i in range(episodes):
        ended = np.flatnonzero(done[i] > 0.5)
        steps = int(ended[0]) + 1 if len(ended) else max_steps  # the terminating step is shown, then stop
        positions.append(np.concatenate([q0[i][None], qpos[i, :steps]]).astype(np.float64))
        returns.append(float(reward[i, :steps].sum()))
    return positions, returns


def _software_gl(backend: str) -> bool:
    """Whether the current GL context renders on the CPU (Mesa's llvmpipe / softpipe, or OSMesa)."""
    try:
        from OpenGL import GL

        renderer = (GL.glGetString(GL.GL_RENDERER) or b"").decode(errors="replace").lower()
    except Exception:  # PyOpenGL bound to another platform: judge by the backend alone
        return backend == "osmesa"
    return backend == "osmesa" or any(n in renderer for n in ("llvmpipe", "softpipe", "swrast"))


class Offscreen:
    """MuJoCo's renderer on an offscreen GL context of the chosen backend."""

    def __init__(self, model, width: int, height: int, backend: str, camera: int | str = -1,
                 shadows: bool | None = None, distance: float = 0.0):  # fmt: skip
        import mujoco

        self._model = copy.copy(model)  # the offscreen buffer size is set on a copy, not on the env's model
        self._model.vis.global_.offwidth = max(width, model.vis.global_.offwidth)
        self._model.vis.global_.offheight = max(height, model.vis.global_.offheight)
        model = self._model
        self._camera = mujoco.MjvCamera()
        if isinstance(camera, str):
            cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        else:
            cam_id = camera if camera >= 0 else (0 if model.ncam else -1)
        if (isinstance(camera, str) and cam_id < 0) or cam_id >= model.ncam:
            names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
            raise ConfigError(f"--camera {camera!r}: the model's cameras are {names} (ids 0..{model.ncam - 1})")
        if cam_id < 0:
            mujoco.mjv_defaultFreeCamera(model, self._camera)
            self._camera.distance = distance or self._camera.distance
        else:
            self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
            self._camera.fixedcamid = cam_id
        try:
            self._ctx = _gl_context_class(backend)(width, height)
            self._ctx.make_current()
        except RendererMissing:
            raise
        except Exception as e:  # the library loads but no context opens (no display, no device, ...)
            raise RendererMissing(f"MUJOCO_GL={backend}: no GL context ({e}); {INSTALL_HINT}") from None
        self._data = mujoco.MjData(model)
        self._scene = mujoco.MjvScene(model, maxgeom=10_000)
        self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._option, self._perturb = mujoco.MjvOption(), mujoco.MjvPerturb()
        # Shadows and reflections cost ~20x per frame in a software GL (llvmpipe: 100 ms vs 5 ms at 480x360).
        self.shadows = not _software_gl(backend) if shadows is None else shadows
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.shadows
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = self.shadows
        self._pixels = np.empty((height, width, 3), np.uint8)

    def frame(self, qpos: np.ndarray) -> np.ndarray:
        """The image [H, W, 3] uint8 of the model at joint positions `qpos`."""
        import mujoco

        self._ctx.make_current()
        self._data.qpos[:] = qpos
        mujoco.mj_forward(self._model, self._data)
        mujoco.mjv_updateScene(self._model, self._data, self._option, self._perturb, self._camera,
                               mujoco.mjtCatBit.mjCAT_ALL, self._scene)  # fmt: skip
        mujoco.mjr_render(self._rect, self._scene, self._con)
        mujoco.mjr_readPixels(self._pixels, None, self._rect, self._con)
        return np.flipud(self._pixels).copy()

    def close(self) -> None:
        self._con.free()
        self._ctx.free()


@dataclass(frozen=True)
class Rendered:
    video: str
    strip: str
    frames: int
    episode_lengths: list[int]  # env steps per episode (each episode has one frame more: its reset)
    returns: list[float]
    backend: str


def strip_path(video: str) -> str:
    return os.path.splitext(video)[0] + "_frames.png"


def frame_strip(frames: list[np.ndarray], count: int) -> np.ndarray:
    """`count` frames evenly spaced over `frames`, side by side [H, count * W, 3]."""
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return np.concatenate([frames[i] for i in picks], axis=1)


def check_video(out: str, flag: str = "--out") -> str:
    """Refuse a video path that cannot be written (ConfigError), then pick the GL backend (RendererMissing when
    none works): both before a run is loaded or anything imports mujoco's GL modules. Returns the backend."""
    if os.path.splitext(out)[1].lower() != ".mp4":
        raise ConfigError(f"{flag} {out!r}: use a .mp4 file name")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise ConfigError(f"{flag} {out!r}: directory {out_dir!r} does not exist")
    backend = select_backend()
    _gl_context_class(backend)  # a backend that cannot load fails here
    return backend


def render_run(run_dir: str, out: str = "policy.mp4", which: str = "latest", **options: Any) -> Rendered:
    """Render a run directory's policy from its checkpoint `which` (`render_loaded`'s options); ConfigError /
    RendererMissing before anything is written."""
    backend = check_video(out)
    from mjx_tecrl.policy import load_run

    return render_loaded(load_run(run_dir, which=which), out, backend, **options)


def render_loaded(run, out: str, backend: str, episodes: int = 2, member: int = 0, max_steps: int = 0,
                  width: int = 480, height: int = 360, camera: int | str = -1, fps: float = 0.0,
                  strip_frames: int = 6, seed: int = 0, distance: float = 0.0) -> Rendered:  # fmt: skip
    """Render `episodes` episodes of a loaded run's deterministic policy to `out` and its frame strip.

    `max_steps` 0 means the run's episode_length; `fps` 0 means real time (1 / env dt)."""
    if not 0 <= member < len(run.members):
        raise ConfigError(f"--member {member}: {run.run_dir!r} has members 0..{len(run.members) - 1}")
    # The screen first: a bad camera is refused before the rollout is compiled.
    screen = Offscreen(host_model(run.env), width, height, backend, camera, distance=distance)
    try:
        positions, returns = rollout(run, member, episodes, max_steps or run.config.episode_length, seed)
        frames = [screen.frame(q) for episode in positions for q in episode]
    finally:
        screen.close()
    import imageio.v3 as iio

    rate = fps or 1.0 / float(run.env.dt)
    with _exec_child():
        iio.imwrite(out, np.stack(frames), fps=rate, codec="libx264", macro_block_size=1)
    strip = strip_path(out)
    iio.imwrite(strip, frame_strip(frames, strip_frames))
    return Rendered(out, strip, len(frames), [len(p) - 1 for p in positions], returns, backend)


def _fail(message: str) -> NoReturn:
    commands.fail("render", message)


def _camera(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    from mjx_tecrl.policy import add_checkpoint_flag

    parser = commands.Parser(
        error_name="render", prog="python -m mjx_tecrl.render", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run or sweep directory with a checkpoint")
    parser.add_argument("--out", default="policy.mp4", help="video to write (.mp4; default policy.mp4); "
                        "the frame strip goes beside it as NAME_frames.png")  # fmt: skip
    parser.add_argument("--episodes", type=int, default=2, help="episodes to render (default 2)")
    parser.add_argument("--member", type=int, default=0, help="which sweep member (default 0)")
    parser.add_argument("--max-steps", type=int, default=0, help="cap on env steps per episode (default: the "
                        "run's episode_length)")  # fmt: skip
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--camera", type=_camera, default=-1, help="camera name or id (default: free camera, "
                        "or the model's first camera when it has one)")  # fmt: skip
    parser.add_argument("--distance", type=float, default=0.0, help="free camera's distance to the model's "
                        "centre (default: MuJoCo's, 1.5 x the model's extent)")  # fmt: skip
    parser.add_argument("--fps", type=float, default=0.0, help="video frame rate (default: real time, 1 / dt)")
    parser.add_argument("--strip-frames", type=int, default=6, help="frames in the PNG strip (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes' initial states")
    add_checkpoint_flag(parser)
    args = parser.parse_args(argv)
    for flag, value, low in (("episodes", args.episodes, 1), ("member", args.member, 0),
                             ("max-steps", args.max_steps, 0), ("width", args.width, 1),
                             ("height", args.height, 1), ("strip-frames", args.strip_frames, 1)):  # fmt: skip
        if value < low:
            _fail(f"--{flag} {value}: must be at least {low}")
    if args.width % 2 or args.height % 2:
        _fail(f"--width {args.width} --height {args.height}: both must be even (H.264 video)")
    if not args.fps >= 0:
        _fail(f"--fps {args.fps}: must be positive (or 0 for real time)")
    if not args.distance >= 0:
        _fail(f"--distance {args.distance}: must be positive (or 0 for MuJoCo's default)")
    if not os.path.isdir(args.run_dir):
        _fail(f"{args.run_dir!r} is not a directory")
    try:
        options = {k: getattr(args, k) for k in ("episodes", "member", "max_steps", "width", "height", "camera",
                                                  "fps", "strip_frames", "seed", "distance")}  # fmt: skip
        result = render_run(args.run_dir, args.out, args.checkpoint, **options)
    except ConfigError as e:
        _fail(str(e))
    except RendererMissing as e:
        _fail(str(e))
    lengths = ", ".join(f"{n} steps (return {r:.1f})" for n, r in zip(result.episode_lengths, result.returns,
                                                                      strict=True))  # fmt: skip
    print(f"wrote {result.video} ({result.frames} frames, {result.backend}; episodes: {lengths}) and {result.strip}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
