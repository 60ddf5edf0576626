"""Load trained policies from run directories: a single run, or every member of a sweep.

The run-directory layout this reads:
  config.json                the resolved `Config` (for a sweep: the base config of every member)
  checkpoints/latest.ckpt    the `TrainState` (a sweep's has a leading member axis on every leaf); its replay
                             buffer is in the replay file it names (layout: mjx_tecrl/checkpoint.py), not read here
  sweep.json                 sweeps only: {"members": [{"member", "seed", "hyperparams": {...}}, ...], ...}
  members/mNNN/              sweeps only: each member's metrics.csv, summary.json and TensorBoard events
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mjx_tecrl import checkpoint
from mjx_tecrl.config import HYPERPARAM_NAMES, Config, ConfigError, Hyperparams

SWEEP_FILE = "sweep.json"
MEMBERS_DIR = "members"


def member_dir(run_dir: str, index: int) -> str:
    """Where a sweep member's metrics live."""
    return os.path.join(run_dir, MEMBERS_DIR, f"m{index:03d}")


@dataclass(frozen=True)
class Member:
    """One trained policy: its index in the run, seed, traced hyperparameters and learner state."""

    index: int
    seed: int
    hyperparams: dict[str, float]
    learner: Any  # LearnerState, host arrays, no member axis
    metrics_dir: str  # where its metrics.csv / summary.json are


@dataclass(frozen=True)
class LoadedRun:
    run_dir: str
    config: Config
    members: list[Member]
    is_sweep: bool
    env_steps: int
    fns: Any  # loop.TrainFns of the config: `fns.evaluate`, `fns.learner.deterministic_action`, `fns.env`
    checkpoint: str = "latest"  # which checkpoint the policies are from (`checkpoint.file_name`)

    @property
    def env(self):
        return self.fns.env


def read_config(run_dir: str) -> Config:
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{run_dir!r} holds no run (no config.json)")
    try:
        with open(path) as f:
            return Config.from_dict(json.load(f))
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"{run_dir!r}: config.json is unreadable ({e})") from None


def read_sweep(run_dir: str) -> dict[str, Any] | None:
    """The sweep description of a run directory, or None for a single run."""
    path = os.path.join(run_dir, SWEEP_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{run_dir!r}: {SWEEP_FILE} is unreadable ({e})") from None


def stacked_hyperparams(config: Config, members: list[dict[str, Any]], action_dim: int) -> Hyperparams:
    """The members' traced hyperparameters with a leading member axis (config values where not swept)."""
    cols = {n: [float(m["hyperparams"].get(n, getattr(config, n))) for m in members] for n in HYPERPARAM_NAMES}
    return Hyperparams(
        **{name: jnp.asarray(v, jnp.float32) for name, v in cols.items()},
        action_dim=jnp.full((len(members),), action_dim, jnp.float32),
    )


def add_checkpoint_flag(parser) -> None:
    """`--checkpoint NAME` for the commands that load a run's policies (`load_run`'s `which`)."""
    parser.add_argument("--checkpoint", default="latest", metavar="NAME", help=f"which checkpoint: "
                        f"{checkpoint.WHICH_HELP}")  # fmt: skip


def checkpoint_file(run_dir: str, which: str = "latest") -> str:
    """The file name of checkpoint `which` in run_dir's checkpoints; ConfigError (one line, naming the ones the
    run has) when the name is malformed or the run has no such checkpoint."""
    try:
        name = checkpoint.file_name(which)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if which != "latest" and not os.path.exists(os.path.join(ckpt_dir, name)):
        has = ", ".join(checkpoint.available(ckpt_dir)) or "none"
        raise ConfigError(f"--checkpoint {which}: {run_dir!r} has no {name}; it has: {has}")
    return name


def load_run(run_dir: str, physics: str | None = None, which: str = "latest") -> LoadedRun:
    """Every policy of `run_dir` from its checkpoint `which` (`checkpoint.file_name`), in its env (under
    `physics`, default the run's); raises ConfigError (one line) when the directory is not a usable run."""
    from mjx_tecrl.envs import registry
    from mjx_tecrl.loop import make_train

    config = read_config(run_dir)
    sweep = read_sweep(run_dir)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    name = checkpoint_file(run_dir, which)
    try:
        payload, meta = checkpoint.load_meta(ckpt_dir, name)
    except checkpoint.CheckpointError as e:
        raise ConfigError(f"{run_dir!r}: {e}") from None
    try:
        env = registry.make(config.env, physics=physics or config.physics)
    except registry.UnknownEnvError as e:
        raise ConfigError(f"{run_dir!r}: {e}") from None
    except ConfigError:  # a user's task whose module no longer imports
        raise
    except ValueError as e:  # a physics the task does not have
        raise ConfigError(f"--physics: {e}") from None
    fns = make_train(config, env)
    key = jax.random.PRNGKey(0)
    if sweep is None:
        template = jax.eval_shape(fns._init, key, config.hyperparams(fns.env.action_size))
    else:
        hp = stacked_hyperparams(config, sweep["members"], fns.env.action_size)
        keys = jax.random.split(key, len(sweep["members"]))
        template = jax.eval_shape(jax.vmap(fns._init), keys, hp)
    if not meta.get("has_buffer", True):
        template = template.replace(replay=None)
    try:
        state, meta = checkpoint.restore(ckpt_dir, template, payload, name)
    except checkpoint.CheckpointError as e:
        raise ConfigError(f"{run_dir!r}: {e}") from None
    learner = jax.tree.map(np.asarray, state.learner)
    if sweep is None:
        hyper = {name: float(getattr(config, name)) for name in HYPERPARAM_NAMES}
        members = [Member(0, config.seed, hyper, learner, run_dir)]
    else:
        members = [
            Member(
                index=i,
                seed=int(m["seed"]),
                hyperparams={n: float(m["hyperparams"].get(n, getattr(config, n))) for n in HYPERPARAM_NAMES},
                learner=jax.tree.map(lambda x, i=i: x[i], learner),
                metrics_dir=member_dir(run_dir, i),
            )
            for i, m in enumerate(sweep["members"])
        ]
    return LoadedRun(run_dir, config, members, sweep is not None, int(meta.get("env_steps", 0)), fns, which)
