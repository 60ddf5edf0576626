"""mjx_tecrl.render: frames of a policy offscreen on the CPU, the mp4 and the strip, and bad input.

The rendering tests skip (with the reason) only where no offscreen OpenGL context opens at all: on this
project's machines Debian's libegl-mesa0 and libgl1-mesa-dri are present and EGL renders on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from mjx_tecrl import checkpoint, render
from mjx_tecrl.config import ConfigError, make_config

W, H = 64, 48
# The subprocesses here exec a new interpreter at once; JAX's fork warning does not apply. The rollouts are
# compiled with most XLA optimisations off (conftest's fast_compile; FAST for the subprocesses).
pytestmark = [pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning"), pytest.mark.usefixtures("fast_compile")]
FAST = {"JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    """A run directory of an untrained inverted_pendulum policy: config.json and a checkpoint, no training
    (so no chunk is compiled). Episodes of 8 steps."""
    from mjx_tecrl.envs import registry

    from mjx_tecrl.loop import make_train

    config = make_config(env="inverted_pendulum", hidden_sizes=(16, 16), num_envs=2, buffer_size=16,
                         batch_size=4, episode_length=8)  # fmt: skip
    run_dir = str(tmp_path_factory.mktemp("run"))
    fns = make_train(config, registry.make(config.env))
    state = jax.tree.map(lambda x: x[None], fns.init(jax.random.PRNGKey(0)))  # a single run: a population of one
    checkpoint.save(os.path.join(run_dir, "checkpoints"), state, {"env_steps": 0, "has_buffer": True})
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({**config.to_dict(), "out": run_dir}, f)
    return run_dir


@pytest.fixture
def backend(monkeypatch):
    """The offscreen backend this machine has (MUJOCO_GL restored afterwards), or a skip saying why not."""
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    try:
        return render.select_backend()
    except render.RendererMissing as e:
        pytest.skip(f"no offscreen OpenGL on this machine: {e}")


def _video_frames(path: str) -> np.ndarray:
    import imageio.v3 as iio

    return np.stack(list(iio.imiter(path, plugin="FFMPEG")))


def test_render_writes_the_expected_frames_and_strip(untrained_run, backend, tmp_path):
    assert os.environ["MUJOCO_GL"] == backend  # set for the user, who had not
    out = str(tmp_path / "policy.mp4")
    result = render.render_run(untrained_run, out, episodes=2, max_steps=5, width=W, height=H, strip_frames=4)
    assert result.episode_lengths == [5, 5]  # an untrained pendulum does not fall within 0.2 s
    assert result.frames == 2 * (5 + 1)  # each episode: its reset, then one frame per step
    video = _video_frames(out)
    assert video.shape == (12, H, W, 3)
    assert video.std() > 5  # a picture, not a blank
    strip = _png(result.strip)
    assert result.strip == str(tmp_path / "policy_frames.png")
    assert strip.shape[:2] == (H, 4 * W) and strip.std() > 5


def _png(path: str) -> np.ndarray:
    import imageio.v3 as iio

    return iio.imread(path)


def test_frames_follow_the_positions(untrained_run, backend):
    """Moving the cart moves pixels; the same positions give the same image."""
    from mjx_tecrl.envs import registry

    model = render.host_model(registry.make("inverted_pendulum"))
    screen = render.Offscreen(model, W, H, backend)
    try:
        rest = screen.frame(np.zeros(model.nq))
        again = screen.frame(np.zeros(model.nq))
        moved = screen.frame(np.array([0.5] + [0.0] * (model.nq - 1)))
    finally:
        screen.close()
    closer = render.Offscreen(model, W, H, backend, distance=1.0)
    try:
        near = closer.frame(np.zeros(model.nq))
    finally:
        closer.close()
    np.testing.assert_array_equal(rest, again)
    assert np.abs(rest.astype(int) - moved.astype(int)).sum() > 1000
    assert (near.max(axis=-1) > 20).sum() > (rest.max(axis=-1) > 20).sum()  # a closer camera: a bigger model


def test_render_command_end_to_end(untrained_run, tmp_path):
    """`python -m mjx_tecrl.render` with MUJOCO_GL unset: it picks the backend and prints what it wrote.
    Without --max-steps an episode lasts the run's episode_length (8) unless the pole falls."""
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")} | FAST
    out = str(tmp_path / "p.mp4")
    cmd = [sys.executable, "-m", "mjx_tecrl.render", untrained_run, "--out", out, "--episodes", "1",
           "--width", str(W), "--height", str(H)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode == 2 and "offscreen OpenGL" in result.stderr:
        pytest.skip(f"no offscreen OpenGL on this machine: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert "8 steps" in result.stdout and "9 frames" in result.stdout, result.stdout
    assert _video_frames(out).shape == (9, H, W, 3)
    assert os.path.isfile(str(tmp_path / "p_frames.png"))


def test_missing_renderer_is_one_line_with_what_to_install(untrained_run, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    monkeypatch.setattr(render, "_probe", lambda backend: False)
    out = tmp_path / "policy.mp4"
    with pytest.raises(SystemExit) as exc:
        render.main([untrained_run, "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install libosmesa6" in err and "libegl1" in err, err
    assert not out.exists() and "MUJOCO_GL" not in os.environ


def test_user_backend_that_cannot_load_is_one_line(untrained_run, tmp_path):
    """MUJOCO_GL=osmesa while PyOpenGL is fixed to EGL: mujoco.osmesa cannot load; a message, not a traceback."""
    env = {**os.environ, "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "egl", **FAST}
    cmd = [sys.executable, "-m", "mjx_tecrl.render", untrained_run, "--out", str(tmp_path / "x.mp4")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MUJOCO_GL=osmesa" in lines[0] and "apt-get install" in lines[0], result.stderr
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["{missing}"], "is not a directory"),
        (["{run}", "--episodes", "0"], "--episodes 0"),
        (["{run}", "--width", "65"], "must be even"),
        (["{run}", "--distance", "-1"], "--distance -1"),
        (["{run}", "--out", "x.gif"], ".mp4"),
        (["{run}", "--out", "{missing}/x.mp4"], "does not exist"),
        (["{empty}"], "no config.json"),
        (["{run}", "--member", "3"], "--member 3"),
        (["{run}", "--camera", "nope"], "--camera 'nope'"),
        (["{run}", "--checkpoint", "step-7"], "has no step-000000000007.ckpt"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(untrained_run, backend, tmp_path, capsys, args, needle):
    subs = {"{run}": untrained_run, "{missing}": str(tmp_path / "nope"), "{empty}": str(tmp_path)}
    argv = [subs.get(a, a.replace("{missing}", str(tmp_path / "nope"))) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "v.mp4")]
    with pytest.raises(SystemExit) as exc:
        render.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("render: error:") and needle in err, err
    assert not any(p.suffix in (".mp4", ".png") for p in tmp_path.iterdir())


def test_host_model_is_found_on_brax_and_on_plain_envs():
    class Sys:
        mj_model = "brax-model"

    class BraxLike:
        sys = Sys()

    class Plain:
        mj_model = "plain-model"

    class Wrapped:
        def __init__(self, inner):
            self.unwrapped = inner

    assert render.host_model(Wrapped(BraxLike())) == "brax-model"
    assert render.host_model(Wrapped(Plain())) == "plain-model"
    with pytest.raises(ConfigError, match="no host MjModel"):
        render.host_model(Wrapped(object()))
