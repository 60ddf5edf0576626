"""A user's own task: `--env package.module:factory` and `registry.register`, the env contract's checks, and the
example task of docs/envs.md (examples/point_mass.py) trained, evaluated and perturbed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mjx_tecrl.envs import registry
from mjx_tecrl.envs.perturb import NotPerturbable, PerturbedEnv
from toy_envs import CounterEnv

from mjx_tecrl.config import ConfigError, make_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "train.py")
EXAMPLE = "examples.point_mass:make_env"


class _NoStep:
    action_size, dt = 1, 0.1

    def reset(self, key):
        return None


class _BatchedReset(CounterEnv):
    def reset(self, key):
        state = super().reset(key)
        return state.replace(reward=state.reward[None])  # [1]: not one env's scalar reward


def test_a_registered_factory_is_a_task_with_the_locomotion_defaults():
    registry.register("counter_task", CounterEnv, tuned={"gamma": 0.9})
    config = make_config(env="counter_task")
    assert config.gamma == 0.9 and config.updates_per_step == 1.0 and config.critic_layer_norm  # tuned, then yours
    env = registry.make("counter_task")
    assert (env.observation_size, env.action_size, env.dt) == (2, 1, 0.1)
    assert "counter_task" in registry.user_names() and "counter_task" not in registry.bare_names()
    with pytest.raises(ValueError, match="taken by a built-in"):
        registry.register("hopper", CounterEnv)
    with pytest.raises(ConfigError, match="no_such_field"):
        registry.register("counter_task_2", CounterEnv, tuned={"no_such_field": 1})


@pytest.mark.parametrize(
    "factory, message",
    [
        (_NoStep, "without step; an env needs reset(key), step(state, action), action_size and dt"),
        (_BatchedReset, "scalar reward and done; got reward (1,)"),
        (lambda: 1 / 0, "the factory raised ZeroDivisionError"),
    ],
)
def test_a_factory_that_breaks_the_contract_is_refused_in_one_line(factory, message):
    registry.register("broken_task", factory)
    with pytest.raises(registry.EnvFactoryError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        registry.make("broken_task")
    assert isinstance(e.value, ConfigError) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "env, message",
    [
        ("no_such_package.tasks:make_env", "module 'no_such_package.tasks' does not import (ModuleNotFoundError"),
        ("examples.point_mass:no_factory", "module 'examples.point_mass' has no callable 'no_factory'"),
        ("json:dumps", "the factory raised TypeError"),  # imports, is callable, is not an env factory
        ("brax:no_such_task", "is unknown"),
    ],
)
def test_train_py_refuses_a_task_that_cannot_be_used_before_writing(env, message, tmp_path):
    proc = subprocess.run([sys.executable, TRAIN, "--env", env, "--out", str(tmp_path / "run")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "run").exists()


def test_perturbations_need_the_envs_model(tmp_path):
    registry.register("counter_task_plain", CounterEnv)
    with pytest.raises(NotPerturbable, match="CounterEnv exposes no MJX model as `sys`"):
        PerturbedEnv(registry.make("counter_task_plain"))
    tests = str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", "")
    argv = ["--env", "toy_envs:CounterEnv", "--randomize", "mass=0.8:1.2", "--out", str(tmp_path / "run")]
    proc = subprocess.run([sys.executable, TRAIN, *argv], cwd=ROOT, env={**os.environ, "PYTHONPATH": tests},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "--randomize 'mass=0.8:1.2': CounterEnv exposes no MJX model" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_the_example_task_trains_as_a_sweep_evaluates_and_can_be_perturbed(tmp_path):
    """examples/point_mass.py, 2 seeds as one program for 4000 env steps: holding still from x ~ U(-1, 1) scores
    about -100 per 100-step episode. Measured here (seed 0, 2 x 64 networks): -23.7 at 3008 env steps, -15.4 at
    5008; the test asks each seed for better than -40."""
    run = tmp_path / "run"
    argv = ["--env", EXAMPLE, "--seeds", "2", "--total-steps", "4000", "--num-envs", "16", "--eval-every", "1000",
            "--learning-starts", "1000", "--hidden-sizes", "32,32", "--episode-length", "100", "--num-eval-envs", "4",
            "--out", str(run), "--no-progress"]  # fmt: skip
    proc = subprocess.run([sys.executable, TRAIN, *argv], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    for member in (0, 1):
        summary = json.loads((run / "members" / f"m{member:03d}" / "summary.json").read_text())
        assert summary["env"] == EXAMPLE and summary["best_eval_return"] > -40.0, summary
    assert json.loads((run / "config.json").read_text())["env"] == EXAMPLE
    # the policy files and the evaluation read the run back in a fresh process (the module imported again)
    proc = subprocess.run([sys.executable, "-m", "mjx_tecrl.evaluate", str(run), "--episodes", "4"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    evaluation = json.loads((run / "evaluation_mjx.json").read_text())
    assert [m["seed"] for m in evaluation["members"]] == [0, 1]
    assert all(m["return_mean"] > -40.0 for m in evaluation["members"]), evaluation
    assert (run / "members" / "m001" / "policy.npz").is_file()
    # the example keeps its MJX model in `sys` and its host model in `mj_model`: studies and videos work
    env = registry.make(EXAMPLE)
    assert PerturbedEnv(env).can_push and np.asarray(env.action_scale).tolist() == [2.0]
    from mjx_tecrl.render import host_model

    assert host_model(env).nq == 1
