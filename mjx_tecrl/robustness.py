"""Robustness study: every policy of the given runs on a grid of perturbed physics and noise, in one program.

    python -m mjx_tecrl.robustness RUN_DIR [RUN_DIR...] --perturb mass=0.5,1,1.5 --perturb friction=0.5,1,2

The grid is the product of the `--perturb` axes (or each axis alone with `--one-at-a-time`), plus the
unperturbed point. Each policy runs deterministically (`loop.evaluate_episodes`, the training-time evaluation)
for `--episodes` episodes at every grid point, all vmapped in one jitted program per run configuration, the
grid-point axis sharded over the local devices. Every grid point starts from the same episode keys (common
random numbers), so the unperturbed point reproduces `TrainFns.evaluate(learner, PRNGKey(--seed))` exactly
when `--episodes` equals the run's `num_eval_envs`. Perturbations: `mjx_tecrl.envs.perturb`.

Writes robustness.csv (one row per policy and grid point), episodes.npz (every episode's return, length and
whether it fell), study.json, summary.txt and the plots, and prints the summary (relative to the unperturbed
return).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from mjx_tecrl import commands
from mjx_tecrl.config import ConfigError
from mjx_tecrl.envs.perturb import DEFAULT_PUSH_EVERY, NAMES, NEUTRAL, magnitude_error

PROG = "python -m mjx_tecrl.robustness"
BASELINE = "none"  # the perturbation label of the unperturbed point
CSV_NAME = "robustness.csv"
CSV_STATS = ("episodes", "mean_return", "std_return", "mean_length", "fall_rate")


def fail(message: str) -> NoReturn:
    commands.fail(PROG, message)


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
            points += [GridPoint(axis.name, _fmt(v), {axis.name: v}) for v in axis.values]
    else:
        label = ";".join(a.name for a in axes)
        for combo in itertools.product(*(a.values for a in axes)):
            values = {a.name: v for a, v in zip(axes, combo, strict=True)}
            points.append(GridPoint(label, ";".join(_fmt(v) for v in combo), values))
    return points


def _fmt(v: float) -> str:
    return f"{v:g}"


# --- the jitted evaluation -----------------------------------------------------------------------------------
def policy_view(learner: Any) -> Any:
    """The learner state with only what the deterministic policy reads (actor and normaliser), so that runs
    of different algorithms but the same networks share one compiled program."""
    keep = ("actor_params", "obs_normalizer")
    return learner.replace(**{f: None for f in learner.__dataclass_fields__ if f not in keep})


def make_program(penv: Any, deterministic_action: Any, episode_length: int):
    """jit(f(learner, keys [B, 2], perturbation [B]) -> (return [B], length [B], fell [B]))."""
    import jax

    from mjx_tecrl.loop import evaluate_episodes

    def program(learner, keys, perturbation):
        sim = jax.vmap(penv.reset_with)(keys, perturbation)
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


def run_study(
    runs: list, axes: list[Axis], args: argparse.Namespace, log=print
) -> tuple[list[dict], dict[str, np.ndarray], dict]:
    """Evaluate every member of every run (`policy.LoadedRun`) on the grid.

    Returns (csv rows, per-episode arrays [policies, grid points, episodes] of return/length/fell, timings).
    """
    from mjx_tecrl.envs.perturb import PerturbedEnv

    points = grid(axes, args.one_at_a_time)
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
            penv = PerturbedEnv(nominal, max_delay=max_delay, push_every=args.push_every)
            program = make_program(penv, run.fns.learner.deterministic_action, run.config.episode_length)
            ev = Evaluator(program, points, args.episodes, args.seed, max(1, args.max_envs // args.episodes))
            seconds = ev.compile(policy_view(run.members[0].learner))
            compile_s += seconds
            log(
                f"compiled the study program for {run.config.env} in {seconds:.1f}s: {len(points)} grid "
                f"points x {args.episodes} episodes, {ev.envs_per_call} envs per call, {ev.num_calls} call(s)"
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
                    "episodes": args.episodes,
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


# --- summary and plots ---------------------------------------------------------------------------------------
def _by_algo(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows per algorithm; policies trained with domain randomisation form their own group ("sac+dr", or
    "sac+dr(mass=...)" when one algorithm was trained with several randomisation ranges), and so do
    policies whose hyperparameters differ ("dsac-e rho=0.5": a sweep's grid points, over their seeds)."""
    ranges: dict[str, set[str]] = {}
    for r in rows:
        if r["randomize"]:
            ranges.setdefault(r["algo"], set()).add(r["randomize"])
    out: dict[str, list[dict]] = {}
    for r in rows:
        label = r["algo"]
        if r["randomize"]:
            label += "+dr" if len(ranges[r["algo"]]) == 1 else f"+dr({r['randomize']})"
        if r.get("hyperparams"):
            label += f" {r['hyperparams']}"
        out.setdefault(label, []).append(r)
    return out


def _member_means(rows: list[dict], perturbation: str, magnitude: str) -> np.ndarray:
    """Mean returns of the members (one per policy) at one grid point."""
    at = [r for r in rows if r["perturbation"] == perturbation and r["magnitude"] == magnitude]
    return np.array([r["mean_return"] for r in at])


def _relative(value: float, base: float) -> float:
    """Return change relative to the unperturbed return, in percent of its magnitude."""
    return 100.0 * (value - base) / max(abs(base), 1e-8)


def summary(rows: list[dict], points: list[GridPoint]) -> str:
    """Per algo and perturbation: the mean return over policies, relative to the unperturbed one."""
    lines = []
    labels = list(dict.fromkeys(p.perturbation for p in points if p.perturbation != BASELINE))
    by_algo = _by_algo(rows)
    w = max(14, *(len(k) for k in by_algo))
    lines.append("unperturbed return (mean +- std over policies):")
    for algo, rs in by_algo.items():
        base = _member_means(rs, BASELINE, "")
        lines.append(f"  {algo:<{w}} {np.mean(base):10.1f} +- {np.std(base):.1f}  ({len(base)} policies)")
    for label in labels:
        mags = [p.magnitude for p in points if p.perturbation == label]
        if ";" in label:  # a product grid: one line per algo
            lines.append(f"{label} ({len(mags)} points), return change vs unperturbed:")
            for algo, rs in by_algo.items():
                base = float(np.mean(_member_means(rs, BASELINE, "")))
                rel = [_relative(float(np.mean(_member_means(rs, label, m))), base) for m in mags]
                worst = int(np.argmin(rel))
                lines.append(
                    f"  {algo:<{w}} mean {np.mean(rel):+6.1f}%  worst {rel[worst]:+6.1f}% at {label}={mags[worst]}"
                )
            continue
        lines.append(f"{label}: return change vs unperturbed (fall rate)")
        lines.append("  " + " " * w + "".join(f"{m:>17}" for m in mags))
        for algo, rs in by_algo.items():
            base = float(np.mean(_member_means(rs, BASELINE, "")))
            cells = []
            for m in mags:
                rel = _relative(float(np.mean(_member_means(rs, label, m))), base)
                fall = np.mean([r["fall_rate"] for r in rs if r["perturbation"] == label and r["magnitude"] == m])
                cells.append(f"{rel:+7.1f}% ({fall:4.2f})")
            lines.append(f"  {algo:<{w}}" + "".join(f"{c:>17}" for c in cells))
    return "\n".join(lines)


def confidence_band(values: np.ndarray, resamples: int = 2000) -> tuple[float, float, float]:
    """(mean, low, high): 95% percentile-bootstrap interval of the mean over policies (fixed resampling seed;
    it stays within the range of the data, which a t-interval over two seeds does not)."""
    values = np.asarray(values, np.float64)
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, mean, mean
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return mean, float(low), float(high)


UNITS = {
    **{n: f"{n} scale" for n in ("mass", "friction", "gain", "damping", "gravity")},
    "obs_noise": "observation noise std",
    "action_noise": "action noise std",
    "push": "push (m/s)",
    "delay": "action delay (control steps)",
}


def plot(rows: list[dict], points: list[GridPoint], axes: list[Axis], out_dir: str) -> list[str]:
    """Return against magnitude per algo with 95% bootstrap bands over policies; heat maps for two-axis grids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    written = []
    by_algo = _by_algo(rows)
    single = [a for a in axes if any(p.perturbation == a.name for p in points)]
    if single:
        ncols = min(len(single), 4)
        nrows = -(-len(single) // ncols)
        fig, axs = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
        for ax in axs.flat[len(single) :]:
            ax.set_visible(False)
        for ax, axis in zip(axs.flat, single, strict=False):
            at = [(float(p.magnitude), p.perturbation, p.magnitude) for p in points if p.perturbation == axis.name]
            if NEUTRAL[axis.name] not in axis.values:  # the unperturbed point belongs on every line
                at.append((NEUTRAL[axis.name], BASELINE, ""))
            at.sort()
            x = [a[0] for a in at]
            for algo, rs in by_algo.items():
                stats = np.array([confidence_band(_member_means(rs, label, m)) for _, label, m in at])
                (line,) = ax.plot(x, stats[:, 0], marker="o", label=algo)
                ax.fill_between(x, stats[:, 1], stats[:, 2], color=line.get_color(), alpha=0.2)
            ax.axvline(NEUTRAL[axis.name], color="0.6", lw=0.8, ls="--")
            if min(x) > 0 and max(x) / min(x) >= 8:  # scales spanning orders of magnitude
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                ax.set_xticks(x, [_fmt(v) for v in x], rotation=45 if len(x) > 5 else 0)
            ax.set_xlabel(UNITS[axis.name])
            ax.set_ylabel("episode return")
        axs.flat[0].legend(fontsize=8)
        fig.suptitle("mean return over policies, 95% bootstrap band", fontsize=9)
        fig.tight_layout()
        path = os.path.join(out_dir, "return_vs_magnitude.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if len(axes) == 2 and not any(p.perturbation in (axes[0].name, axes[1].name) for p in points):
        a0, a1 = axes
        label = f"{a0.name};{a1.name}"
        algos = list(by_algo)
        fig, axs = plt.subplots(1, len(algos), figsize=(4.2 * len(algos), 3.6), squeeze=False, layout="constrained")
        vmin = min(r["mean_return"] for r in rows)
        vmax = max(r["mean_return"] for r in rows)
        for ax, algo in zip(axs[0], algos, strict=True):
            z = np.array(
                [
                    [np.mean(_member_means(by_algo[algo], label, f"{_fmt(v0)};{_fmt(v1)}")) for v1 in a1.values]
                    for v0 in a0.values
                ]
            )
            im = ax.imshow(z, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="viridis")
            ax.set_xticks(range(len(a1.values)), [_fmt(v) for v in a1.values])
            ax.set_yticks(range(len(a0.values)), [_fmt(v) for v in a0.values])
            ax.set_xlabel(UNITS[a1.name])
            ax.set_ylabel(UNITS[a0.name])
            ax.set_title(algo)
            if z.size <= 64:
                for (i, j), v in np.ndenumerate(z):
                    light = (v - vmin) > 0.6 * (vmax - vmin)
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="k" if light else "w")
        fig.colorbar(im, ax=axs[0].tolist(), label="mean episode return")
        path = os.path.join(out_dir, "heatmap.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# --- the command line ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from mjx_tecrl.policy import add_checkpoint_flag

    p = commands.Parser(
        error_name=PROG,
        prog=PROG,
        description="Evaluate every policy of the given runs (every member of a sweep) on a grid of perturbed "
        "physics and noise, with the deterministic policy, in one jitted program per run configuration.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (train.py --out, or a sweep)")
    p.add_argument(
        "--perturb",
        action="append",
        required=True,
        metavar="NAME=V1,V2,...",
        help=f"one grid axis; NAME in {', '.join(NAMES)} (scales: 1 is unperturbed; noise, push, delay: 0)",
    )
    p.add_argument("--one-at-a-time", action="store_true", help="each axis alone instead of their product")
    p.add_argument("--episodes", type=int, default=32, metavar="N", help="episodes per policy and grid point")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="key of the episodes' initial states and noise")
    p.add_argument(
        "--max-envs", type=int, default=4096, metavar="N", help="environments simulated at once (memory bound)"
    )
    p.add_argument(
        "--push-every", type=int, default=DEFAULT_PUSH_EVERY, metavar="N", help="mean control steps between pushes"
    )
    p.add_argument("--out", default="", help="output directory (default RUN_DIR/robustness, or ./robustness-<time>)")
    add_checkpoint_flag(p)
    return p


def _out_dir(args: argparse.Namespace) -> str:
    if args.out:
        if os.path.exists(os.path.join(args.out, CSV_NAME)):
            raise ConfigError(f"--out {args.out!r} already holds a study ({CSV_NAME}); choose another --out")
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ConfigError(f"--out {args.out!r} exists and is not a directory")
        return args.out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if len(args.runs) == 1:
        out = os.path.join(args.runs[0], "robustness")
        return out if not os.path.exists(out) else f"{out}-{stamp}"
    return f"robustness-{stamp}"


def validate(args: argparse.Namespace) -> list[Axis]:
    """Everything checkable before loading: the grid, the sizes and the run directories' configs."""
    from mjx_tecrl.rundir import read_config

    axes = [parse_axis(t) for t in args.perturb]
    seen = [a.name for a in axes]
    dup = sorted({n for n in seen if seen.count(n) > 1})
    if dup:
        raise ConfigError(f"--perturb {dup[0]} is given twice; give each perturbation once with all its values")
    for flag, value, low in (("--episodes", args.episodes, 1), ("--max-envs", args.max_envs, 1),
                             ("--push-every", args.push_every, 1), ("--seed", args.seed, 0)):  # fmt: skip
        if value < low:
            raise ConfigError(f"{flag} {value} must be {'positive' if low else 'non-negative'}")
    envs = {}
    for run_dir in args.runs:
        if not os.path.isdir(run_dir):
            raise ConfigError(f"RUN_DIR {run_dir!r} does not exist")
        envs[run_dir] = read_config(run_dir).env
    if len(set(envs.values())) > 1:
        detail = ", ".join(f"{d}: {e}" for d, e in envs.items())
        raise ConfigError(f"the runs are on different envs ({detail}); study one env at a time")
    return axes


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        axes = validate(args)
        out_dir = _out_dir(args)
        from mjx_tecrl.policy import load_run

        runs = [load_run(d, which=args.checkpoint) for d in args.runs]
    except ConfigError as e:
        fail(str(e))
    from mjx_tecrl.envs.perturb import NotPerturbable, PerturbedEnv

    nominal = getattr(runs[0].fns.env, "nominal", runs[0].fns.env)
    try:
        perturbable = PerturbedEnv(nominal)
    except NotPerturbable as e:
        fail(f"--perturb: {runs[0].config.env}: {e}")
    if any(a.name == "push" for a in axes):
        if not perturbable.can_push:
            fail(f"--perturb push: {runs[0].config.env} has no root body that can move horizontally to push")
    points = grid(axes, args.one_at_a_time)
    n_policies = sum(len(r.members) for r in runs)
    print(
        f"{n_policies} policies from {len(runs)} run(s) on {runs[0].config.env}: {len(points)} grid points "
        f"x {args.episodes} episodes",
        flush=True,
    )
    rows, arrays, timing = run_study(runs, axes, args, log=lambda s: print(s, flush=True))
    os.makedirs(out_dir, exist_ok=True)
    write_csv(os.path.join(out_dir, CSV_NAME), rows, axes)
    np.savez_compressed(os.path.join(out_dir, "episodes.npz"), **arrays)
    plots = plot(rows, points, axes, out_dir)
    text = summary(rows, points)
    with open(os.path.join(out_dir, "summary.txt"), "w") as f:
        f.write(text + "\n")
    study = {
        "runs": args.runs,
        "axes": {a.name: list(a.values) for a in axes},
        "checkpoint": args.checkpoint,
        "one_at_a_time": args.one_at_a_time,
        "episodes": args.episodes,
        "seed": args.seed,
        "push_every": args.push_every,
        "policies": n_policies,
        **timing,
    }
    with open(os.path.join(out_dir, "study.json"), "w") as f:
        json.dump(study, f, indent=2)
    print(text)
    print(
        f"wrote {os.path.join(out_dir, CSV_NAME)} and {len(plots)} plot(s) in {out_dir} "
        f"({timing['wall_s']:.1f}s, of which compiling {timing['compile_s']:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
