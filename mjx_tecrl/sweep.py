"""Sweeps: many complete training runs as one program, members stacked on a leading axis.

A sweep is the product of `--sweep NAME=v1,v2,...` axes (traced hyperparameters only) and `--seeds N`
seeds. Member i trains with seed `config.seed + k` and its own `Hyperparams`; the chunk function is
vmapped over members (see `run.py`), so member i computes what a single run with the same seed and
values computes. This module plans the members and writes the sweep's summary outputs.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from mjx_tecrl.config import HYPERPARAM_NAMES, Config, ConfigError, validate

SWEEPABLE = HYPERPARAM_NAMES
MAX_MEMBERS = 65_536


@dataclass(frozen=True)
class SweepSpec:
    """The grid: ordered axes of (hyperparameter, values) and the number of seeds per grid point."""

    axes: tuple[tuple[str, tuple[float, ...]], ...]
    seeds: int

    def to_dict(self) -> dict[str, Any]:
        return {"axes": [[name, list(values)] for name, values in self.axes], "seeds": self.seeds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSpec:
        return cls(tuple((str(n), tuple(float(v) for v in vs)) for n, vs in d["axes"]), int(d["seeds"]))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.axes)

    def members(self, base_seed: int) -> list[dict[str, Any]]:
        """One record per member: grid points in product order, seeds innermost."""
        grid = itertools.product(*(values for _, values in self.axes)) if self.axes else [()]
        out = []
        for point in grid:
            for k in range(self.seeds):
                out.append(
                    {
                        "member": len(out),
                        "seed": base_seed + k,
                        "hyperparams": dict(zip(self.names, point, strict=True)),
                    }
                )
        return out


def parse_axis(text: str) -> tuple[str, tuple[float, ...]]:
    """`rho=1,5,10` -> ("rho", (1.0, 5.0, 10.0)); raises ConfigError naming the flag."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise ConfigError(f"--sweep {text!r} must look like NAME=V1,V2,... (e.g. rho=1,5,10)")
    if name not in SWEEPABLE:
        static = {f.name for f in dataclasses.fields(Config)}
        why = "is static (it sets a shape, a branch or I/O)" if name in static else "is not a hyperparameter"
        hint = "; for algo run one sweep per algo" if name == "algo" else ""
        raise ConfigError(f"--sweep {name!r} {why}; sweepable: {', '.join(SWEEPABLE)}{hint}")
    items = [v.strip() for v in values.split(",")]
    if not values.strip() or any(not v for v in items):
        raise ConfigError(f"--sweep {text!r} has an empty value list; give NAME=V1,V2,...")
    parsed = []
    for v in items:
        try:
            x = float(v)
        except ValueError:
            raise ConfigError(f"--sweep {name}: {v!r} is not a number") from None
        if not math.isfinite(x):
            raise ConfigError(f"--sweep {name}: {v!r} must be a finite number")
        parsed.append(x)
    if len(set(parsed)) != len(parsed):
        raise ConfigError(f"--sweep {name} lists a value twice: {values}")
    return name, tuple(parsed)


def parse_sweep(texts: list[str] | tuple[str, ...], seeds: int | None) -> SweepSpec | None:
    """The sweep of the flags, or None when they ask for a single run (no --sweep, seeds 1 or unset)."""
    axes = [parse_axis(t) for t in texts]
    names = [n for n, _ in axes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"--sweep {dup[0]} is given twice; list all its values in one flag")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ConfigError(f"--seeds {seeds!r} must be a positive integer")
    seeds = seeds or 1
    if not axes and seeds == 1:
        return None
    size = seeds * math.prod(len(v) for _, v in axes)
    if size > MAX_MEMBERS:
        raise ConfigError(f"--sweep grid has {size} members; at most {MAX_MEMBERS} are allowed in one program")
    return SweepSpec(tuple(axes), seeds)


def check_members(config: Config, spec: SweepSpec) -> list[dict[str, Any]]:
    """Every member's config must be valid on its own; the first invalid one is a ConfigError."""
    members = spec.members(config.seed)
    for name, values in spec.axes:
        for v in values:
            try:
                validate(dataclasses.replace(config, **{name: v}))
            except ConfigError as e:
                raise ConfigError(f"--sweep {name}={v:g}: {e}") from None
    return members


def member_label(member: dict[str, Any], names: tuple[str, ...]) -> str:
    return " ".join(f"{n}={member['hyperparams'][n]:g}" for n in names) or "base"


# --- summaries ---------------------------------------------------------------------------------------
def area_under_curve(steps: np.ndarray, returns: np.ndarray) -> float:
    """Mean eval return over the learning curve: trapezoid area divided by the env steps it spans."""
    steps, returns = np.asarray(steps, float), np.asarray(returns, float)
    if len(steps) < 2 or steps[-1] == steps[0]:
        return float(returns[-1]) if len(returns) else math.nan
    area = np.sum((returns[1:] + returns[:-1]) * np.diff(steps)) / 2.0
    return float(area / (steps[-1] - steps[0]))


def bootstrap_ci(values: np.ndarray, level: float = 0.95, resamples: int = 10_000, seed: int = 0):
    """Percentile bootstrap interval of the mean (NaN members dropped); (lo, hi)."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(resamples, len(x)), replace=True).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


CSV_COLUMNS = ("member", "seed", *HYPERPARAM_NAMES, "final_eval_return", "best_eval_return",
               "auc_eval_return", "env_steps", "env_steps_per_second", "diverged_at_env_step")  # fmt: skip


def write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    os.replace(tmp, path)


def group_table(rows: list[dict[str, Any]], names: tuple[str, ...]) -> str:
    """Mean ± std and 95% bootstrap CI of the final and best eval return across seeds, per grid point."""
    groups: dict[tuple[float, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[n] for n in names), []).append(r)
    header = [*names, "seeds", "final mean ± std", "final 95% CI", "best mean", "diverged"]
    lines = [header]
    for point, rs in groups.items():
        final = np.array([r["final_eval_return"] for r in rs], float)
        best = np.array([r["best_eval_return"] for r in rs], float)
        ok = final[np.isfinite(final)]
        lo, hi = bootstrap_ci(final)
        std = float(np.std(ok)) if len(ok) else math.nan
        diverged = sum(1 for r in rs if r.get("diverged_at_env_step") not in (None, ""))
        lines.append([
            *(f"{v:g}" for v in point), str(len(rs)),
            f"{np.mean(ok) if len(ok) else math.nan:.1f} ± {std:.1f}", f"[{lo:.1f}, {hi:.1f}]",
            f"{np.nanmean(best) if np.isfinite(best).any() else math.nan:.1f}", str(diverged),
        ])  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines)


def plot(path: str, curves: list[dict[str, Any]], rows: list[dict[str, Any]], names: tuple[str, ...]) -> None:
    """sweep.png: eval return curves per grid point (mean, shaded 95% bootstrap CI across seeds), and the
    final return against rho (or the first swept hyperparameter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_name = "rho" if "rho" in names else (names[0] if names else None)
    fig, axes = plt.subplots(1, 2 if x_name else 1, figsize=(12 if x_name else 6, 4.5), squeeze=False)
    ax = axes[0, 0]
    groups: dict[tuple[float, ...], list[dict[str, Any]]] = {}
    for c, r in zip(curves, rows, strict=True):
        groups.setdefault(tuple(r[n] for n in names), []).append(c)
    for point, cs in groups.items():
        n = min(len(c["steps"]) for c in cs)
        if n == 0:
            continue
        steps = np.asarray(cs[0]["steps"][:n], float)
        y = np.stack([np.asarray(c["returns"][:n], float) for c in cs])
        mean = np.nanmean(y, axis=0)
        ci = np.array([bootstrap_ci(y[:, j], resamples=2000) for j in range(n)])
        label = " ".join(f"{nm}={v:g}" for nm, v in zip(names, point, strict=True)) or "base"
        (line,) = ax.plot(steps, mean, label=label)
        ax.fill_between(steps, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (deterministic)")
    ax.set_title("learning curves: mean and 95% bootstrap CI across seeds")
    ax.legend(fontsize=8)
    if x_name:
        ax = axes[0, 1]
        xs = sorted({r[x_name] for r in rows})
        final = [[r["final_eval_return"] for r in rows if r[x_name] == x] for x in xs]
        means = [np.nanmean(f) for f in final]
        cis = np.array([bootstrap_ci(np.array(f)) for f in final])
        ax.plot(xs, means, "o-")
        ax.fill_between(xs, cis[:, 0], cis[:, 1], alpha=0.2)
        for x, f in zip(xs, final, strict=True):
            ax.scatter([x] * len(f), f, s=10, color="gray", alpha=0.6)
        ax.set_xlabel(x_name)
        ax.set_ylabel("final eval return")
        ax.set_title(f"final return against {x_name} (other axes pooled)")
        if x_name == "rho" and min(xs) > 0:
            ax.set_xscale("log")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
