"""Load trained policies from run directories: a single run, or every member of a sweep (the layout:
mjx_tecrl/rundir.py). The replay buffer, in its own file, is not read here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from mjx_tecrl import checkpoint, rundir
from mjx_tecrl.config import Config, ConfigError
from mjx_tecrl.population import abstract_state
from mjx_tecrl.rundir import checkpoint_file, read_config, read_sweep


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

    @property
    def env(self):
        return self.fns.env


def add_checkpoint_flag(parser) -> None:
    """`--checkpoint NAME` for the commands that load a run's policies (`load_run`'s `which`)."""
    parser.add_argument("--checkpoint", default="latest", metavar="NAME", help=f"which checkpoint: "
                        f"{checkpoint.WHICH_HELP}")  # fmt: skip


def load_run(run_dir: str, physics: str | None = None, which: str = "latest") -> LoadedRun:
    """Every policy of `run_dir` from its checkpoint `which` (`checkpoint.file_name`), in its env (under
    `physics`, default the run's); raises ConfigError (one line) when the directory is not a usable run."""
    from mjx_tecrl.envs import registry
    from mjx_tecrl.loop import make_train

    config = read_config(run_dir)
    sweep = read_sweep(run_dir)
    ckpt_dir = rundir.checkpoints_dir(run_dir)
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
    population = rundir.run_members(config, sweep)
    template = abstract_state(fns, config, population)
    if not meta.get("has_buffer", True):
        template = template.replace(replay=None)
    try:
        state, meta = checkpoint.restore(ckpt_dir, template, payload, name)
    except checkpoint.CheckpointError as e:
        raise ConfigError(f"{run_dir!r}: {e}") from None
    learner = jax.tree.map(np.asarray, state.learner)
    members = [
        Member(
            index=i,
            seed=int(m["seed"]),
            hyperparams=rundir.member_hyperparams(config, m),
            learner=jax.tree.map(lambda x, i=i: x[i], learner),
            metrics_dir=rundir.metrics_dir(run_dir, i if sweep is not None else None),
        )
        for i, m in enumerate(population)
    ]
    return LoadedRun(run_dir, config, members, sweep is not None, int(meta.get("env_steps", 0)), fns)
