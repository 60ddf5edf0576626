"""Configuration: static `Config` (shapes, branches, I/O) and traced `Hyperparams` (what a sweep varies).

Spec references are to `shared/spec/dsac_e.md`. Defaults are the spec's §2.8 / §3.4 values; per-task
presets (`mjx_tecrl.presets`) may depart from them where the spec's §8 says so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
from flax import struct


@dataclass(frozen=True)
class Variant:
    """An algorithm's switches, read once by `Learner` (a new variant is one entry in VARIANTS plus its test)."""

    name: str
    distributional: bool  # DSAC's Gaussian reward critic and its loss (§2.1, §2.3); False: SAC's scalar critics
    soft_reward: bool  # the entropy bonus in the reward critic's target (spec §2.2); False: rewards alone (§3.2)
    entropy_critic: bool  # an entropy critic Q_e (spec §3.2 PIS), which the actor's loss also reads
    trajectory_temperature: bool  # alpha tuned to the trajectory budget (spec §3.2 TUP); False: per step (§2.5)


VARIANTS = {
    v.name: v
    for v in (  # name, distributional, soft_reward, entropy_critic, trajectory_temperature
        Variant("dsac-e", True, False, True, True),
        Variant("dsac-e-no-tec", True, False, True, False),  # the ablation: Q_e, but DSAC-T's per-step temperature
        Variant("dsac-t", True, True, False, False),
        Variant("sac", False, True, False, False),
    )
}
ALGOS = tuple(VARIANTS)
CRITIC_LOSSES = ("nll", "huber")
BUDGET_HORIZONS = ("discounted", "lived")
PHYSICS = ("faithful", "fast")  # mjx_tecrl.envs.gym_base.PHYSICS
MATMUL_DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
    """A user-facing configuration error; its message is one line naming the value and what is allowed."""


def _f(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


def _h(default: float, help: str) -> Any:
    """A traced hyperparameter: a float a sweep may vary (`Hyperparams`, `--sweep`), the same program for all."""
    return _f(default, help, traced=True)


@dataclass(frozen=True)
class Config:
    """Every knob of a training run. Each field is a `train.py` flag (underscores become dashes)."""

    # --- what to train ---
    env: str = _f("inverted_pendulum", "task name from the registry (see --list-envs)")
    physics: str = _f(
        "faithful",
        "solver settings of a Gymnasium task: faithful (the model file's; train on this) or fast (one solver "
        "iteration: a different task where contacts matter, not learnable on halfcheetah; for speed tests only)",
    )
    algo: str = _f("dsac-e", "one of " + ", ".join(ALGOS))
    seed: int = _f(0, "random seed")
    # --- sizes (static: they set shapes) ---
    num_envs: int = _f(32, "parallel environments stepped each iteration")
    total_steps: int = _f(30_000, "environment steps to train for (all environments together)")
    learning_starts: int = _f(10_000, "environment steps of uniform random actions before learning")
    updates_per_step: float = _f(
        0.05,
        "gradient updates per environment step, all envs counted (the replay ratio); each iteration of "
        "num_envs steps runs num_envs * this, rounded to a multiple of --policy-delay (spec 2.7: 1 per 20)",
    )
    batch_size: int = _f(256, "replay batch size per update")
    n_step: int = _f(
        1,
        "steps of reward (and entropy) summed before the critics bootstrap; a termination inside stops the sum "
        "without bootstrap, a time-limit cut bootstraps from its true final observation",
    )
    buffer_size: int = _f(1_000_000, "replay capacity in transitions (rounded up to a multiple of num_envs)")
    buffer_per_env: int = _f(
        0, "replay capacity per environment: capacity = this x num_envs, in place of --buffer-size (0: off)"
    )
    hidden_sizes: tuple[int, ...] = _f((256, 256, 256), "hidden layer widths of actor and critics")
    policy_delay: int = _f(2, "actor, temperature and target updates every this many updates (spec 2.6)")
    episode_length: int = _f(1000, "time limit in env steps; reaching it truncates (bootstrapped)")
    normalize_obs: bool = _f(False, "running observation normalisation (statistics are checkpointed)")
    critic_layer_norm: bool = _f(
        False, "LayerNorm before each hidden activation of the reward and entropy critics (not in the spec)"
    )
    actor_layer_norm: bool = _f(False, "LayerNorm before each hidden activation of the actor (not in the spec)")
    matmul_dtype: str = _f(
        "float32",
        "dtype of the networks' matmuls: float32 or bfloat16 (parameters, optimiser, losses and replay stay float32)",
    )
    critic_loss: str = _f("nll", "reward critic loss: nll (2023 DSAC-T form) or huber (2025 variant)")
    twin_entropy_critic: bool = _f(False, "min over two entropy critics (spec A3; default off)")
    entropy_baseline: bool = _f(
        False,
        "dsac-e, lived budget: the entropy critic learns Q_e - D mean(-log pi), so Q_e follows a shift of the "
        "policy's entropy at once rather than over 1/(1-gamma) backups (not in the spec; docs/decisions.md)",
    )
    budget_horizon: str = _f(
        "discounted",
        "dsac-e's entropy budget: discounted (rho H0 / (1 - gamma), spec 3.2) or lived (rho H0 per discounted step "
        "the episode still lives, learnt by a second head of the entropy critic; the same without termination)",
    )
    randomize: str = _f(
        "",
        "domain randomisation: physics scales drawn per env at every reset, NAME=LOW:HIGH,... with NAME in "
        "mass, friction, gain, damping, gravity (e.g. mass=0.8:1.2,friction=0.5:1.5); empty: off",
    )
    # --- hyperparameters (traced: a sweep may vary them; `_h` marks them, HYPERPARAM_NAMES lists them) ---
    gamma: float = _h(0.99, "discount factor")
    tau: float = _h(0.005, "Polyak rate for targets and for the critic-std running mean")
    entropy_critic_tau: float = _h(
        0.005, "Polyak rate of the entropy critic's target (spec A8: the reward critic's by default)"
    )
    actor_lr: float = _h(1e-4, "actor learning rate (Adam)")
    critic_lr: float = _h(1e-4, "reward and entropy critic learning rate (Adam)")
    alpha_lr: float = _h(3e-4, "temperature (log alpha) learning rate (Adam)")
    rho: float = _h(1.0, "trajectory entropy budget scale: H_budget = rho * H0 / (1 - gamma)")
    init_log_alpha: float = _h(1.0, "initial log temperature")
    reward_scale: float = _h(1.0, "multiplier on rewards before learning")
    xi: float = _h(3.0, "DSAC-T clipping bound factor: b = xi * running mean of critic std")
    epsilon: float = _h(0.1, "DSAC-T bias keeping critic-loss denominators away from zero")
    weight_decay: float = _h(
        0.0, "decoupled weight decay (AdamW) of the actor and critics, times their learning rate; 0: Adam (spec)"
    )
    entropy_floor: float = _h(-1.0, "dsac-e: alpha also rises while -log pi is this many nats below rho*H0; <0: off")
    # --- evaluation and I/O (host side) ---
    eval_every: int = _f(
        5_000, "environment steps between evaluations (and chunk boundaries); unset: at least 25 iterations"
    )
    num_eval_envs: int = _f(10, "episodes per evaluation (deterministic policy)")
    checkpoint_every: int = _f(1, "save a checkpoint every this many evaluations (0: only at the end)")
    checkpoint_buffer: bool = _f(True, "include the replay buffer in checkpoints (exact resume)")
    checkpoint_buffer_every: int = _f(
        1,
        "write the replay buffer with every this many checkpoints, and the first and last (a resume between "
        "them goes on with the older buffer)",
    )
    keep_checkpoints: int = _f(1, "keep the newest this many checkpoints as checkpoints/step-<env steps>.ckpt "
                               "besides latest.ckpt (1: latest.ckpt alone)")  # fmt: skip
    out: str = _f("", "run directory (default runs/<env>-<algo>-s<seed>-<time>)")
    resume: str = _f("", "continue the run in this directory")
    preset: str = _f(
        "tuned",
        "per-task defaults: tuned (one update per env step; the default below 1024 envs), paper (the reference "
        "values) or parallel (a few large-batch updates per iteration, n-step, obs normalisation, buffer per env; "
        "the default from 1024 envs; docs/decisions.md, 'Learning at scale')",
    )
    progress: bool = _f(True, "progress bar on a terminal (plain lines otherwise)")
    track: bool = _f(False, "also log to Weights & Biases (pip install 'mjx_tecrl[wandb]'; WANDB_MODE=offline works)")
    wandb_project: str = _f("mjx_tecrl", "the Weights & Biases project of --track")

    def hyperparams(self) -> Hyperparams:
        """The traced hyperparameters of this config."""
        return Hyperparams(**{name: jnp.asarray(getattr(self, name), jnp.float32) for name in HYPERPARAM_NAMES})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        return cls(**cls.fields_of(d))

    @classmethod
    def fields_of(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Field values from a config.json-style dict (older runs' keys converted); unknown keys: ConfigError."""
        d = dict(d)
        if "updates_per_iter" in d:  # config.json of runs from before the replay ratio (updates per iteration)
            upi = d.pop("updates_per_iter")
            d.setdefault("updates_per_step", upi / d.get("num_envs", cls.num_envs))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}")
        if "hidden_sizes" in d:
            d["hidden_sizes"] = tuple(d["hidden_sizes"])  # TypeError for a value that is not a list
        return d

    @property
    def buffer_capacity(self) -> int:
        """Replay capacity, a multiple of num_envs so that one insert never wraps (`capacity_at`)."""
        return self.capacity_at(self.num_envs)

    def capacity_at(self, num_envs: int) -> int:
        """The capacity at `num_envs` envs: buffer_per_env rows each, else buffer_size rounded up to a multiple."""
        if self.buffer_per_env:
            return self.buffer_per_env * num_envs
        return -(-self.buffer_size // num_envs) * num_envs

    def buffer_flag(self, capacity: int | None = None) -> str:
        """The flag that sets the capacity, with its value for `capacity` rows (default: this config's)."""
        rows = self.buffer_capacity if capacity is None else capacity
        if self.buffer_per_env:
            return f"--buffer-per-env {rows // self.num_envs}"
        return f"--buffer-size {self.buffer_size if capacity is None else rows}"

    @property
    def updates_per_iter(self) -> int:
        """Gradient updates per iteration: num_envs * updates_per_step, to the nearest multiple of policy_delay
        (the delayed actor update is a static schedule of blocks); `validate` refuses a ratio that rounds to 0."""
        blocks = round(self.updates_per_step * self.num_envs / self.policy_delay)
        return max(blocks, 1) * self.policy_delay

    @property
    def variant(self) -> Variant:
        return VARIANTS[self.algo]


HYPERPARAM_NAMES = tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("traced"))

# Traced float hyperparameters, one jnp array per name in HYPERPARAM_NAMES (their one declaration is Config's `_h`
# fields); a sweep grid is the same class with a leading member axis.
Hyperparams = struct.dataclass(
    type("Hyperparams", (), {"__annotations__": dict.fromkeys(HYPERPARAM_NAMES, jnp.ndarray), "__module__": __name__})
)


def validate(config: Config, known_envs: tuple[str, ...] | None = None, device_count: int = 1) -> None:
    """Raise ConfigError with a one-line message for the first invalid value."""
    if known_envs is not None and config.env not in known_envs:
        raise ConfigError(f"--env {config.env!r} is unknown; known: {', '.join(known_envs)}")
    _check_choices(config)
    _check_integers(config)
    _check_sizes(config, device_count)
    _check_numbers(config)


POSITIVE_INTS = ("num_envs", "total_steps", "batch_size", "buffer_size", "n_step", "policy_delay", "episode_length",
                 "eval_every", "num_eval_envs", "checkpoint_buffer_every", "keep_checkpoints")  # fmt: skip
NON_NEGATIVE_INTS = ("learning_starts", "checkpoint_every", "seed", "buffer_per_env")
POSITIVE_FLOATS = ("actor_lr", "critic_lr", "alpha_lr", "rho", "reward_scale", "xi", "epsilon")


def _check_choices(c: Config) -> None:
    """The string flags: each one of its allowed values (--randomize: a range list)."""
    from mjx_tecrl.envs.registry import PRESETS

    choices = {"algo": ALGOS, "critic_loss": CRITIC_LOSSES, "budget_horizon": BUDGET_HORIZONS, "physics": PHYSICS,
               "matmul_dtype": MATMUL_DTYPES, "preset": PRESETS}  # fmt: skip
    for name, allowed in choices.items():
        if getattr(c, name) not in allowed:
            raise ConfigError(f"--{_flag(name)} {getattr(c, name)!r} is unknown; allowed: {', '.join(allowed)}")
    if c.entropy_baseline and not (c.variant.trajectory_temperature and c.budget_horizon == "lived"):
        raise ConfigError(f"--entropy-baseline needs the horizon head of --algo dsac-e --budget-horizon lived, "
                          f"not --algo {c.algo} --budget-horizon {c.budget_horizon}")  # fmt: skip
    if c.randomize:
        from mjx_tecrl.envs.perturb import parse_ranges

        try:
            parse_ranges(c.randomize)
        except ValueError as e:
            raise ConfigError(f"--randomize {c.randomize!r}: {e}") from None


def _check_integers(c: Config) -> None:
    for names, least, what in ((POSITIVE_INTS, 1, "a positive"), (NON_NEGATIVE_INTS, 0, "a non-negative")):
        for name in names:
            v = getattr(c, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                raise ConfigError(f"--{_flag(name)} {v!r} must be {what} integer")
    if not c.hidden_sizes or any(h <= 0 for h in c.hidden_sizes):
        raise ConfigError(f"--hidden-sizes {list(c.hidden_sizes)} must be one or more positive integers")


def _check_sizes(c: Config, device_count: int) -> None:
    """How the sizes fit together: envs over devices, updates per iteration, the replay buffer's capacity."""
    if c.num_envs % device_count:
        raise ConfigError(f"--num-envs {c.num_envs} is not divisible by the device count {device_count}")
    if c.batch_size > c.buffer_capacity:
        raise ConfigError(f"--batch-size {c.batch_size} is larger than the replay capacity {c.buffer_flag()}")
    ups = c.updates_per_step
    if not _finite_number(ups) or ups <= 0:
        raise ConfigError(f"--updates-per-step {ups!r} must be a positive number")
    if ups * c.num_envs < c.policy_delay / 2:
        raise ConfigError(
            f"--updates-per-step {ups:g} at --num-envs {c.num_envs} is {ups * c.num_envs:g} updates per iteration; "
            f"at least {c.policy_delay / (2 * c.num_envs):g} is needed for one block of --policy-delay "
            f"{c.policy_delay} updates per iteration"
        )
    if c.learning_starts >= c.total_steps:
        raise ConfigError(
            f"--total-steps {c.total_steps} must exceed --learning-starts {c.learning_starts} "
            "(the random-action warm-up)"
        )
    if c.n_step * c.num_envs > c.buffer_capacity:
        raise ConfigError(
            f"--n-step {c.n_step} needs {c.n_step} inserts of --num-envs {c.num_envs} rows in the buffer; "
            f"{c.buffer_flag()} holds {c.buffer_capacity // c.num_envs}"
        )
    if max(c.learning_starts, c.batch_size) > c.buffer_capacity:
        raise ConfigError(
            f"--learning-starts {c.learning_starts} exceeds the buffer capacity {c.buffer_capacity} ({c.buffer_flag()})"
        )


def _check_numbers(c: Config) -> None:
    """The traced hyperparameters: finite, and each in its range."""
    for name in HYPERPARAM_NAMES:
        if not _finite_number(getattr(c, name)):
            raise ConfigError(f"--{_flag(name)} {getattr(c, name)!r} must be a finite number")
    if c.weight_decay < 0:
        raise ConfigError(f"--weight-decay {c.weight_decay} must be non-negative")
    if not 0.0 < c.gamma < 1.0:
        raise ConfigError(f"--gamma {c.gamma} must lie in (0, 1)")
    for name in ("tau", "entropy_critic_tau"):
        if not 0.0 < getattr(c, name) <= 1.0:
            raise ConfigError(f"--{_flag(name)} {getattr(c, name)} must lie in (0, 1]")
    for name in POSITIVE_FLOATS:
        if getattr(c, name) <= 0:
            raise ConfigError(f"--{_flag(name)} {getattr(c, name)} must be positive")


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def make_config(**overrides: Any) -> Config:
    """Config from the spec defaults, then the task's preset, then `overrides` (flags win).

    The preset is chosen by `overrides["preset"]` ("tuned" by default, or "paper") for `overrides["env"]`.
    """
    from mjx_tecrl.envs import registry

    base = Config()
    env = overrides.get("env", base.env)
    try:
        task = registry.spec(env)  # a user's package.module:factory is imported here (EnvFactoryError)
    except registry.UnknownEnvError as e:
        raise ConfigError(
            f"--env {env!r} is unknown; known: {', '.join(registry.bare_names())}, or package.module:factory"
        ) from e
    num_envs = overrides.get("num_envs", task.tuned.get("num_envs", base.num_envs))
    preset = overrides.get("preset", default_preset(num_envs))
    if preset not in registry.PRESETS:  # before the preset's values are looked up
        raise ConfigError(f"--preset {preset!r} is unknown; allowed: {', '.join(registry.PRESETS)}")
    preset_values = task.preset(preset, num_envs) if isinstance(num_envs, int) else task.tuned
    config = dataclasses.replace(base, **{**preset_values, **overrides, "preset": preset})
    if task.kind != "gymnasium" and config.physics != "faithful":
        raise ConfigError(f"--physics {config.physics!r} applies to the Gymnasium tasks only, not {env}")
    if "eval_every" not in overrides and "eval_every" not in preset_values:
        # Thousands of envs would otherwise evaluate after every iteration: keep chunks at least
        # EVAL_MIN_ITERS iterations long unless the user asked for a chunk length.
        config = dataclasses.replace(config, eval_every=max(config.eval_every, EVAL_MIN_ITERS * config.num_envs))
    return config


EVAL_MIN_ITERS = 25


def default_preset(num_envs: Any) -> str:
    """`parallel` from `registry.PARALLEL_MIN_ENVS` envs, else `tuned` (when --preset is not given)."""
    from mjx_tecrl.envs import registry

    big = isinstance(num_envs, int) and not isinstance(num_envs, bool) and num_envs >= registry.PARALLEL_MIN_ENVS
    return "parallel" if big else "tuned"
