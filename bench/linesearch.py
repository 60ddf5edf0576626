"""MJX's line search as a scan (MJX's own) against the early-exit while_loop (envs/gym_base.py): same numbers?
How much faster? The simulation alone (bench/sim.py's chunk), both variants of each size compiled in one process.

    python bench/linesearch.py --quick
    python bench/linesearch.py --tasks hopper,halfcheetah --envs 16,256 --iters 20                   # CPU
    python bench/linesearch.py --tasks humanoid,halfcheetah --envs 1024,4096 --iters 20 --repeats 3  # GPU

Each size's two programs run from the same state with the same key: the largest difference of their outputs
(0 if the numbers are the same) is in the JSON with the env steps/s of each, timed round-robin.
"""

from __future__ import annotations

import functools

import _common as C
from mjx_tecrl.envs import gym_base

# EARLY_EXIT_LINESEARCH while tracing
VARIANTS = {name: functools.partial(C.attribute, gym_base, "EARLY_EXIT_LINESEARCH", on)
            for name, on in (("scan", False), ("early_exit", True))}  # fmt: skip


def main(argv=None):
    p = C.sim_parser(__doc__.splitlines()[0], "hopper,halfcheetah", "16,256", 20)
    args = C.parse(p, {"tasks": ["inverted_pendulum"], "envs": [4], "iters": 3, "repeats": 1}, argv)
    C.check_sim_args(p, args)
    report = C.Report("linesearch", args)
    C.compare_sim_variants(args, report, VARIANTS, baseline="scan")
    rows = [
        (
            r["task"],
            r["num_envs"],
            r["env_steps_per_s"]["scan"],
            r["env_steps_per_s"]["early_exit"],
            r["speedup"]["early_exit"],
            r["max_abs_difference"]["early_exit"],
        )
        for r in report.rows
    ]
    print(C.table(["task", "num_envs", "scan steps/s", "early exit steps/s", "speedup", "max |difference|"], rows))


if __name__ == "__main__":
    main()
