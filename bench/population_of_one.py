"""What a single run pays for being a population of one (issue 19): its training chunk with a member axis of size
1, vmapped (`vmap`) or as `population.lift` runs it (the axis dropped inside the program), against the same chunk
without the axis (`plain`: what a single run compiled before).

Per task, in this process, with the task's defaults (`make_config(env=task)`): the three chunks are compiled ahead of
time as run.py compiles them (state donated; compile seconds timed, the persistent cache off), then timed
alternately from the same warmed-up state, so that all see the same machine load; after the timed chunks each
state is compared with plain's (the largest difference over every array: 0 when the axis changes no number).

    python bench/population_of_one.py --tasks inverted_pendulum,hopper
    python bench/population_of_one.py --quick
"""

from __future__ import annotations

import time

import _common as C
import jax


def _compile(fn, state):
    t0 = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=0).lower(state).compile()
    return compiled, time.perf_counter() - t0


def measure(task: str, repeats: int, num_envs: int | None, p) -> dict:
    from mjx_tecrl.population import lift

    overrides = {"env": task, **({"num_envs": num_envs} if num_envs else {})}
    config = C.config_or_exit(p, **overrides)
    fns = C.train_fns(config)
    ts = C.warm_state(fns)
    one = jax.tree.map(lambda x: x[None], ts)
    fns_of = {"plain": fns.run_chunk, "vmap": jax.vmap(fns.run_chunk), "population": lift(fns.run_chunk, 1)}
    row: dict = {"task": task, "num_envs": config.num_envs, "updates_per_iter": config.updates_per_iter,
                 "chunk_env_steps": fns.chunk_iters * config.num_envs}  # fmt: skip
    cases = {}
    for name, fn in fns_of.items():
        state = C.copy_tree(ts if name == "plain" else one)
        compiled, row[f"{name}_compile_s"] = _compile(fn, state)
        cases[name] = C.Case(compiled, C.copy_tree(state))
    times = C.alternate(cases, repeats)
    for name, case in cases.items():
        row[f"{name}_env_steps_per_s"] = row["chunk_env_steps"] / C.median(times[name])
        row[f"{name}_chunk_s"] = times[name]
        if name != "plain":
            member = jax.tree.map(lambda x: x[0], case.state)
            row[f"{name}_largest_state_difference"] = C.largest_difference(cases["plain"].state, member)
    return row


def main(argv=None):
    p, args = C.parse_task_defaults(__doc__.splitlines()[0], {"repeats": 2}, argv)
    report = C.Report("population_of_one", args)
    for task in args.tasks:
        report.add(**measure(task, args.repeats, args.num_envs or None, p))
        print(f"{task} done", flush=True)
    headers = ["task", "chunk", "compile s", "env steps/s", "against plain", "largest state difference"]
    rows = [[r["task"], name, r[f"{name}_compile_s"], r[f"{name}_env_steps_per_s"],
             r[f"{name}_env_steps_per_s"] / r["plain_env_steps_per_s"], r.get(f"{name}_largest_state_difference", 0.0)]
            for r in report.rows for name in ("plain", "vmap", "population")]  # fmt: skip
    print(C.table(headers, rows))
    report.write()


if __name__ == "__main__":
    main()
