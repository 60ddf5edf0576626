"""MJX's line search as a scan (MJX's own) against the early-exit while_loop (envs/gym_base.py): same numbers?
How much faster? The simulation alone (bench/sim.py's chunk), both variants of each size compiled in one process.

    python bench/linesearch.py --quick
    python bench/linesearch.py --tasks hopper,halfcheetah --envs 16,256 --iters 20                   # CPU
    python bench/linesearch.py --tasks humanoid,halfcheetah --envs 1024,4096 --iters 20 --repeats 3  # GPU

Each size's two programs run from the same state with the same key: the largest difference of their outputs
(0 if the numbers are the same) is in the JSON with the env steps/s of each, timed round-robin.
"""

from __future__ import annotations

import time

import _common as C
import jax
from mjx_tecrl.envs import gym_base

VARIANTS = {"scan": False, "early_exit": True}  # EARLY_EXIT_LINESEARCH while tracing


def compile_variant(environment, n: int, iters: int, episode_length: int, early_exit: bool):
    """The sim chunk traced with the line search as asked (the switch is read while tracing)."""
    previous = gym_base.EARLY_EXIT_LINESEARCH
    gym_base.EARLY_EXIT_LINESEARCH = early_exit
    try:
        state = C.sim_reset(environment, n)
        fn = C.sim_chunk_fn(environment, n, iters, episode_length)
        return fn.lower(state, jax.random.PRNGKey(0)).compile()
    finally:
        gym_base.EARLY_EXIT_LINESEARCH = previous


def main(argv=None):
    p = C.sim_parser(__doc__.splitlines()[0], "hopper,halfcheetah", "16,256", 20)
    args = C.parse(p, {"tasks": ["inverted_pendulum"], "envs": [4], "iters": 3, "repeats": 1}, argv)
    C.check_sim_args(p, args)
    report = C.Report("linesearch", args)

    for task in args.tasks:
        environment = C.env(task)
        cases, compile_s, difference = {}, {}, {}
        for n in args.envs:
            compiled = {}
            for name, early_exit in VARIANTS.items():
                t0 = time.perf_counter()
                compiled[name] = compile_variant(environment, n, args.iters, args.episode_length, early_exit)
                compile_s[name, n] = time.perf_counter() - t0
                print(f"{task} {n} envs, {name}: compiled in {compile_s[name, n]:.0f} s", flush=True)
            outs = [compiled[name](C.sim_reset(environment, n), jax.random.PRNGKey(1)) for name in VARIANTS]
            difference[n] = C.largest_difference(*outs)
            for name in VARIANTS:
                cases[name, n] = C.Case(compiled[name], C.sim_reset(environment, n), C.key_seq(n))
        times = C.alternate(cases, args.repeats)
        del cases
        for n in args.envs:
            rate = {name: n * args.iters / C.median(times[name, n]) for name in VARIANTS}
            report.add(
                task=task,
                num_envs=n,
                iters=args.iters,
                env_steps_per_s=rate,
                times_s={name: times[name, n] for name in VARIANTS},
                compile_s={name: compile_s[name, n] for name in VARIANTS},
                speedup=rate["early_exit"] / rate["scan"],
                max_abs_difference=difference[n],
            )
        report.write()  # after every task: a run stopped at a deadline keeps the tasks it finished
    rows = [
        (
            r["task"],
            r["num_envs"],
            r["env_steps_per_s"]["scan"],
            r["env_steps_per_s"]["early_exit"],
            r["speedup"],
            r["max_abs_difference"],
        )
        for r in report.rows
    ]
    print(C.table(["task", "num_envs", "scan steps/s", "early exit steps/s", "speedup", "max |difference|"], rows))


if __name__ == "__main__":
    main()
