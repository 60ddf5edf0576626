"""Learning curves of runs and sweeps: `python -m mjx_tecrl.plot RUN_DIR [RUN_DIR...] --out curves.png`.

Each curve is one trained policy: a single run directory, or one member of a sweep directory (its
`members/mNNN/metrics.csv`). Curves are grouped (by algo, or `--group-by rho`, ...) and each group is
drawn as the mean across its seeds with a shaded 95% percentile-bootstrap interval of that mean (the
interval of `mjx_tecrl.sweep`'s table and sweep.png: within the seeds' range, narrow with few seeds).
The second row shows what DSAC-E controls (spec §3.2, §8 metric names): the trajectory entropy
-log pi + Q_e against the budget H_budget = rho * H0 / (1 - gamma), the temperature alpha, the policy
entropy -log pi and Q_e.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from mjx_tecrl import commands, rundir
from mjx_tecrl.config import HYPERPARAM_NAMES, ConfigError

_NOT_GROUPING = ("out", "resume")  # config.json fields that name a place, not a setting

RETURN = "eval/episode_return"
PANELS = (  # (column, title, y label); the first two panels are eval return against env steps and wall time
    ("train/trajectory_entropy", "trajectory entropy vs budget (dashed)", "-log pi + Q_e"),
    ("train/alpha", "temperature", "alpha"),
    ("train/policy_entropy", "policy entropy (per step; dashed: H0)", "-log pi"),
    ("train/q_e", "entropy critic", "Q_e"),
)


@dataclass(frozen=True)
class Curve:
    """The metrics of one trained policy and the settings that name its group."""

    label: str  # where it came from: the run dir, and the member for a sweep
    settings: dict[str, Any]  # config.json, with a sweep member's hyperparameters and seed on top
    metrics: dict[str, np.ndarray]  # column -> values, one per evaluation
    folder: str = ""  # the directory holding its metrics.csv and exported policy (load_curves); "" if built elsewhere

    def last(self, name: str) -> float | None:
        """The last finite value of a logged column, or None where it is absent or never finite."""
        values = self.metrics.get(name)
        if values is None or not np.isfinite(values).any():
            return None
        return float(values[np.isfinite(values)][-1])

    def budget(self) -> float:
        """The trajectory entropy budget: logged by dsac-e; else rho * H0 / (1 - gamma) from H0 (§3.2)."""
        logged, h0 = self.last("train/entropy_budget"), self.last("train/target_entropy")
        if logged is not None:
            return logged
        if h0 is not None:
            return self.settings["rho"] * h0 / (1.0 - self.settings["gamma"])
        return math.nan

    def target_entropy(self) -> float:
        """H0 = -|A|: logged by the per-step variants; for dsac-e recovered from the budget."""
        h0 = self.last("train/target_entropy")
        if h0 is not None:
            return h0
        budget, rho = self.budget(), self.settings["rho"]
        if not rho:
            return math.nan
        horizon = self.last("diag/horizon")  # --budget-horizon lived: budget = rho * H0 * (1 + D)
        if self.settings.get("budget_horizon") == "lived" and horizon is not None:
            return budget / (rho * (1.0 + horizon))
        return budget * (1.0 - self.settings["gamma"]) / rho


def read_metrics(path: str) -> dict[str, np.ndarray]:
    """metrics.csv as columns of floats (empty cells are NaN); raises ConfigError when unusable."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path!r} is missing (has the run finished an evaluation yet?)")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise ConfigError(f"{path!r} is unreadable ({e})") from None
    if not rows or "env_steps" not in rows[0] or RETURN not in rows[0]:
        raise ConfigError(f"{path!r} holds no evaluations (needs env_steps and {RETURN} columns)")

    def number(text: str | None) -> float:
        try:
            return float(text) if text not in (None, "") else math.nan
        except ValueError:
            return math.nan

    return {k: np.array([number(r.get(k)) for r in rows], np.float64) for k in rows[0]}


# a setting a run's config.json lacks (recorded before it existed): the run's value is unknown, so it is not
# filled in with today's default (which may differ from what the run did)
NOT_RECORDED = "not recorded"


def load_curves(run_dir: str) -> list[Curve]:
    """The curves of a run directory: one for a single run, one per member for a sweep."""
    if not os.path.isdir(run_dir):
        raise ConfigError(f"{run_dir!r} is not a directory")
    config = rundir.read_config_dict(run_dir)
    sweep = rundir.read_sweep(run_dir)
    if sweep is None:
        return [Curve(run_dir, config, read_metrics(os.path.join(run_dir, rundir.METRICS_FILE)), run_dir)]
    curves = []
    for i, member in enumerate(sweep.get("members", [])):
        index = int(member.get("member", i))
        settings = {**config, **member.get("hyperparams", {}), "seed": member.get("seed", config.get("seed"))}
        folder = rundir.member_dir(run_dir, index)
        metrics = read_metrics(os.path.join(folder, rundir.METRICS_FILE))
        curves.append(Curve(f"{run_dir} member {index}", settings, metrics, folder))
    if not curves:
        raise ConfigError(f"{run_dir!r}: {rundir.SWEEP_FILE} lists no members")
    return curves


def resolve_group_by(curves: list[Curve], group_by: str | None) -> list[str]:
    """The settings that name a group. Default: algo, plus env and any hyperparameter that differs between
    the curves (so a rho sweep is never averaged over rho). Raises ConfigError on an unknown name."""
    if group_by:
        names = [n.strip() for n in group_by.split(",") if n.strip()]
        allowed = sorted(set().union(*(c.settings for c in curves)) - set(_NOT_GROUPING))
        for name in names:
            if name not in allowed:
                raise ConfigError(f"--group-by {name!r} is not a config field or hyperparameter; allowed: "
                                  + ", ".join(allowed))  # fmt: skip
        if not names:
            raise ConfigError("--group-by is empty; name a config field or hyperparameter, e.g. algo or rho")
        return names

    def varies(name: str) -> bool:
        return len({json.dumps(c.settings.get(name, NOT_RECORDED)) for c in curves}) > 1

    names = ["env"] if varies("env") else []
    names.append("algo")
    names += [n for n in HYPERPARAM_NAMES if varies(n)]
    return names


def group_curves(curves: list[Curve], names: list[str]) -> dict[str, list[Curve]]:
    """Curves by group label ("algo=dsac-e, rho=0.5"), in first-seen order."""
    groups: dict[str, list[Curve]] = {}
    for c in curves:
        label = ", ".join(f"{n}={_fmt(c.settings.get(n, NOT_RECORDED))}" for n in names)
        groups.setdefault(label, []).append(c)
    return groups


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def mean_interval(xs: list[np.ndarray], ys: list[np.ndarray], points: int = 100):
    """Mean and 95% percentile-bootstrap interval of the mean (`sweep.bootstrap_ci`) across curves, on a
    common x grid (their overlap, linearly interpolated).

    Returns (x, mean, low, high); with one curve low = high = mean. Curves on identical grids (the seeds of
    one config) are used as they are, without interpolation. NaN points are dropped per curve first."""
    from mjx_tecrl.sweep import bootstrap_ci

    finite = [(x, y, np.isfinite(x) & np.isfinite(y)) for x, y in zip(xs, ys, strict=True)]
    pairs = [(x[k], y[k]) for x, y, k in finite if k.any()]
    if not pairs:
        return None
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    if all(len(x) == len(xs[0]) and np.array_equal(x, xs[0]) for x in xs):
        grid, table = xs[0], np.stack(ys)
    else:
        lo, hi = max(float(x[0]) for x in xs), min(float(x[-1]) for x in xs)
        if hi <= lo:  # no overlap: the longest curve alone rather than a misleading mean
            longest = max(range(len(xs)), key=lambda i: len(xs[i]))
            grid, table = xs[longest], ys[longest][None]
        else:
            grid = np.linspace(lo, hi, points)
            table = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys, strict=True)])
    mean = table.mean(axis=0)
    if table.shape[0] < 2:
        return grid, mean, mean, mean
    low, high = np.array([bootstrap_ci(table[:, j], resamples=2000) for j in range(table.shape[1])]).T
    return grid, mean, low, high


def figure(groups: dict[str, list[Curve]], show_runs: bool = False):
    """A matplotlib Figure (no pyplot: usable headless and displayed inline in notebooks)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 8), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    colors = [f"C{i % 10}" for i in range(len(groups))]
    panels = [("env_steps", RETURN, "eval return vs env steps", "eval return"),
              ("wall_time_s", RETURN, "eval return vs wall time", "eval return")]  # fmt: skip
    panels += [("env_steps", col, title, ylabel) for col, title, ylabel in PANELS]
    for ax, (xcol, ycol, title, ylabel) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("wall time (s)" if xcol == "wall_time_s" else "env steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        drawn = False
        for color, (label, curves) in zip(colors, groups.items(), strict=True):
            have = [c for c in curves if xcol in c.metrics and ycol in c.metrics]
            band = mean_interval([c.metrics[xcol] for c in have], [c.metrics[ycol] for c in have])
            if band is None:
                continue
            x, mean, low, high = band
            drawn = True
            ax.plot(x, mean, color=color, label=f"{label} (n={len(have)})")
            ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
            if show_runs:
                for c in have:
                    ax.plot(c.metrics[xcol], c.metrics[ycol], color=color, alpha=0.3, linewidth=0.7)
            reference = {"train/trajectory_entropy": Curve.budget, "train/policy_entropy": Curve.target_entropy}
            if ycol in reference:
                value = reference[ycol](curves[0])
                if math.isfinite(value):
                    ax.axhline(value, color=color, linestyle="--", linewidth=1)
        if ycol == "train/alpha" and drawn:
            ax.set_yscale("log")
        if not drawn:
            ax.text(0.5, 0.5, "not logged by these runs", ha="center", va="center", transform=ax.transAxes)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("mean across seeds, shaded: 95% bootstrap interval of the mean", fontsize=10)
    return fig


def plot_runs(run_dirs: list[str], out: str | None = None, group_by: str | None = None, show_runs: bool = False):
    """Load, group and draw `run_dirs`; write `out` (PNG, PDF, SVG) when given. Returns the Figure."""
    curves = [c for d in run_dirs for c in load_curves(d)]
    fig = figure(group_curves(curves, resolve_group_by(curves, group_by)), show_runs)
    if out:
        fig.savefig(out, dpi=100)
    return fig


def _fail(message: str) -> NoReturn:
    commands.fail("plot", message)


def main(argv: list[str] | None = None) -> int:
    parser = commands.Parser(error_name="plot", prog="python -m mjx_tecrl.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run or sweep directories")
    parser.add_argument("--out", default="curves.png", help="image to write (.png, .pdf, .svg; default curves.png)")
    parser.add_argument("--group-by", default=None, help="comma-separated config fields or hyperparameters "
                        "(default: algo, plus env and every hyperparameter that differs between the runs)")  # fmt: skip
    parser.add_argument("--show-runs", action="store_true", help="also draw each seed's curve, thin")
    args = parser.parse_args(argv)
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".png", ".pdf", ".svg"):
        _fail(f"--out {args.out!r}: use a .png, .pdf or .svg file name")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        _fail(f"--out {args.out!r}: directory {out_dir!r} does not exist")
    try:
        plot_runs(args.run_dirs, args.out, args.group_by, args.show_runs)
    except ConfigError as e:
        _fail(str(e))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
