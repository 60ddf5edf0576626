"""A run directory's layout, its one owner (train.py --out writes it; evaluate, export, render, robustness, plot and
--resume read it):

  config.json         the resolved `Config` (for a sweep: the base config of every member); its presence is what
                      marks a directory as holding a run
  sweep.json          sweeps only: {"members": [{"member", "seed", "hyperparams": {...}}, ...], ...}
  metrics.csv         a single run's metrics (a sweep: members/mNNN/metrics.csv, with summary.json and events)
  checkpoints/        the checkpoint files (their own layout: mjx_tecrl/checkpoint.py)
"""

from __future__ import annotations

import json
import os
from typing import Any

from mjx_tecrl import checkpoint
from mjx_tecrl.config import HYPERPARAM_NAMES, Config, ConfigError

CONFIG_FILE = "config.json"
SWEEP_FILE = "sweep.json"
MEMBERS_DIR = "members"
METRICS_FILE = "metrics.csv"
CHECKPOINTS_DIR = "checkpoints"


def holds_run(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, CONFIG_FILE))


def member_dir(run_dir: str, index: int) -> str:
    """Where a sweep member's metrics (and exported policy) live."""
    return os.path.join(run_dir, MEMBERS_DIR, f"m{index:03d}")


def metrics_dir(run_dir: str, member: int | None = None) -> str:
    """Where the metrics of a single run (`member` None) or of sweep member `member` go."""
    return run_dir if member is None else member_dir(run_dir, member)


def checkpoints_dir(run_dir: str) -> str:
    return os.path.join(run_dir, CHECKPOINTS_DIR)


def read_config_dict(run_dir: str, where: str = "") -> dict[str, Any]:
    """config.json as it is (a reference learner's too); ConfigError (one line, prefixed by `where`, default the
    directory) when it is missing or unreadable."""
    where = where or repr(run_dir)
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"{where} holds no run (no {CONFIG_FILE})")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: {CONFIG_FILE} is unreadable ({e})") from None


def read_config(run_dir: str, where: str = "") -> Config:
    """config.json as a `Config`; ConfigError as `read_config_dict`, or naming the field it refuses."""
    data = read_config_dict(run_dir, where)
    where = where or repr(run_dir)
    try:
        return Config.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {CONFIG_FILE}: {e}") from None
    except (ValueError, TypeError, AttributeError) as e:  # not a config's fields
        raise ConfigError(f"{where}: {CONFIG_FILE} is unreadable ({e})") from None


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


def member_hyperparams(config: Config, member: dict[str, Any]) -> dict[str, float]:
    """A sweep member's traced hyperparameters (sweep.json's entry), the config's value where it is not swept."""
    return {n: float(member["hyperparams"].get(n, getattr(config, n))) for n in HYPERPARAM_NAMES}


def checkpoint_file(run_dir: str, which: str = "latest") -> str:
    """The file name of checkpoint `which` (`checkpoint.file_name`) in the run's checkpoints; ConfigError (one
    line, naming the ones the run has) when the name is malformed or the run has no such checkpoint."""
    try:
        name = checkpoint.file_name(which)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    directory = checkpoints_dir(run_dir)
    if which != "latest" and not os.path.exists(os.path.join(directory, name)):
        has = ", ".join(checkpoint.available(directory)) or "none"
        raise ConfigError(f"--checkpoint {which}: {run_dir!r} has no {name}; it has: {has}")
    return name
