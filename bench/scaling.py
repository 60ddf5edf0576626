"""5. Scaling with num_envs: pipeline env steps/s, memory and compile time.

Per task and num_envs, `run_chunk` is compiled as run.py does (AOT, state donated); compile time is the
wall time of that lowering and compilation (median over --repeats fresh compilations with a fresh jit, no
persistent cache). Memory is XLA's memory analysis of the compiled chunk (arguments + outputs - aliased +
temporaries; donation makes the state's input and output share memory), and on GPU the allocator's peak
so far (sizes run in ascending order). Throughput: one chunk per size, sizes alternating round-robin.

    python bench/scaling.py --quick
    python bench/scaling.py --tasks hopper --envs 16,64,256 --iters 10 --compile-repeats 1    # CPU
    python bench/scaling.py --tasks humanoid,ant --envs 256,1024,2048,4096 --batch-size 1024  # GPU
"""

from __future__ import annotations

import time

import _common as C
import jax

from mjx_tecrl.config import ALGOS


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=C.str_list, default="hopper,ant,humanoid")
    p.add_argument("--envs", type=C.int_list, default="16,64,256,1024,2048,4096", help="num_envs values")
    p.add_argument("--algo", default="dsac-e", choices=ALGOS)
    p.add_argument("--iters", type=int, default=50, help="iterations per timed chunk")
    p.add_argument("--compile-repeats", type=int, default=1, help="fresh compilations timed per size")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    p.add_argument(
        "--updates-per-iter",
        type=int,
        default=8,
        help="gradient updates per iteration (docs/performance.md's tables: 8)",
    )
    p.add_argument("--buffer-size", type=int, default=None, help="default: the config's")
    args = C.parse(p, {"tasks": ["inverted_pendulum"], "envs": [16, 64], "iters": 5, "repeats": 3,
                       "buffer_size": 10_000}, argv)  # fmt: skip
    C.check_tasks(p, args.tasks)
    if args.iters <= 0 or args.compile_repeats <= 0:
        p.error("--iters and --compile-repeats must be positive integers")
    sizes = {k: getattr(args, k) for k in ("batch_size", "updates_per_iter", "buffer_size") if getattr(args, k)}
    report = C.Report("scaling", args)

    for task in args.tasks:
        cases, rows = {}, {}
        for n in sorted(args.envs):
            config = C.config_or_exit(p, env=task, algo=args.algo, num_envs=n, eval_every=args.iters * n,
                                      learning_starts=0, total_steps=10**12, **sizes)  # fmt: skip
            fns = C.train_fns(config)
            learner, replay = C.learner_and_replay(fns)
            ts = fns.init(jax.random.PRNGKey(0)).replace(learner=learner, replay=replay)
            compile_s = []
            for i in range(args.compile_repeats):
                fresh = fns if i == 0 else C.train_fns(config)  # new functions: nothing cached in memory
                t0 = time.perf_counter()
                with C.CompileClock() as clock:
                    chunk = jax.jit(fresh.run_chunk, donate_argnums=0).lower(ts).compile()
                compile_s.append(time.perf_counter() - t0)
            cases[n] = C.Case(chunk, ts)
            cases[n].step()  # first call: allocations for the device peak below
            rows[n] = dict(
                task=task,
                num_envs=n,
                algo=args.algo,
                iters=args.iters,
                batch_size=config.batch_size,
                updates_per_iter=config.updates_per_iter,
                buffer_capacity=config.buffer_capacity,
                compile_s=C.median(compile_s),
                compile_s_all=compile_s,
                compile_events_s=clock.seconds,
                **C.memory_of(chunk),
                device_peak_bytes_so_far=C.device_peak_bytes(),
                max_rss_bytes_so_far=C.max_rss_bytes(),
            )
        times = C.alternate(cases, args.repeats, warm=0)
        del cases
        for n in sorted(args.envs):
            t = C.median(times[n])
            report.add(**rows[n], times_s=times[n], env_steps_per_s=n * args.iters / t,
                       ms_per_iter=1e3 * t / args.iters)  # fmt: skip
    mib = lambda b: None if b is None else b / 2**20  # noqa: E731
    headers = ["task", "num_envs", "env steps/s", "ms / iter", "compile s", "chunk memory MiB", "device peak MiB"]
    keys = ["task", "num_envs", "env_steps_per_s", "ms_per_iter", "compile_s"]
    rows = [(*(r[k] for k in keys), mib(r["total_bytes"]), mib(r["device_peak_bytes_so_far"])) for r in report.rows]
    print(C.table(headers, rows))
    report.write()


if __name__ == "__main__":
    main()
