"""Issue 17's learning-curve figures (docs/figures/learning_<task>.png), drawn by `mjx_tecrl.plot.figure`.

The curves come from `bench/reference_learning.py` reports (bench/results/issue17/*.json, which keep every seed's
evaluations, alpha and policy entropy) and, for runs whose directories are still at hand, from those directories.
Each group is one variant of ours or SB3's SAC; a label names what differs.

    python bench/issue17_figures.py --out docs/figures [--tasks halfcheetah] [--run LABEL=TASK=DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from mjx_tecrl.config import make_config
from mjx_tecrl.plot import RETURN, Curve, figure, load_curves

HERE = os.path.dirname(os.path.abspath(__file__))
REPORTS = os.path.join(HERE, "results", "issue17")
# report file -> the label of its systems (sb3-sac is always "SB3 SAC"); the SB3 runs are drawn from one report
LABELS = {
    "halfcheetah_dsac-e_before.json": "dsac-e, spec critics, discounted budget",
    "hopper_dsac-e_before.json": "dsac-e, spec critics, discounted budget",
    "hopper_dsac-e_layernorm.json": "dsac-e, LayerNorm critics, discounted budget",
    "sb3-sac_halfcheetah+hopper.json": "SB3 SAC",
}


def _report_curves(path: str, label: str) -> dict[tuple[str, str], list[Curve]]:
    with open(path) as f:
        runs = json.load(f)["runs"]
    out: dict[tuple[str, str], list[Curve]] = {}
    for r in runs:
        if (r["system"] == "sb3-sac") != (label == "SB3 SAC"):
            continue
        algo = "sac" if r["system"] == "sb3-sac" else r["system"]
        settings = {**make_config(env=r["task"], algo=algo).to_dict(), "seed": r["seed"]}
        metrics = {"env_steps": np.asarray(r["env_steps"], float), RETURN: np.asarray(r["eval_return"], float)}
        for col, key in (("train/alpha", "alpha"), ("train/policy_entropy", "policy_entropy")):
            if r.get(key) is not None:
                metrics[col] = np.asarray(r[key], float)
        out.setdefault((r["task"], label), []).append(Curve(f"{path} seed {r['seed']}", settings, metrics))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "docs", "figures"))
    p.add_argument("--run", action="append", default=[], help="LABEL=TASK=DIR: a run directory to draw as well")
    p.add_argument("--tasks", default="", help="draw only these tasks (comma-separated; default: every task)")
    args = p.parse_args()
    groups: dict[tuple[str, str], list[Curve]] = {}
    for name, label in LABELS.items():
        for key, curves in _report_curves(os.path.join(REPORTS, name), label).items():
            groups.setdefault(key, []).extend(curves)
    for spec in args.run:
        label, task, run_dir = spec.split("=", 2)
        groups.setdefault((task, label), []).extend(load_curves(run_dir))
    os.makedirs(args.out, exist_ok=True)
    for task in sorted({t for t, _ in groups if not args.tasks or t in args.tasks.split(",")}):
        by_label = {label: curves for (t, label), curves in groups.items() if t == task}
        by_label = dict(sorted(by_label.items(), key=lambda kv: kv[0] == "SB3 SAC"))  # SB3 last
        fig = figure(by_label)
        fig.suptitle(f"{task}: mean across seeds, shaded: 95% bootstrap interval of the mean", fontsize=10)
        path = os.path.join(args.out, f"learning_{task}.png")
        fig.savefig(path, dpi=90)
        print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
