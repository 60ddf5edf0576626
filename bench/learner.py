"""2. Learner alone: gradient updates per second of each --algo at the default batch and network sizes.

Each case is one compiled scan of `--iters` iterations of the pipeline's own update schedule
(`updates_per_iter` updates per iteration in blocks of `policy_delay`, the actor, temperature and targets
on the first of each block; batches sampled from a replay buffer holding random transitions),
without any env step. Cases alternate round-robin; the ratio column is time per update against `sac`'s.

    python bench/learner.py --quick
    python bench/learner.py                                  # dsac-e, dsac-t, sac on hopper, batch 256
    python bench/learner.py --batch-size 1024                # GPU
"""

from __future__ import annotations

import time

import _common as C
import jax


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--task", default="hopper", help="sets the observation and action sizes")
    p.add_argument("--algos", type=C.str_list, default="dsac-e,dsac-t,sac")
    p.add_argument("--iters", type=int, default=25, help="iterations (updates_per_iter updates each) per timed call")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    p.add_argument(
        "--updates-per-iter",
        type=int,
        default=8,
        help="gradient updates per iteration (docs/performance.md's tables: 8)",
    )
    p.add_argument("--hidden-sizes", type=C.int_list, default=None, help="default: the config's")
    args = C.parse(p, {"algos": ["dsac-e", "sac"], "iters": 5, "repeats": 3}, argv)
    C.check_tasks(p, [args.task])
    C.check_algos(p, args.algos)
    if args.iters <= 0:
        p.error(f"--iters {args.iters} must be a positive integer")
    report = C.Report("learner", args)

    sizes = {
        k: v
        for k, v in dict(
            batch_size=args.batch_size,
            updates_per_iter=args.updates_per_iter,
            hidden_sizes=tuple(args.hidden_sizes) if args.hidden_sizes else None,
        ).items()
        if v is not None
    }
    cases, configs, compile_s = {}, {}, {}
    for algo in args.algos:
        base = C.config_or_exit(p, env=args.task, algo=algo, **sizes)
        # Sizes only: a small buffer holding one batch of random numbers; the update's cost depends on shapes.
        config = C.config_or_exit(
            p,
            env=args.task,
            algo=algo,
            num_envs=16,
            learning_starts=base.batch_size,
            buffer_size=max(base.batch_size, 16) * 4,
            total_steps=10**9,
            **sizes,
        )
        fns = C.train_fns(config)
        learner, replay = C.learner_and_replay(fns)
        t0 = time.perf_counter()
        fn = C.learner_chunk_fn(fns, args.iters)
        compiled = fn.lower(learner, replay, jax.random.PRNGKey(0)).compile()
        compile_s[algo] = time.perf_counter() - t0
        cases[algo] = C.Case(compiled, learner, replay, C.key_seq(7))
        configs[algo] = config
    times = C.alternate(cases, args.repeats)

    per_update = {a: C.median(times[a]) / (args.iters * configs[a].updates_per_iter) for a in args.algos}
    ref = per_update.get("sac")
    for algo in args.algos:
        c = configs[algo]
        report.add(
            algo=algo,
            task=args.task,
            batch_size=c.batch_size,
            hidden_sizes=list(c.hidden_sizes),
            updates_per_iter=c.updates_per_iter,
            policy_delay=c.policy_delay,
            iters=args.iters,
            times_s=times[algo],
            median_s=C.median(times[algo]),
            updates_per_s=1.0 / per_update[algo],
            ms_per_update=1e3 * per_update[algo],
            time_per_update_vs_sac=per_update[algo] / ref if ref else None,
            compile_s=compile_s[algo],
        )
    rows = [
        (r["algo"], r["batch_size"], "x".join(map(str, r["hidden_sizes"])), r["updates_per_s"], r["ms_per_update"],
         r["time_per_update_vs_sac"])
        for r in report.rows
    ]  # fmt: skip
    print(C.table(["algo", "batch", "hidden", "updates/s", "ms / update", "time / update vs sac"], rows))
    report.write()


if __name__ == "__main__":
    main()
