"""1. Simulation alone: env steps per second of the vmapped MJX step with uniform random actions.

Each case is one compiled scan of `--iters` iterations of `rollout.step` (all envs step once per
iteration, finished envs auto-reset in program), the env state donated. Cases alternate round-robin.

    python bench/sim.py --quick
    python bench/sim.py --tasks hopper,inverted_pendulum --envs 16,64,256              # CPU
    python bench/sim.py --tasks humanoid,ant,hopper --envs 16,64,256,1024,4096         # GPU
"""

from __future__ import annotations

import time

import _common as C
import jax


def main(argv=None):
    p = C.sim_parser(__doc__.splitlines()[0], "inverted_pendulum,hopper,ant,humanoid", "16,64,256,1024,4096", 100)
    args = C.parse(p, {"tasks": ["inverted_pendulum"], "envs": [16, 64], "iters": 20, "repeats": 3}, argv)
    C.check_sim_args(p, args)
    report = C.Report("sim", args)

    for task in args.tasks:
        environment = C.env(task)
        cases, compile_s = {}, {}
        for n in args.envs:
            t0 = time.perf_counter()
            state = C.sim_reset(environment, n)
            fn = C.sim_chunk_fn(environment, n, args.iters, args.episode_length)
            compiled = fn.lower(state, jax.random.PRNGKey(0)).compile()
            compile_s[n] = time.perf_counter() - t0
            cases[n] = C.Case(compiled, state, C.key_seq(n))
        times = C.alternate(cases, args.repeats)
        del cases
        for n in args.envs:
            t = C.median(times[n])
            report.add(
                task=task,
                num_envs=n,
                iters=args.iters,
                median_s=t,
                times_s=times[n],
                env_steps_per_s=n * args.iters / t,
                ms_per_iter=1e3 * t / args.iters,
                compile_s=compile_s[n],
            )
    rows = [(r["task"], r["num_envs"], r["env_steps_per_s"], r["ms_per_iter"], r["compile_s"]) for r in report.rows]
    print(C.table(["task", "num_envs", "env steps/s", "ms / iteration", "compile s"], rows))
    report.write()


if __name__ == "__main__":
    main()
