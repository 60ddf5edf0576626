"""Eval return against wall time from `bench/time_to_return.py`'s JSONs: one panel per task, one colour per case.

    python bench/time_to_return_figure.py bench/results/issue18/time_to_return_halfcheetah4000_*.json --out fig.png

Each seed's run is a line through its evaluations (wall time since its start, compile included); a dot marks where
the bench's rule found it at the threshold (the dashed line), a cross where a run stopped without reaching it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

ROW_KEYS = {"task", "system", "seed", "threshold", "evals", "reached", "wall_to_threshold_s"}  # what the figure reads


def runs_by_task(rows: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """{task: {system: [row, ...]}} in the order the rows came, each system's rows sorted by seed."""
    grouped: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        grouped[row["task"]][row["system"]].append(row)
    return {t: {s: sorted(rs, key=lambda r: r["seed"]) for s, rs in by.items()} for t, by in grouped.items()}


def load_rows(paths: list[str]) -> list[dict]:
    """The rows of every JSON; a file that is missing or is not the bench's JSON exits 2 with one line."""
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                new = json.load(f)["rows"]
            ok = all(ROW_KEYS <= set(r) for r in new)
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            print(f"time_to_return_figure: {path} is not a JSON written by bench/time_to_return.py", file=sys.stderr)
            raise SystemExit(2)
        rows += new
    return rows


def figure(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = runs_by_task(rows)
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.4 * len(tasks), 4.2), squeeze=False)
    for ax, (task, systems) in zip(axes[0], tasks.items(), strict=True):
        for colour, (system, runs) in enumerate(systems.items()):
            c = f"C{colour}"
            reached = sum(r["reached"] for r in runs)
            for i, r in enumerate(runs):
                walls, returns = [e[1] for e in r["evals"]], [e[2] for e in r["evals"]]
                label = f"{system} ({reached}/{len(runs)} reached)" if i == 0 else None
                ax.plot(walls, returns, color=c, lw=1.2, alpha=0.8, label=label)
                if r["reached"]:
                    ax.plot(r["wall_to_threshold_s"], returns[walls.index(r["wall_to_threshold_s"])], "o", color=c)
                elif walls:
                    ax.plot(walls[-1], returns[-1], "x", color=c)
        for threshold in sorted({r["threshold"] for runs in systems.values() for r in runs}):
            ax.axhline(threshold, color="k", ls="--", lw=0.8)
        ax.set(title=f"{task}: eval return against wall time", xlabel="wall time, compile included (s)",
               ylabel="eval return")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", help="JSONs written by bench/time_to_return.py")
    p.add_argument("--out", required=True, help="the figure (PNG)")
    args = p.parse_args(argv)
    figure(load_rows(args.json)).savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
