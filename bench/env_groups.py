"""Env groups (mjx_tecrl/rollout.py, ENV_GROUP): a batch of envs stepped as one vmap against a `lax.map` over
vmapped groups of G envs. How much faster on this machine, at which G, and how far apart are the numbers? The
simulation alone (bench/sim.py's chunk), every variant of each size compiled in one process.

    python bench/env_groups.py --quick
    python bench/env_groups.py --tasks hopper,halfcheetah --envs 256,1024 --groups 8,16,32,64   # CPU
    python bench/env_groups.py --tasks humanoid --envs 4096 --groups 256,1024 --iters 20          # GPU

Each size's programs run from the same state with the same key: each group size's largest difference from the
single batch's outputs is in the JSON with its env steps/s, timed round-robin. A group size does not change the
physics, only XLA's fusion, so differences are float rounding grown by the task's chaos over --iters steps.
"""

from __future__ import annotations

import functools

import _common as C

from mjx_tecrl import rollout

ONE_BATCH = "one_batch"  # ENV_GROUP 0


def main(argv=None):
    p = C.sim_parser(__doc__.splitlines()[0], "hopper,halfcheetah", "256", 20)
    p.add_argument("--groups", type=C.int_list, default="16,32", help="group sizes G to time against one batch")
    args = C.parse(p, {"tasks": ["inverted_pendulum"], "envs": [8], "iters": 3, "repeats": 1, "groups": [4]}, argv)
    C.check_sim_args(p, args)
    report = C.Report("env_groups", args)
    variants = {ONE_BATCH: functools.partial(C.attribute, rollout, "ENV_GROUP", 0)}
    variants.update({f"groups_of_{g}": functools.partial(C.attribute, rollout, "ENV_GROUP", g) for g in args.groups})
    C.compare_sim_variants(args, report, variants, baseline=ONE_BATCH)
    names = list(variants)
    rows = [(r["task"], r["num_envs"], *(r["env_steps_per_s"][v] for v in names),
             max(r["max_abs_difference"].values())) for r in report.rows]  # fmt: skip
    print(C.table(["task", "num_envs", *(f"{v} steps/s" for v in names), "max |difference|"], rows))


if __name__ == "__main__":
    main()
