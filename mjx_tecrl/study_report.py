"""The robustness study's report: the summary table and the plots, from its rows (`study.run_study`)."""

from __future__ import annotations

import os

import numpy as np

from mjx_tecrl.envs.perturb import NEUTRAL
from mjx_tecrl.study import BASELINE, Axis, GridPoint, fmt
from mjx_tecrl.sweep import bootstrap_ci


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
                ax.set_xticks(x, [fmt(v) for v in x], rotation=45 if len(x) > 5 else 0)
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
                    [np.mean(_member_means(by_algo[algo], label, f"{fmt(v0)};{fmt(v1)}")) for v1 in a1.values]
                    for v0 in a0.values
                ]
            )
            im = ax.imshow(z, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="viridis")
            ax.set_xticks(range(len(a1.values)), [fmt(v) for v in a1.values])
            ax.set_yticks(range(len(a0.values)), [fmt(v) for v in a0.values])
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


def confidence_band(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high): the 95% percentile-bootstrap interval of the mean over policies (`sweep.bootstrap_ci`;
    it stays within the range of the data, which a t-interval over two seeds does not)."""
    return (float(np.mean(values)), *bootstrap_ci(values))
