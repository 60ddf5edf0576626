"""Robustness study: every policy of the given runs on a grid of perturbed physics and noise, in one program.

    python -m mjx_tecrl.robustness RUN_DIR [RUN_DIR...] --perturb mass=0.5,1,1.5 --perturb friction=0.5,1,2

(the command line: `mjx_tecrl.robustness`; from Python: `run_study(runs, axes, Settings(...))`).

The grid is the product of the axes (or each axis alone, `one_at_a_time`), plus the
unperturbed point. Each policy runs deterministically (`episodes.evaluate_episodes`, the training-time evaluation)
for `episodes` episodes at every grid point, all vmapped in one jitted program per run configuration, the
grid-point axis sharded over the local devices. Every grid point starts from the same episode keys (common
random numbers), so the unperturbed point reproduces `TrainFns.evaluate(learner, PRNGKey(seed))` exactly
when `episodes` equals the run's `num_eval_envs`. Perturbations: `mjx_tecrl.envs.perturb`.

Writes robustness.csv (one row per policy and grid point), episodes.npz (every episode's return, length and
whether it fell), study.json, summary.txt and the plots, and prints the summary (relative to the unperturbed
return).
"""

from __future__ import annotations

import csv
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mjx_tecrl.config import ConfigError
from mjx_tecrl.envs.perturb import DEFAULT_PUSH_EVERY, NAMES, NEUTRAL, magnitude_error
from mjx_tecrl.episodes import policy_view

BASELINE = "none"  # the perturbation label of the unperturbed point
CSV_NAME = "robustness.csv"
CSV_STATS = ("episodes", "mean_return", "std_return", "mean_length", "fall_rate")


# --- the grid ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class GridPoint:
    perturbation: str  # "none", "mass", or "mass;friction" for a product point
    magnitude: str  # "", "0.5", or "0.5;2"
    values: dict[str, float]  # the magnitudes that differ from the axis' neutral value (all axes named)


def parse_axis(text: str) -> Axis:
    """'mass=0.5,1,1.5' -> Axis; ConfigError (one line) otherwise."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep:
        raise ConfigError(f"--perturb {text!r} is not NAME=V1,V2,... with NAME one of {', '.join(NAMES)}")
    if name not in NAMES:
        raise ConfigError(f"--perturb {text!r}: unknown perturbation {name!r}; known: {', '.join(NAMES)}")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"--perturb {text!r}: no values (give NAME=V1,V2,...)")
    out = []
    for item in items:
        try:
            v = float(item)
        except ValueError:
            raise ConfigError(f"--perturb {text!r}: {item!r} is not a number") from None
        err = magnitude_error(name, v)
        if err:
            raise ConfigError(f"--perturb {text!r}: {err}")
        out.append(v)
    return Axis(name, tuple(dict.fromkeys(out)))


def grid(axes: list[Axis], one_at_a_time: bool) -> list[GridPoint]:
    """The unperturbed point, then each axis alone (`one_at_a_time` or a single axis) or their product."""
    points = [GridPoint(BASELINE, "", {})]
    if one_at_a_time or len(axes) == 1:
        for axis in axes:
            points += [GridPoint(axis.name, fmt(v), {axis.name: v}) for v in axis.values]
    else:
        label = ";".join(a.name for a in axes)
        for combo in itertools.product(*(a.values for a in axes)):
            values = {a.name: v for a, v in zip(axes, combo, strict=True)}
            points.append(GridPoint(label, ";".join(fmt(v) for v in combo), values))
    return points


def fmt(v: float) -> str:
    """A magnitude as the grid labels write it."""
    return f"{v:g}"


# --- the jitted evaluation --------------------------------------------------------------------------------------------
def make_program(penv: Any, deterministic_action: Any, episode_length: int):
    """jit(f(learner, keys [B, 2], perturbation [B]) -> (return [B], length [B], fell [B]))."""
    import jax

    from mjx_tecrl import rollout
    from mjx_tecrl.episodes import evaluate_episodes

    def program(learner, keys, perturbation):
        sim = rollout.vmap_envs(penv.reset_with, keys, perturbation)
        ret, length, fell, _ = evaluate_episodes(
            penv, lambda obs, _: deterministic_action(learner, obs), sim, episode_length
        )
        return ret, length, fell  # a diverged episode counts as a fall

    return jax.jit(program)


@dataclass
class Evaluator:
    """Runs one compiled program over the grid, `points_per_call` grid points at a time (static shapes: the
    last slice is padded with unperturbed points), the grid-point axis sharded over the local devices."""

    program: Any
    points: list[GridPoint]
    episodes: int
    seed: int
    points_per_call: int

    def __post_init__(self):
        import jax
        import jax.numpy as jnp

        from mjx_tecrl.envs.perturb import Perturbation

        devices = jax.local_devices()
        ndev = len(devices)
        g = len(self.points)
        calls = -(-g // max(1, self.points_per_call))
        per_call = -(-g // calls)  # the fewest calls, spread evenly (least padding)
        self.per_call = -(-per_call // ndev) * ndev  # whole grid points on each device
        self.num_calls = -(-g // self.per_call)
        padded = self.points + [GridPoint(BASELINE, "", {})] * (self.num_calls * self.per_call - g)
        episode_keys = jax.random.split(jax.random.PRNGKey(self.seed), self.episodes)
        self.sharding = self.replicated = None
        if ndev > 1:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            mesh = Mesh(np.array(devices), ("grid",))
            self.sharding = NamedSharding(mesh, PartitionSpec("grid"))
            self.replicated = NamedSharding(mesh, PartitionSpec())
        self.calls = []
        for c in range(self.num_calls):
            chunk = padded[c * self.per_call : (c + 1) * self.per_call]
            values = {
                name: np.repeat(np.array([p.values.get(name, NEUTRAL[name]) for p in chunk]), self.episodes)
                for name in NAMES
            }
            pert = Perturbation.make((len(chunk) * self.episodes,), **values)
            keys = jnp.tile(episode_keys, (len(chunk), 1))
            if self.sharding is not None:
                pert, keys = jax.device_put((pert, keys), self.sharding)
            self.calls.append((keys, pert))

    @property
    def envs_per_call(self) -> int:
        return self.per_call * self.episodes

    def place(self, learner: Any) -> Any:
        """The policy's arrays where the program wants them (replicated over the mesh when there is one)."""
        import jax

        return jax.device_put(learner, self.replicated) if self.replicated is not None else learner

    def compile(self, learner: Any) -> float:
        """Compile ahead of time (so that the study reports compile time apart); returns the seconds taken."""
        t = time.time()
        self.program = self.program.lower(self.place(learner), *self.calls[0]).compile()
        return time.time() - t

    def __call__(self, learner: Any) -> dict[str, np.ndarray]:
        """Per-episode [grid points, episodes] return, length and fell for one policy."""
        learner = self.place(learner)
        outs = [self.program(learner, keys, pert) for keys, pert in self.calls]
        g, e = len(self.points), self.episodes
        ret, length, fell = (np.concatenate([np.asarray(o[i]) for o in outs])[: g * e].reshape(g, e) for i in range(3))
        return {"return": ret, "length": length, "fell": fell}


# --- the study -----------------------------------------------------------------------------------------------
def _program_key(config) -> tuple:
    """What the compiled program depends on besides the learner's arrays (each run is evaluated on its own
    physics settings: `--physics fast` and `faithful` runs of one task get programs of their own)."""
    return (config.env, config.physics, config.episode_length, tuple(config.hidden_sizes), config.normalize_obs)


@dataclass(frozen=True)
class Settings:
    """How the grid is walked: each axis alone or their product, episodes per policy and point, the episodes'
    key, the environments simulated at once (memory bound) and the mean control steps between pushes."""

    one_at_a_time: bool = False
    episodes: int = 32
    seed: int = 0
    max_envs: int = 4096
    push_every: int = DEFAULT_PUSH_EVERY


def run_study(
    runs: list, axes: list[Axis], settings: Settings, log=print
) -> tuple[list[dict], dict[str, np.ndarray], dict]:
    """Evaluate every member of every run (`policy.LoadedRun`) on the grid.

    Returns (csv rows, per-episode arrays [policies, grid points, episodes] of return/length/fell, timings).
    """
    from mjx_tecrl.envs.perturb import PerturbedEnv

    points = grid(axes, settings.one_at_a_time)
    max_delay = int(max((v for a in axes if a.name == "delay" for v in a.values), default=0))
    # Traced hyperparameters that differ between the policies (a sweep's axes): part of each policy's group.
    members = [m for run in runs for m in run.members]
    varying = [n for n in sorted(members[0].hyperparams) if len({m.hyperparams[n] for m in members}) > 1]
    rows: list[dict] = []
    per_episode: dict[str, list] = {"return": [], "length": [], "fell": [], "run": [], "member": []}
    evaluators: dict[tuple, Evaluator] = {}
    t0 = time.time()
    compile_s = 0.0
    for run in runs:
        key = _program_key(run.config)
        if key not in evaluators:
            nominal = getattr(run.fns.env, "nominal", run.fns.env)
            penv = PerturbedEnv(nominal, max_delay=max_delay, push_every=settings.push_every)
            program = make_program(penv, run.fns.learner.deterministic_action, run.config.episode_length)
            ev = Evaluator(
                program, points, settings.episodes, settings.seed, max(1, settings.max_envs // settings.episodes)
            )
            seconds = ev.compile(policy_view(run.members[0].learner))
            compile_s += seconds
            log(
                f"compiled the study program for {run.config.env} in {seconds:.1f}s: {len(points)} grid "
                f"points x {settings.episodes} episodes, {ev.envs_per_call} envs per call, {ev.num_calls} call(s)"
            )
            evaluators[key] = ev
        ev = evaluators[key]
        for member in run.members:
            res = ev(policy_view(member.learner))
            for k in ("return", "length", "fell"):
                per_episode[k].append(res[k])
            per_episode["run"].append(run.run_dir)
            per_episode["member"].append(member.index)
            for i, p in enumerate(points):
                ret = res["return"][i]
                row = {
                    "run": run.run_dir,
                    "member": member.index,
                    "env": run.config.env,
                    "algo": run.config.algo,
                    "randomize": run.config.randomize,
                    "seed": member.seed,
                    "hyperparams": ",".join(f"{n}={member.hyperparams[n]:g}" for n in varying),
                    "perturbation": p.perturbation,
                    "magnitude": p.magnitude,
                    **{a.name: p.values.get(a.name, NEUTRAL[a.name]) for a in axes},
                    "episodes": settings.episodes,
                    "mean_return": float(np.mean(ret)),
                    "std_return": float(np.std(ret)),
                    "mean_length": float(np.mean(res["length"][i])),
                    "fall_rate": float(np.mean(res["fell"][i])),
                }
                rows.append(row)
            log(f"  {run.run_dir} member {member.index} ({run.config.algo}, seed {member.seed}) done")
    wall = time.time() - t0
    arrays = {k: np.stack(v) if k in ("return", "length", "fell") else np.array(v) for k, v in per_episode.items()}
    arrays["perturbation"] = np.array([p.perturbation for p in points])
    arrays["magnitude"] = np.array([p.magnitude for p in points])
    return rows, arrays, {"wall_s": wall, "compile_s": compile_s, "grid_points": len(points)}


def write_csv(path: str, rows: list[dict], axes: list[Axis]) -> None:
    fields = ["run", "member", "env", "algo", "randomize", "seed", "hyperparams", "perturbation", "magnitude"]
    fields += [*(a.name for a in axes), *CSV_STATS]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)
