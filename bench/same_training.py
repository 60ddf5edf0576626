"""Whether two training runs trained the same, bit for bit: their saved policies and every metric they share.

    git worktree add /tmp/old OLD_COMMIT
    (cd /tmp/old && PYTHONPATH=. python train.py --env halfcheetah --total-steps 12800 --seed 0 --out /tmp/a)
    python train.py --env halfcheetah --total-steps 12800 --seed 0 --out /tmp/b
    python bench/same_training.py /tmp/a /tmp/b

A change meant to leave a program's learning alone (a new metric, a static flag that is off) is checked this way
against the commit whose learning runs were measured, instead of rerunning them (docs/performance.md, "HalfCheetah
with the defaults after the entropy floor"). Sweeps and `--seeds` runs are compared member by member. Wall-clock
columns are left out. Exit status 0 when the runs are the same, 1 when they differ, 2 for a directory that is not
a finished run.
"""

from __future__ import annotations

import argparse
import os
import sys

import _common as C
import numpy as np

from mjx_tecrl import rundir
from mjx_tecrl.config import ConfigError
from mjx_tecrl.export import FILE_NAME as POLICY_FILE
from mjx_tecrl.plot import load_curves

CLOCK_COLUMNS = ("wall_time_s", "train/env_steps_per_second")


def policy_difference(path_a: str, path_b: str) -> float:
    """The largest absolute difference over the two policy files' parameter arrays (`_common.largest_difference`;
    inf when those differ in name or shape). The files' settings record (an array of bytes) is not a parameter: a
    new setting changes it."""
    for path in (path_a, path_b):
        if not os.path.isfile(path):
            raise ConfigError(f"{path!r} is missing (has the run finished?)")
    with np.load(path_a) as fa, np.load(path_b) as fb:
        a, b = ({k: f[k] for k in f.files if f[k].dtype.kind == "f"} for f in (fa, fb))
    if sorted(a) != sorted(b) or any(a[k].shape != b[k].shape for k in a):
        return float("inf")
    return C.largest_difference(a, b)


def metric_differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[list[str], list[str], list[str]]:
    """(the shared non-clock columns, those whose values differ, the columns only one run has)."""
    shared = sorted((set(a) & set(b)) - set(CLOCK_COLUMNS))
    differ = [c for c in shared if a[c].shape != b[c].shape or not np.array_equal(a[c], b[c], equal_nan=True)]
    return shared, differ, sorted(set(a) ^ set(b))


def compare(run_a: str, run_b: str) -> bool:
    """Prints one line per member; True when every member's policy and shared metrics are identical."""
    for run_dir in (run_a, run_b):
        if not rundir.holds_run(run_dir):
            raise ConfigError(f"{run_dir!r} is not a run directory (no {rundir.CONFIG_FILE})")
    curves_a, curves_b = load_curves(run_a), load_curves(run_b)
    if len(curves_a) != len(curves_b):
        raise ConfigError(f"{run_a!r} has {len(curves_a)} members and {run_b!r} has {len(curves_b)}")
    same = True
    for ca, cb in zip(curves_a, curves_b, strict=True):
        largest = policy_difference(os.path.join(ca.folder, POLICY_FILE), os.path.join(cb.folder, POLICY_FILE))
        shared, differ, one_sided = metric_differences(ca.metrics, cb.metrics)
        same &= largest == 0.0 and not differ
        print(
            f"{ca.folder} | {cb.folder}: policy's largest difference {largest:g}; {len(shared)} metrics compared, "
            f"differing: {', '.join(differ) or 'none'}; in one run only: {', '.join(one_sided) or 'none'}"
        )
    print("same training" if same else "different training")
    return same


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_a")
    p.add_argument("run_b")
    args = p.parse_args(argv)
    try:
        return 0 if compare(args.run_a, args.run_b) else 1
    except ConfigError as e:
        print(f"same_training.py: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
