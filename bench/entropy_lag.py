"""How far the trajectory constraint's reading trails the policy's entropy, in recorded dsac-e runs (lived budget).

    python bench/entropy_lag.py /work/runs/ref_swim9999/swimmer/dsac-e --updates-per-backup 46

Per member and evaluation: the policy entropy H (nats per step), the constraint's reading (H + Q_e) / (1 + D)
(what it compares with rho H0), and what an ideal TD entropy critic would read, with one backup per U updates and
each depth k of its partial sum computed by the policy of k backups ago (docs/decisions.md, "The entropy critic's
lag"): (H + sum_k gamma^k H(t_k)) / (1 + sum_k gamma^k), H(t) the logged entropies, linearly interpolated. The
measured and modelled D are printed beside them; U is fitted by eye to the measured D's growth.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mjx_tecrl.config import ConfigError
from mjx_tecrl.plot import load_curves

COLUMNS = ("env_steps", "train/policy_entropy", "train/q_e", "diag/horizon")


def ideal_reading(steps, entropy, at, gamma, learning_starts, updates_per_step, updates_per_backup):
    """(H + Q_e) / (1 + D) and D of an ideal TD critic at env step `at`, from the entropies logged at `steps`."""
    n = int(max(at - learning_starts, 0) * updates_per_step / updates_per_backup)  # backups so far
    k = np.arange(1, n + 1)
    when = learning_starts + (n - k + 1) * updates_per_backup / updates_per_step  # env step of depth k's backup
    weights = gamma**k
    d = float(np.sum(weights))
    q_e = float(np.sum(weights * np.interp(when, steps, entropy)))
    return (float(np.interp(at, steps, entropy)) + q_e) / (1.0 + d), d


def rows(run_dir: str, updates_per_backup: float) -> list[dict]:
    out = []
    for curve in load_curves(run_dir):
        if any(c not in curve.metrics for c in COLUMNS):
            raise ConfigError(f"{curve.label}: no {', '.join(COLUMNS)} columns (a dsac-e run with the lived budget)")
        s = curve.settings
        steps, h, q_e, d = (np.asarray(curve.metrics[c], np.float64) for c in COLUMNS)
        for i in range(len(steps)):
            pred, pred_d = ideal_reading(steps, h, steps[i], s["gamma"], s["learning_starts"],
                                         s["updates_per_step"], updates_per_backup)  # fmt: skip
            out.append({"run": curve.label, "env_steps": int(steps[i]), "entropy": h[i],
                        "reading": (h[i] + q_e[i]) / (1.0 + d[i]), "ideal_reading": pred, "horizon": d[i],
                        "ideal_horizon": pred_d})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--updates-per-backup", type=float, default=46.0, help="U: gradient updates per backup")
    args = p.parse_args(argv)
    if not args.updates_per_backup > 0:
        print(f"entropy_lag: --updates-per-backup {args.updates_per_backup} must be positive", file=sys.stderr)
        return 2
    try:
        table = [r for d in args.run_dirs for r in rows(d, args.updates_per_backup)]
    except ConfigError as e:
        print(f"entropy_lag: {e}", file=sys.stderr)
        return 2
    print("run | env steps | H | reading | ideal reading | D | ideal D")
    for r in table:
        print(f"{r['run']} | {r['env_steps']} | {r['entropy']:.2f} | {r['reading']:.2f} | {r['ideal_reading']:.2f} | "
              f"{r['horizon']:.0f} | {r['ideal_horizon']:.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
