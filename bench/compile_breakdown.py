"""Where a run's compile time goes (issue 21): each program the host loop compiles, split into tracing (Python to
jaxpr), lowering (jaxpr to StableHLO) and XLA's compile, and the training chunk against its two halves, the
simulation alone and the learner alone (the same iterations, bench/_common.py's chunks); then the host loop's three
programs compiled as run.py does (init, then the evaluation on a thread beside the chunk).

One process, the persistent cache off, in the order of the table (a later program reuses nothing of an earlier
one's compile but Python's own caches: run it twice to see the noise):

    python bench/compile_breakdown.py --tasks inverted_pendulum,hopper
    python bench/compile_breakdown.py --quick
"""

from __future__ import annotations

import threading
import time

import _common as C
import jax
import numpy as np


def _stages(jitted, *args) -> dict[str, float]:
    t0 = time.perf_counter()
    traced = jitted.trace(*args)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    lowered.compile()
    t3 = time.perf_counter()
    return {"trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2, "total_s": t3 - t0}


def measure(task: str, num_envs: int | None, p) -> list[dict]:
    config = C.config_or_exit(p, env=task, **({"num_envs": num_envs} if num_envs else {}))
    fns = C.train_fns(config)
    key = jax.random.PRNGKey(0)
    ts = jax.eval_shape(fns.init, key)
    learner, replay = C.learner_and_replay(fns)
    env_state = C.sim_reset(fns.env, config.num_envs)
    donated = lambda fn: jax.jit(fn, donate_argnums=0)  # noqa: E731 - as run.py compiles the state's programs
    programs = {  # the host loop's programs, as `run.py` compiles them, then the chunk's halves
        "init": (jax.jit(fns.init), (key,)),
        "training chunk (and warm-up)": (donated(fns.run_chunk), (ts, np.int32(0), np.bool_(False))),
        "evaluation": (jax.jit(fns.evaluate), (ts.learner, key)),
        "the chunk's simulation alone": (C.sim_chunk_fn(fns.env, config.num_envs, fns.chunk_iters,
                                                        config.episode_length), (env_state, key)),
        "the chunk's learner alone": (C.learner_chunk_fn(fns, fns.chunk_iters), (learner, replay, key)),
    }  # fmt: skip
    rows = []
    for name, (jitted, args) in programs.items():
        rows.append({"task": task, "num_envs": config.num_envs, "updates_per_iter": config.updates_per_iter,
                     "policy_delay": config.policy_delay, "program": name, **_stages(jitted, *args)})  # fmt: skip
        print(f"{task} {name}: {rows[-1]['total_s']:.1f} s", flush=True)
    # The host loop's three as run.py compiles them: init, then the evaluation on a thread beside the chunk (new
    # wrappers, so that nothing compiled above is reused).
    t0 = time.perf_counter()
    jax.jit(lambda k: fns.init(k)).lower(key).compile()
    evaluation = threading.Thread(
        target=lambda: jax.jit(lambda lr, k: fns.evaluate(lr, k)).lower(ts.learner, key).compile()
    )
    evaluation.start()
    jax.jit(lambda s, n, w: fns.run_chunk(s, n, w), donate_argnums=0).lower(ts, np.int32(0), np.bool_(False)).compile()
    evaluation.join()
    rows.append({"task": task, "num_envs": config.num_envs, "program": "as run.py: init, then the rest at once",
                 "trace_s": None, "lower_s": None, "compile_s": None, "total_s": time.perf_counter() - t0})  # fmt: skip
    print(f"{task} as run.py: {rows[-1]['total_s']:.1f} s", flush=True)
    return rows


def main(argv=None):
    p, args = C.parse_task_defaults(__doc__.splitlines()[0], {}, argv)
    report = C.Report("compile_breakdown", args)
    for task in args.tasks:
        for row in measure(task, args.num_envs or None, p):
            report.add(**row)
    keys = ["task", "program", "trace_s", "lower_s", "compile_s", "total_s"]
    print(C.table(["task", "program", "trace s", "lower s", "XLA compile s", "total s"],
                  [[r[k] for k in keys] for r in report.rows]))  # fmt: skip
    report.write()


if __name__ == "__main__":
    main()
