"""Policy-only files and the numpy policy (mjx_tecrl.export): the numpy `act` is the JAX deterministic policy."""

from __future__ import annotations

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjx_tecrl import export
from mjx_tecrl.config import Config
from mjx_tecrl.learner import Learner
from mjx_tecrl.types import NormalizerState

OBS_DIM, ACT_DIM = 5, 3


def _fake_env():
    return types.SimpleNamespace(
        observation_size=OBS_DIM, action_size=ACT_DIM,
        action_scale=np.array([0.5, 2.0, 1.0], np.float32), action_offset=np.array([0.0, -1.0, 0.25], np.float32),
    )  # fmt: skip


@pytest.mark.parametrize("layer_norm, normalize_obs", [(False, False), (True, True)])
def test_numpy_act_is_the_jax_deterministic_policy_to_float32_rounding(tmp_path, layer_norm, normalize_obs):
    config = Config(env="hopper", hidden_sizes=(32, 32), actor_layer_norm=layer_norm, normalize_obs=normalize_obs)
    learner = Learner.from_config(config, ACT_DIM)
    state = learner.init(jax.random.PRNGKey(0), OBS_DIM, config.hyperparams())
    rng = np.random.default_rng(0)
    # trained-looking weights (init's are small) and observation statistics far from the identity
    state = state.replace(
        actor_params=jax.tree.map(lambda x: x * 1.5, state.actor_params),
        obs_normalizer=NormalizerState(jnp.asarray(rng.normal(size=OBS_DIM), jnp.float32),
                                       jnp.asarray(rng.uniform(0.1, 4.0, OBS_DIM), jnp.float32), jnp.float32(100.0)),
    )  # fmt: skip
    env = _fake_env()
    path = export.save(str(tmp_path / "policy.npz"), export.policy_arrays(config, env, state, member=2, seed=7))
    policy = export.NumpyPolicy.load(path)
    obs = rng.normal(size=(64, OBS_DIM)).astype(np.float32)
    expected = np.asarray(learner.deterministic_action(state, jnp.asarray(obs)))
    assert np.median(np.abs(expected)) < 0.9  # mostly unsaturated: the comparison sees the network, not tanh
    np.testing.assert_allclose(policy.act_unit(obs), expected, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(policy.act(obs), env.action_offset + env.action_scale * expected, rtol=1e-5, atol=5e-6)
    assert policy.act(obs[0]).shape == (ACT_DIM,)  # one observation works too
    assert (policy.meta["env"], policy.meta["member"], policy.meta["seed"]) == ("hopper", 2, 7)
    assert policy.meta["config"]["actor_layer_norm"] is layer_norm


def test_the_policy_file_holds_no_critic_and_no_replay(tmp_path):
    config = Config(hidden_sizes=(32, 32))
    learner = Learner.from_config(config, ACT_DIM)
    state = learner.init(jax.random.PRNGKey(0), OBS_DIM, config.hyperparams())
    arrays = export.policy_arrays(config, _fake_env(), state)
    assert all(k.startswith("actor/") for k in arrays if "/" in k)
    actor_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(state.actor_params))
    assert sum(a.nbytes for a in arrays.values()) < actor_bytes + 10_000


def test_an_unknown_format_version_is_refused(tmp_path):
    config = Config(hidden_sizes=(8,))
    state = Learner.from_config(config, ACT_DIM).init(jax.random.PRNGKey(0), OBS_DIM, config.hyperparams())
    arrays = export.policy_arrays(config, _fake_env(), state)
    meta = bytes(arrays["meta"]).decode().replace('"format_version": 1', '"format_version": 99')
    arrays["meta"] = np.frombuffer(meta.encode(), np.uint8)
    path = export.save(str(tmp_path / "p.npz"), arrays)
    with pytest.raises(ValueError, match="policy format 99"):
        export.NumpyPolicy.load(path)


def test_an_env_without_an_action_map_exports_the_identity(tmp_path):
    """A user's env that takes [-1, 1] actions itself (no ScaledActionEnv): act is the unit action."""
    config = Config(hidden_sizes=(8,))
    state = Learner.from_config(config, ACT_DIM).init(jax.random.PRNGKey(0), OBS_DIM, config.hyperparams())
    bare = types.SimpleNamespace(observation_size=OBS_DIM, action_size=ACT_DIM)
    policy = export.NumpyPolicy.load(export.save(str(tmp_path / "p.npz"), export.policy_arrays(config, bare, state)))
    obs = np.ones((2, OBS_DIM), np.float32)
    np.testing.assert_array_equal(policy.act(obs), policy.act_unit(obs))


def test_scaled_action_env_exposes_its_action_map():
    from mjx_tecrl.envs.wrappers import ScaledActionEnv
    from toy_envs import CounterEnv

    env = ScaledActionEnv(CounterEnv())
    np.testing.assert_array_equal(env.action_scale, np.asarray(env._scale))
    np.testing.assert_array_equal(env.action_offset, np.asarray(env._offset))


def test_the_onnx_export_is_the_jax_policy_in_onnxruntime(tmp_path):
    """`export --onnx`: policy.onnx beside policy.npz, for every member of a sweep; onnxruntime gives the JAX
    deterministic policy's control (action map included) for a batch of any size."""
    import onnxruntime
    from tiny_runs import tiny_run_dir

    from mjx_tecrl.policy import load_run

    run_dir = tmp_path / "sweep"
    tiny_run_dir(run_dir, "dsac-e", 3, sweep_rhos=(0.5, 1.0))
    assert export.main([str(run_dir), "--onnx"]) == 0
    run = load_run(str(run_dir))
    scale, offset = export.action_map(run.env)
    assert scale.tolist() == [3.0] and offset.tolist() == [0.0]  # InvertedPendulum's ctrlrange [-3, 3]
    obs = np.random.default_rng(0).normal(size=(5, run.env.observation_size)).astype(np.float32)
    for m in run.members:
        session = onnxruntime.InferenceSession(str(run_dir / "members" / f"m{m.index:03d}" / export.ONNX_NAME))
        expected = offset + scale * np.asarray(run.fns.learner.deterministic_action(m.learner, obs))
        np.testing.assert_allclose(session.run(None, {"obs": obs})[0], expected, rtol=1e-5, atol=2e-6)
        assert session.run(None, {"obs": obs[:1]})[0].shape == (1, 1)
    one, two = (np.asarray(run.fns.learner.deterministic_action(m.learner, obs)) for m in run.members)
    assert not np.allclose(one, two)  # two members, two policies


def test_onnx_without_jax2onnx_exits_2_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jax2onnx", None)  # as if the onnx extra were not installed
    assert export.main([str(tmp_path), "--onnx"]) == 2  # before the run directory is read
    err = capsys.readouterr().err
    assert "pip install 'mjx_tecrl[onnx]'" in err and len(err.strip().splitlines()) == 1


def test_export_of_another_checkpoint_goes_under_exports_and_keeps_the_runs_files(tmp_path, capsys):
    """`--checkpoint best` on a sweep: one file per member under exports/best/, each its member's policy from
    best.ckpt (not latest's); the run's own policy files are not touched; a checkpoint the run lacks exits 2."""
    from tiny_runs import tiny_run_dir

    from mjx_tecrl import checkpoint
    from mjx_tecrl.policy import load_run

    run_dir = tmp_path / "sweep"
    tiny_run_dir(run_dir, "dsac-e", 3, sweep_rhos=(0.5, 1.0), extra=(checkpoint.BEST,))
    assert export.main([str(run_dir)]) == 0
    latest = [(run_dir / "members" / f"m{i:03d}" / export.FILE_NAME).read_bytes() for i in range(2)]
    assert export.main([str(run_dir), "--checkpoint", "best"]) == 0
    best = load_run(str(run_dir), which="best")
    obs = np.linspace(-1, 1, 4 * best.env.observation_size, dtype=np.float32).reshape(4, -1)
    for m in best.members:
        path = run_dir / export.EXPORTS_DIR / "best" / "members" / f"m{m.index:03d}" / export.FILE_NAME
        policy = export.NumpyPolicy.load(str(path))
        assert policy.meta["checkpoint"] == "best" and policy.meta["member"] == m.index
        scale, offset = export.action_map(best.env)
        expected = offset + scale * np.asarray(best.fns.learner.deterministic_action(m.learner, obs))
        np.testing.assert_allclose(policy.act(obs), expected, rtol=1e-5, atol=2e-6)
    assert [(run_dir / "members" / f"m{i:03d}" / export.FILE_NAME).read_bytes() for i in range(2)] == latest
    capsys.readouterr()
    assert export.main([str(run_dir), "--checkpoint", "step-9"]) == 2
    err = capsys.readouterr().err
    assert "has no step-000000000009.ckpt; it has: latest, best" in err and len(err.strip().splitlines()) == 1
