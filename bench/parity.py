"""One-step parity figures of every Gymnasium MJX task against Gymnasium itself, for docs/envs.md.

Runs the parity test's own measurement (`tests/test_gym_parity.py`: the same states, error measure and
tolerances) for each task and physics setting and tabulates the figures instead of asserting them, so that
one table shows every task, the ones outside their tolerance included. The test suite is what enforces them.

    python bench/parity.py --quick
    python bench/parity.py --tasks hopper,ant --physics faithful,fast --states 200
"""

from __future__ import annotations

import os
import sys
import time

import _common as C

from mjx_tecrl.config import PHYSICS

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=C.str_list, default=None, help="default: every Gymnasium task")
    p.add_argument("--physics", type=C.str_list, default="faithful,fast")
    p.add_argument("--states", type=int, default=100, help="states per task (along random-action episodes)")
    p.add_argument("--stride", type=int, default=5, help="keep every stride-th state of the episodes")
    args = C.parse(p, {"tasks": ["inverted_pendulum"], "physics": ["faithful"], "states": 20}, argv)
    import test_gym_parity as P  # the test's helpers: one definition of the measurement

    P.COMPILE = {}  # XLA's default optimisation: the test's -O0 compiles faster but runs the big tasks slowly

    tasks = args.tasks or list(P.TASKS)
    for t in tasks:
        if t not in P.TASKS:
            p.error(f"--tasks: {t!r} is not a Gymnasium task; known: {', '.join(P.TASKS)}")
    for ph in args.physics:
        if ph not in PHYSICS:
            p.error(f"--physics: {ph!r} is not one of {', '.join(PHYSICS)}")
    if args.states <= 0 or args.stride <= 0:
        p.error(f"--states {args.states} and --stride {args.stride} must be positive integers")
    report = C.Report("parity", args)
    import jax

    for task in tasks:
        data = P.gym_transitions(task, args.states, stride=args.stride)
        for physics in args.physics:
            tol = (P.FAITHFUL_TOL if physics == "faithful" else P.FAST_TOL)[task]
            t0 = time.perf_counter()
            env = P.registry.make(task, physics)
            obs, reward, done, _ = P.mjx_one_step_and_resets(env, data, 1, jax.random.PRNGKey(0))
            figures, within = P.one_step_figures(tol, data, obs, reward, done)
            ok = bool(within.mean() >= tol.share)
            seconds = time.perf_counter() - t0
            report.add(task=task, physics=physics, states=args.states, rtol=tol.rtol, share_needed=tol.share,
                       passes=ok, seconds=seconds, **figures)  # fmt: skip
            print(task, physics, f"{seconds:.0f}s", figures, flush=True)
    rows = [
        (r["task"], r["physics"], r["states"], r["obs_err_median"], r["obs_err_max"], r["reward_err_max"],
         f"{r['share_within_tol']:.0%} (tol {r['rtol']:g}, need {r['share_needed']:.0%})", r["terminated_mismatch"])
        for r in report.rows
    ]  # fmt: skip
    print(C.table(["task", "physics", "states", "obs error: median", "max", "reward error max",
                   "states within tolerance", "termination mismatches"], rows))  # fmt: skip
    report.write()


if __name__ == "__main__":
    main()
