"""A run directory's layout, its one owner (train.py --out writes it; evaluate, export, render, robustness, plot and
--resume read it):

  config.json         the resolved `Config` (for a sweep: the base config of every member); its presence is what
                      marks a directory as holding a run
  sweep.json          sweeps only: {"members": [{"member", "seed", "hyperparams": {...}}, ...], ...}
  metrics.csv         a single run's metrics (a sweep: members/mNNN/metrics.csv, with summary.json and events)
  checkpoints/        the checkpoint files (their own layout: mjx_tecrl/checkpoint.py)

and the plan of a run in it (`prepare`: a new run's directory, or the one `--resume` continues, with its config
and sweep checked), and the lock a live run holds on it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import jax

from mjx_tecrl import checkpoint
from mjx_tecrl import sweep as sweep_lib
from mjx_tecrl.config import HYPERPARAM_NAMES, Config, ConfigError, make_config, validate
from mjx_tecrl.logging import write_json
from mjx_tecrl.sweep import SweepSpec

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
    """A member's traced hyperparameters (a sweep.json entry), the config's value where it is not swept."""
    swept = member.get("hyperparams", {})
    return {n: float(swept.get(n, getattr(config, n))) for n in HYPERPARAM_NAMES}


def run_members(config: Config, sweep: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The population of a run: sweep.json's members, or a single run's one member (its seed, the config's
    hyperparameters)."""
    return list(sweep["members"]) if sweep is not None else [{"member": 0, "seed": config.seed}]


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


# Flags that may differ from the saved config when resuming; anything else must match.
RESUMABLE_OVERRIDES = ("total_steps", "progress", "checkpoint_every", "checkpoint_buffer", "checkpoint_buffer_every",
                       "keep_checkpoints", "resume", "out", "track",
                       "wandb_project")  # fmt: skip


@dataclass(frozen=True)
class RunPlan:
    config: Config
    run_dir: str
    resume: bool  # continue the run already in run_dir (its config.json and sweep.json are kept)
    sweep: SweepSpec | None = None  # None: a single run
    members: tuple[dict[str, Any], ...] = ()  # the population (`run_members`): member, seed, hyperparams
    restart: bool = False  # resume of a run stopped before its first checkpoint: start it over from env step 0

    @property
    def is_sweep(self) -> bool:
        return self.sweep is not None


def prepare(overrides: dict[str, Any], sweep: SweepSpec | None = None) -> RunPlan:
    """Resolve flags into a validated config and run directory. Raises ConfigError; writes nothing.

    `sweep`: the grid of `--sweep`/`--seeds` (see `mjx_tecrl.sweep.parse_sweep`), None for a single run.
    """
    resume_dir = overrides.get("resume") or ""
    if resume_dir:
        return _prepare_resume(overrides, sweep, resume_dir)

    config = make_config(**overrides)
    _validate(config, len(sweep.members(config.seed)) if sweep is not None else 1)
    members = tuple(sweep_lib.check_members(config, sweep) if sweep is not None else run_members(config, None))
    _check_member_devices(len(members), sweep is not None)
    tag = "sweep" if sweep is not None else f"s{config.seed}"
    run_dir = config.out or os.path.join("runs", f"{config.env}-{config.algo}-{tag}-{time.strftime('%Y%m%d-%H%M%S')}")
    if holds_run(run_dir):
        raise ConfigError(
            f"--out {run_dir!r} already holds a run; continue it with --resume {run_dir} (which starts it over "
            "if it stopped before its first checkpoint), or choose another --out"
        )
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ConfigError(f"--out {run_dir!r} exists and is not a directory")
    return RunPlan(dataclasses.replace(config, out=run_dir), run_dir, False, sweep, members)


def _prepare_resume(overrides: dict[str, Any], sweep: SweepSpec | None, resume_dir: str) -> RunPlan:
    where = f"--resume {resume_dir!r}"
    saved = read_config(resume_dir, where)
    ckpt_dir = checkpoints_dir(resume_dir)
    # No checkpoint yet: the run was stopped before its first one, so it starts over. A checkpoint that is
    # there but unreadable is refused (starting over would overwrite what may be recoverable).
    restart = not os.path.exists(os.path.join(ckpt_dir, checkpoint.LATEST))
    if not restart:
        try:
            checkpoint.load_meta(ckpt_dir)
        except checkpoint.CheckpointError as e:
            raise ConfigError(f"{where}: {e}") from None
    for name, value in overrides.items():
        if name not in RESUMABLE_OVERRIDES and getattr(saved, name) != value:
            raise ConfigError(
                f"--{name.replace('_', '-')} {value!r} differs from the resumed run's "
                f"{getattr(saved, name)!r}; only {', '.join(RESUMABLE_OVERRIDES[:4])} may change"
            )
    out = overrides.get("out") or resume_dir
    if os.path.abspath(out) != os.path.abspath(resume_dir):
        raise ConfigError(f"--out {out!r} differs from --resume {resume_dir!r}")
    saved_sweep = read_sweep(resume_dir)
    saved_spec = SweepSpec.from_dict(saved_sweep) if saved_sweep is not None else None
    if sweep is not None and sweep != saved_spec:
        raise ConfigError(
            f"--sweep/--seeds differ from the resumed run's grid; leave them out to resume {resume_dir!r}"
        )
    allowed = {k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES}
    config = dataclasses.replace(saved, **{**allowed, "out": resume_dir, "resume": resume_dir})
    members = tuple(run_members(config, saved_sweep))
    _validate(config, len(members))
    _check_member_devices(len(members), saved_sweep is not None)
    return RunPlan(config, resume_dir, True, saved_spec, members, restart=restart)


def _check_member_devices(n_members: int, is_sweep: bool) -> None:
    """Across several processes every device must hold the same number of sweep members."""
    n_dev = jax.device_count()
    if jax.process_count() > 1 and not is_sweep:
        raise ConfigError(
            f"--num-processes {jax.process_count()} splits the members of a sweep over the processes; "
            "give --sweep and/or --seeds (a single run uses the devices of one process)"
        )
    if jax.process_count() > 1 and n_members % n_dev:
        raise ConfigError(
            f"--sweep/--seeds give {n_members} members, which do not split evenly over the {n_dev} devices "
            f"of {jax.process_count()} processes; use a multiple of {n_dev}"
        )


def _validate(config: Config, n_members: int = 1) -> None:
    from mjx_tecrl.envs import registry
    from mjx_tecrl.population import mesh_shape

    # each member's environments are split over the devices its members do not take (`population.mesh_shape`)
    validate(config, known_envs=registry.list_envs(), device_count=mesh_shape(n_members)[1])
    if config.track and importlib.util.find_spec("wandb") is None:
        raise ConfigError("--track needs Weights & Biases: pip install 'mjx_tecrl[wandb]'")


def lock(run_dir: str) -> int:
    """An exclusive flock on the run directory itself (no file added to it), held until its descriptor is closed;
    the kernel drops it when the process dies, so a killed run leaves nothing behind. ConfigError when another
    process holds it."""
    import fcntl

    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"{run_dir!r} is being trained by another process (it holds the directory's lock); wait for it to end "
            "or stop it, or use another --out"
        ) from None
    return fd


def create(plan: RunPlan) -> int:
    """Make the plan's directory and take its lock (`lock`, returned), then for a new run write sweep.json and
    config.json, in that order: a config.json is what marks the directory as holding a run."""
    os.makedirs(plan.run_dir, exist_ok=True)
    fd = lock(plan.run_dir)  # before anything in it is read or written
    if plan.resume:
        return fd
    try:
        if plan.is_sweep:
            write_json(os.path.join(plan.run_dir, SWEEP_FILE), {**plan.sweep.to_dict(), "members": list(plan.members)})
        write_json(os.path.join(plan.run_dir, CONFIG_FILE), plan.config.to_dict())
    except BaseException:
        os.close(fd)
        raise
    return fd
