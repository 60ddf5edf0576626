"""3. The fused pipeline against the limit of its parts: limit = time(sim) + time(updates) per iteration.

Per task and num_envs, these cases alternate round-robin (the last two per algo), each a compiled scan
of `--iters` iterations: `sim` (the vmapped env step with random actions, as bench/sim.py), `learner`
(the pipeline's `updates_per_iter` updates per iteration without envs, as bench/learner.py) and
`pipeline` (`run_chunk`, compiled and donated as run.py does: act, step, store, update).
overhead = pipeline / (sim + learner) - 1; the goal is at most 10%. The replay buffer holds random
transitions (the cost depends on shapes only).

    python bench/pipeline.py --quick
    python bench/pipeline.py --tasks hopper --envs 16,64,256 --iters 10                      # CPU
    python bench/pipeline.py --tasks humanoid,ant --envs 256,1024,4096 --batch-size 1024    # GPU
    python bench/pipeline.py --quick --profile /tmp/prof     # also a jax.profiler trace of each case
"""

from __future__ import annotations

import time

import _common as C
import jax


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=C.str_list, default="hopper,ant,humanoid")
    p.add_argument("--envs", type=C.int_list, default="16,64,256,1024,4096", help="num_envs values")
    p.add_argument("--algos", type=C.str_list, default="dsac-e,sac")
    p.add_argument("--iters", type=int, default=50, help="iterations per timed call (the chunk length)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    p.add_argument(
        "--updates-per-iter",
        type=int,
        default=8,
        help="gradient updates per iteration (docs/performance.md's tables: 8)",
    )
    p.add_argument("--buffer-size", type=int, default=None, help="default: the config's")
    p.add_argument("--profile", default="", help="write a jax.profiler trace of one call of each case here")
    args = C.parse(p, {"tasks": ["inverted_pendulum"], "envs": [32], "algos": ["dsac-e"], "iters": 10,
                       "repeats": 3, "buffer_size": 10_000}, argv)  # fmt: skip
    C.check_tasks(p, args.tasks)
    C.check_algos(p, args.algos)
    if args.iters <= 0:
        p.error(f"--iters {args.iters} must be a positive integer")
    sizes = {k: getattr(args, k) for k in ("batch_size", "updates_per_iter", "buffer_size") if getattr(args, k)}
    report = C.Report("pipeline", args)

    learner_fns = {}  # compiled learner chunks, shared by every num_envs with the same shapes
    for task in args.tasks:
        environment = C.env(task)
        for n in args.envs:
            configs = [
                C.config_or_exit(p, env=task, algo=algo, num_envs=n, eval_every=args.iters * n, learning_starts=0,
                                 total_steps=10**12, **sizes)
                for algo in args.algos
            ]  # fmt: skip
            for row in measure(configs, environment, args, learner_fns):
                report.add(**row)
                print(C.table(HEADERS, [table_row(row)]).splitlines()[-1], flush=True)
    print(C.table(HEADERS, [table_row(r) for r in report.rows]))
    report.write()


HEADERS = ["task", "num_envs", "algo", "pipeline env steps/s", "ms / iter: pipeline", "sim", "updates",
           "limit", "overhead vs limit"]  # fmt: skip


def table_row(r):
    keys = ["task", "num_envs", "algo", "pipeline_env_steps_per_s", "pipeline_ms_per_iter", "sim_ms_per_iter",
            "learner_ms_per_iter", "limit_ms_per_iter"]  # fmt: skip
    return (*(r[k] for k in keys), f"{100 * r['overhead']:+.1f}%")


def measure(configs, environment, args, learner_fns):
    """One num_envs: the sim case and, per algo, the learner and pipeline cases, all alternating."""
    n, iters, episode_length = configs[0].num_envs, args.iters, configs[0].episode_length
    sim_state = C.sim_reset(environment, n, seed=1)
    sim_fn = C.sim_chunk_fn(environment, n, iters, episode_length).lower(sim_state, jax.random.PRNGKey(0)).compile()
    cases = {"sim": C.Case(sim_fn, sim_state, C.key_seq(3))}
    compile_s = {}
    for config in configs:
        fns = C.train_fns(config)
        assert fns.chunk_iters == iters
        learner, replay = C.learner_and_replay(fns)
        t0 = time.perf_counter()
        ts = fns.init(jax.random.PRNGKey(0)).replace(learner=C.copy_tree(learner), replay=C.copy_tree(replay))
        cases[f"pipeline/{config.algo}"] = C.Case(C.compile_chunk(fns, ts), ts)
        compile_s[config.algo] = time.perf_counter() - t0
        key = (config.env, config.algo, config.buffer_capacity)
        if key not in learner_fns:
            learner_fns[key] = C.learner_chunk_fn(fns, iters).lower(learner, replay, jax.random.PRNGKey(0)).compile()
        cases[f"learner/{config.algo}"] = C.Case(learner_fns[key], learner, replay, C.key_seq(4))
    times = C.alternate(cases, args.repeats)
    if args.profile:
        import os

        for name, case in cases.items():
            with jax.profiler.trace(os.path.join(args.profile, f"{configs[0].env}-{n}-{name.replace('/', '-')}")):
                case.step()
    rows = []
    for config in configs:
        a = config.algo
        t = {"sim": C.median(times["sim"]), "learner": C.median(times[f"learner/{a}"]),
             "pipeline": C.median(times[f"pipeline/{a}"])}  # fmt: skip
        limit = t["sim"] + t["learner"]
        rows.append(dict(
            task=config.env,
            num_envs=n,
            algo=a,
            iters=iters,
            batch_size=config.batch_size,
            updates_per_iter=config.updates_per_iter,
            hidden_sizes=list(config.hidden_sizes),
            buffer_capacity=config.buffer_capacity,
            times_s={k: times[name] for k, name in (("sim", "sim"), ("learner", f"learner/{a}"),
                                                     ("pipeline", f"pipeline/{a}"))},
            median_s=t,
            pipeline_env_steps_per_s=n * iters / t["pipeline"],
            sim_env_steps_per_s=n * iters / t["sim"],
            updates_per_s=config.updates_per_iter * iters / t["learner"],
            pipeline_ms_per_iter=1e3 * t["pipeline"] / iters,
            sim_ms_per_iter=1e3 * t["sim"] / iters,
            learner_ms_per_iter=1e3 * t["learner"] / iters,
            limit_ms_per_iter=1e3 * limit / iters,
            overhead=t["pipeline"] / limit - 1.0,
            pipeline_compile_s=compile_s[a],
        ))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
