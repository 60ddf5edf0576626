"""MuJoCo Playground's tasks as `--env playground:<Name>` (envs/playground.py). The adapter's tests run without
Playground; the training test needs the `playground` extra and says so when it is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax import struct
from mjx_tecrl.envs import playground, registry

TRAIN = str(Path(__file__).resolve().parents[1] / "train.py")


@struct.dataclass
class _State:
    data: jax.Array
    obs: dict
    reward: jax.Array
    done: jax.Array


class _DictObsEnv:
    """Playground's shape of env: dict observations, `mj_model`, actions taken as they are."""

    action_size, dt, mj_model = 2, 0.02, None

    def reset(self, key):
        return _State(jnp.zeros(3), {"state": jnp.zeros(4), "privileged_state": jnp.ones(9)}, jnp.zeros(()),
                      jnp.zeros(()))  # fmt: skip

    def step(self, state, action):
        obs = {"state": state.obs["state"] + jnp.sum(action), "privileged_state": state.obs["privileged_state"]}
        return state.replace(data=state.data + 1.0, obs=obs, reward=jnp.sum(action))


def test_the_adapter_gives_the_learner_the_state_observation_and_keeps_playgrounds_state():
    env = playground.PlaygroundEnv(_DictObsEnv())
    state = env.step(env.reset(jax.random.PRNGKey(0)), jnp.array([0.5, -2.0]))
    assert state.obs.tolist() == [-1.5] * 4 and float(state.reward) == -1.5  # actions as they are, unclipped here
    assert state.inner.obs["privileged_state"].shape == (9,) and state.data.tolist() == [1.0] * 3
    assert not hasattr(env, "sys")  # so robustness studies refuse it in one line


def test_without_the_extra_a_playground_task_is_refused_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco_playground", None)
    with pytest.raises(registry.EnvFactoryError, match=r"pip install 'mjx_tecrl\[playground\]'"):
        registry.spec("playground:CartpoleBalanceNotRegisteredYet")


def test_cartpole_balance_trains_through_train_py(tmp_path):
    pytest.importorskip(
        "mujoco_playground", reason="the playground extra is not installed: pip install '.[playground]'"
    )
    with pytest.raises(registry.EnvFactoryError, match="Playground has no task 'NoSuchTask'"):
        registry.spec("playground:NoSuchTask")
    out = tmp_path / "run"
    argv = ["--env", "playground:CartpoleBalance", "--total-steps", "3000", "--num-envs", "8", "--eval-every", "1000",
            "--learning-starts", "1000", "--hidden-sizes", "32,32", "--num-eval-envs", "2", "--episode-length", "200",
            "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.run([sys.executable, TRAIN, *argv], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    # CartpoleBalance pays at most 1 per step; measured here: 125 of 200 at 2000 and 3000 env steps (seed 0)
    assert summary["env"] == "playground:CartpoleBalance" and 0.0 < summary["best_eval_return"] <= 200.0
    assert (out / "policy.npz").is_file()
