"""4. Our pipeline against brax's own SAC trainer at equal settings, alternating in one process.

brax's `sac.train` runs once, briefly (its prefill and one training epoch of `--iters` iterations, one
iteration: every env steps once, then `updates_per_iter` gradient updates), which compiles its program;
its pmapped training epoch is kept (bench/_brax.py, `capture_epoch`) and then called again and again on
its own state, alternating round-robin with one chunk of `--iters` iterations of each of our variants
(`sac`, `sac` with policy_delay 1, which does brax's work per update, and `dsac-e`), every call timed to
the end of all its outputs. The shim for `jax.device_put_replicated` and every matched and unmatched
setting: bench/_brax.py.

brax's own `training/sps` of the epoch after its compiling one is kept in the JSON for reference (one
sample, taken while nothing of ours ran; not alternated).

Goals (issue 7): our `sac` >= 1.5x brax SAC's env steps/s; `dsac-e` <= 1.6x our `sac`'s time per update.

    python bench/brax_sac.py --quick
    python bench/brax_sac.py --tasks hopper --envs 16,64 --iters 20                     # CPU
    python bench/brax_sac.py --tasks humanoid,ant --envs 1024,4096 --batch-size 1024    # GPU
"""

from __future__ import annotations

import time

import _brax
import _common as C
import jax

VARIANTS = {"sac": dict(algo="sac"), "sac-pd1": dict(algo="sac", policy_delay=1), "dsac-e": dict(algo="dsac-e")}


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=C.str_list, default="hopper,ant,humanoid")
    p.add_argument("--envs", type=C.int_list, default="64,256,1024,4096", help="num_envs values")
    p.add_argument("--iters", type=int, default=50, help="iterations per epoch / timed chunk")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    p.add_argument(
        "--updates-per-iter",
        type=int,
        default=8,
        help="gradient updates per iteration (docs/performance.md's tables: 8)",
    )
    p.add_argument("--buffer-size", type=int, default=None, help="default: the config's")
    p.add_argument("--hidden-sizes", type=C.int_list, default=None, help="default: the config's")
    p.add_argument("--variants", type=C.str_list, default=",".join(VARIANTS), help="ours, of " + ", ".join(VARIANTS))
    args = C.parse(p, {"tasks": ["inverted_pendulum"], "envs": [32], "iters": 10, "repeats": 3,
                       "buffer_size": 10_000, "variants": ["sac", "dsac-e"]}, argv)  # fmt: skip
    for v in args.variants:
        if v not in VARIANTS:
            p.error(f"--variants: unknown {v!r}; allowed: {', '.join(VARIANTS)}")
    if "sac" not in args.variants:
        p.error("--variants must include sac (brax's settings are read from its config)")
    C.check_tasks(p, args.tasks)
    if args.iters <= 0:
        p.error(f"--iters {args.iters} must be a positive integer")
    sizes = {k: getattr(args, k) for k in ("batch_size", "updates_per_iter", "buffer_size") if getattr(args, k)}
    if args.hidden_sizes:
        sizes["hidden_sizes"] = tuple(args.hidden_sizes)
    report = C.Report("brax_sac", args)
    for task in args.tasks:
        for n in args.envs:
            common = dict(env=task, num_envs=n, eval_every=args.iters * n, total_steps=10**12, **sizes)
            configs = {name: C.config_or_exit(p, **common, **VARIANTS[name]) for name in args.variants}
            row = measure(configs, args)
            report.add(**row)
            print(C.table(HEADERS, [table_row(row)]).splitlines()[-1], flush=True)
    print(C.table(HEADERS, [table_row(r) for r in report.rows]))
    report.write()


HEADERS = ["task", "num_envs", "brax sac env steps/s", "ours sac", "ours sac pd1", "ours dsac-e",
           "sac / brax", "sac pd1 / brax", "dsac-e / sac time per update"]  # fmt: skip


def table_row(r):
    s = r["env_steps_per_s"]
    return (r["task"], r["num_envs"], s["brax-sac"], s["sac"], s.get("sac-pd1"), s.get("dsac-e"), r["sac_vs_brax"],
            r["sac_pd1_vs_brax"], r["dsac_e_vs_sac_time"])  # fmt: skip


def measure(configs, args):
    ref = configs["sac"]
    n, iters = ref.num_envs, args.iters
    cases = {}
    for name, config in configs.items():
        fns = C.train_fns(config)
        learner, replay = C.learner_and_replay(fns)
        ts = fns.init(jax.random.PRNGKey(0)).replace(learner=learner, replay=replay)
        cases[name] = C.Case(C.compile_chunk(fns, ts), ts)

    # brax: learning_starts env steps of prefill, then two epochs of `iters` iterations (the first compiles);
    # its own `training/sps` of the second is kept for reference.
    prefill = -(-ref.learning_starts // n) * n
    reported = []
    t0 = time.perf_counter()
    with _brax.capture_epoch() as brax_epoch:
        _brax.train(ref, lambda step, m: reported.append(float(m.get("training/sps", "nan"))),
                    num_timesteps=prefill + 2 * iters * n, num_evals=3, num_eval_envs=1)  # fmt: skip
    brax_wall = time.perf_counter() - t0
    cases["brax-sac"] = brax_epoch
    times = C.alternate(cases, args.repeats)
    sps = {name: n * iters / C.median(t) for name, t in times.items()}
    per_update = {name: C.median(t) / (iters * ref.updates_per_iter) for name, t in times.items()}
    return dict(
        task=ref.env,
        num_envs=n,
        iters=iters,
        batch_size=ref.batch_size,
        updates_per_iter=ref.updates_per_iter,
        hidden_sizes=list(ref.hidden_sizes),
        buffer_capacity=ref.buffer_capacity,
        times_s=times,
        env_steps_per_s=sps,
        ms_per_update={k: 1e3 * v for k, v in per_update.items()},
        sac_vs_brax=sps["sac"] / sps["brax-sac"],
        sac_pd1_vs_brax=sps["sac-pd1"] / sps["brax-sac"] if "sac-pd1" in sps else None,
        dsac_e_vs_sac_time=per_update["dsac-e"] / per_update["sac"] if "dsac-e" in per_update else None,
        brax_train_wall_s=brax_wall,
        brax_reported_sps=reported[-1],
    )


if __name__ == "__main__":
    main()
