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

import numpy as np

from mjx_tecrl import rundir
from mjx_tecrl.config import ConfigError
from mjx_tecrl.export import FILE_NAME as POLICY_FILE
from mjx_tecrl.plot import read_metrics

CLOCK_COLUMNS = ("wall_time_s", "train/env_steps_per_second")


def policy_difference(path_a: str, path_b: str) -> float:
    """The largest absolute difference over the two policy files' parameter arrays (inf when those differ in name or
    shape). The files' settings record (an array of bytes) is not a parameter: a new setting changes it."""
    for path in (path_a, path_b):
        if not os.path.isfile(path):
            raise ConfigError(f"{path!r} is missing (has the run finished?)")
    with np.load(path_a) as fa, np.load(path_b) as fb:
        a, b = ({k: f[k] for k in f.files if f[k].dtype.kind == "f"} for f in (fa, fb))
    if sorted(a) != sorted(b) or any(a[k].shape != b[k].shape for k in a):
        return float("inf")
    diffs = [np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)), initial=0.0) for k in a]
    return float(max(diffs, default=0.0))


def metric_differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[list[str], list[str]]:
    """(the shared non-clock columns whose values differ, the columns only one run has)."""
    shared = sorted((set(a) & set(b)) - set(CLOCK_COLUMNS))
    differ = [c for c in shared if a[c].shape != b[c].shape or not np.array_equal(a[c], b[c], equal_nan=True)]
    return differ, sorted(set(a) ^ set(b))


def run_folders(run_dir: str) -> list[str]:
    """The folders holding a run's metrics and policy: the run's own, or one per member of a sweep."""
    if not rundir.holds_run(run_dir):
        raise ConfigError(f"{run_dir!r} is not a run directory (no {rundir.CONFIG_FILE})")
    sweep = rundir.read_sweep(run_dir)
    if sweep is None:
        return [run_dir]
    return [rundir.member_dir(run_dir, int(m.get("member", i))) for i, m in enumerate(sweep.get("members", []))]


def compare(run_a: str, run_b: str) -> bool:
    """Prints one line per member; True when every member's policy and shared metrics are identical."""
    folders_a, folders_b = run_folders(run_a), run_folders(run_b)
    if len(folders_a) != len(folders_b):
        raise ConfigError(f"{run_a!r} has {len(folders_a)} members and {run_b!r} has {len(folders_b)}")
    same = True
    for fa, fb in zip(folders_a, folders_b, strict=True):
        largest = policy_difference(os.path.join(fa, POLICY_FILE), os.path.join(fb, POLICY_FILE))
        ma, mb = (read_metrics(os.path.join(f, rundir.METRICS_FILE)) for f in (fa, fb))
        differ, one_sided = metric_differences(ma, mb)
        same &= largest == 0.0 and not differ
        compared = len((set(ma) & set(mb)) - set(CLOCK_COLUMNS))
        print(
            f"{fa} | {fb}: policy's largest difference {largest:g}; {compared} metrics compared, "
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
