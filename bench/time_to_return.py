"""6. Time to a return: wall time until the deterministic eval return first reaches a threshold.

For each task and seed, our `dsac-e` and `sac` and brax's SAC run one after the other (alternating per
seed), each from scratch: compilation, random-action warm-up, then training chunks of `--eval-every` env
steps with an evaluation (`num_eval_envs` episodes, deterministic policy) after each, until the eval
return reaches the task's threshold, `--time-cap` seconds pass or `--max-steps` env steps are done.
Ours compile as run.py does (AOT, state donated) and run its chunk/evaluate loop without checkpoints;
brax runs its own `sac.train` at the same settings (bench/_brax.py) and is stopped from its progress
callback. Reported: wall time to the threshold with compilation, compile time (JAX's trace, lowering and
compile events, the same clock for both), the difference, and env steps to the threshold.

    python bench/time_to_return.py --quick
    python bench/time_to_return.py --targets inverted_pendulum:900 --seeds 0,1,2           # CPU
    python bench/time_to_return.py --targets hopper:1000 --seeds 0,1,2 --time-cap 1200
    python bench/time_to_return.py --systems dsac-e --cases tuned:32,parallel:256 --targets hopper:1000

`--cases PRESET:NUM_ENVS[:EVAL_EVERY],...` runs each system once per case (the serial `tuned` preset against the
`parallel` one, at several env counts), alternating per seed like the systems; a case's EVAL_EVERY (env steps)
replaces --eval-every's, so that a case that runs 10x the env steps per second evaluates as often in wall time.

`--window S` reads a run as at the threshold once the mean of its evaluations in the last S seconds of wall reaches
it (default 0: the first single evaluation at or above it). On a task whose evaluations scatter (Reacher's 10
episodes), a case that evaluates more often per second otherwise gets more draws at a noisy threshold.
"""

from __future__ import annotations

import math
import time

import _brax
import _common as C
import jax

SYSTEMS = ("dsac-e", "sac", "brax-sac")


class _Stop(Exception):
    pass


def target_list(text: str) -> list[tuple[str, float]]:
    import argparse

    out = []
    for item in C.str_list(text):
        name, sep, value = item.rpartition(":")
        try:
            out.append((name, float(value)))
        except ValueError:
            sep = ""
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{item!r} is not TASK:RETURN (e.g. hopper:1000)")
    return out


def case_list(text: str) -> list[tuple[str, int, int | None]]:
    """PRESET:NUM_ENVS[:EVAL_EVERY] items: (preset, num_envs, eval_every or None for --eval-every)."""
    import argparse

    from mjx_tecrl.envs.registry import PRESETS

    out = []
    for item in C.str_list(text):
        preset, *numbers = item.split(":")
        if preset not in PRESETS or len(numbers) not in (1, 2) or not all(n.isdigit() and int(n) > 0 for n in numbers):
            allowed = f"PRESET:NUM_ENVS[:EVAL_EVERY] with PRESET in {', '.join(PRESETS)}, positive integers"
            raise argparse.ArgumentTypeError(f"{item!r} is not {allowed}")
        out.append((preset, int(numbers[0]), int(numbers[1]) if len(numbers) == 2 else None))
    return out


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--targets", type=target_list, default="inverted_pendulum:900,hopper:1000",
                   help="TASK:RETURN pairs")  # fmt: skip
    p.add_argument("--systems", type=C.str_list, default=",".join(SYSTEMS), help="of " + ", ".join(SYSTEMS))
    p.add_argument("--seeds", type=C.seed_list, default="0,1,2")
    p.add_argument("--num-envs", type=int, default=None, help="default: the config's")
    p.add_argument("--cases", type=case_list, default=None,
                   help="PRESET:NUM_ENVS[:EVAL_EVERY] (default: the config's; EVAL_EVERY: --eval-every's)")  # fmt: skip
    p.add_argument("--eval-every", type=int, default=2048, help="env steps between evaluations (both trainers)")
    p.add_argument("--time-cap", type=float, default=600.0, help="seconds per run, compilation included")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="env steps per run at most")
    p.add_argument("--window", type=float, default=0.0,
                   help="seconds: reached once the mean of the evaluations in the last S s of wall is at the "
                        "threshold (0: the first evaluation at or above it)")  # fmt: skip
    args = C.parse(p, {"targets": [("inverted_pendulum", 900.0)], "seeds": [0], "systems": ["dsac-e", "brax-sac"],
                       "time_cap": 120.0, "max_steps": 30_000}, argv)  # fmt: skip
    C.check_tasks(p, [t for t, _ in args.targets])
    for s in args.systems:
        if s not in SYSTEMS:
            p.error(f"--systems: unknown {s!r}; allowed: {', '.join(SYSTEMS)}")
    if args.eval_every <= 0 or args.max_steps <= 0 or args.time_cap <= 0:
        p.error("--eval-every, --max-steps and --time-cap must be positive")
    if not 0 <= args.window < math.inf:
        p.error(f"--window: {args.window:g} is not a number of seconds >= 0")
    cases = args.cases or [(None, args.num_envs, None)]
    report = C.Report("time_to_return", args)

    for task, threshold in args.targets:
        C.env(task)  # built once, outside every timing
        for seed in args.seeds:
            for system, (preset, num_envs, eval_every) in [(s, c) for s in args.systems for c in cases]:
                algo = "sac" if system == "brax-sac" else system
                overrides = dict(env=task, algo=algo, seed=seed, eval_every=eval_every or args.eval_every,
                                 total_steps=args.max_steps)  # fmt: skip
                if preset:
                    overrides["preset"] = preset
                if num_envs:
                    overrides["num_envs"] = num_envs
                config = C.config_or_exit(p, **overrides)
                run = run_brax if system == "brax-sac" else run_ours
                result = run(config, threshold, args.time_cap, args.window)
                label = f"{system} {config.preset}:{config.num_envs}" if args.cases else system
                row = report.add(task=task, system=label, seed=seed, threshold=threshold, preset=config.preset,
                                 num_envs=config.num_envs, window_s=args.window, **result)  # fmt: skip
                print(_line(row), flush=True)

    rows = []
    for task, threshold in args.targets:
        for system in dict.fromkeys(r["system"] for r in report.rows):
            rs = [r for r in report.rows if r["task"] == task and r["system"] == system]
            hit = [r for r in rs if r["reached"]]
            med = [_median_if_all(rs, k) for k in ("wall_to_threshold_s", "compile_s", "wall_minus_compile_s",
                                                   "env_steps_to_threshold")]  # fmt: skip
            rows.append((task, threshold, system, f"{len(hit)}/{len(rs)}", *med, max(r["wall_s"] for r in rs)))
    print(C.table(["task", "threshold", "system", "reached", "median wall s", "compile s", "wall - compile s",
                   "env steps", "longest run s"], rows))  # fmt: skip
    report.write()


def _median_if_all(rows, key):
    """The median over seeds where every seed reached the threshold (else n/a: a censored median misleads)."""
    if not rows or not all(r["reached"] for r in rows):
        return math.nan
    return C.median([r[key] for r in rows])


def _line(r):
    if r["reached"]:
        return (f"{r['task']} {r['system']} seed {r['seed']}: {r['threshold']:g} at {r['env_steps_to_threshold']} "
                f"steps, {r['wall_to_threshold_s']:.0f}s ({r['compile_s']:.0f}s compile)")  # fmt: skip
    return (f"{r['task']} {r['system']} seed {r['seed']}: not reached within {r['wall_s']:.0f}s / "
            f"{r['env_steps']} steps (best {r['best_return']:.0f})")  # fmt: skip


def window_mean(evals, i, window):
    """The mean return of evaluation i (steps, wall, return) and those less than `window` s of wall before it."""
    recent = [evals[i][2]] + [ret for _, wall, ret in evals[:i] if wall > evals[i][1] - window]
    return sum(recent) / len(recent)


def reached_at(evals, threshold, window=0.0):
    """Index of the first evaluation whose `window_mean` is at or above `threshold`; None if none is."""
    return next((i for i in range(len(evals)) if window_mean(evals, i, window) >= threshold), None)


def _result(evals, t_compile, wall, threshold, window):
    i = reached_at(evals, threshold, window)
    hit = evals[i] if i is not None else None
    return dict(
        reached=hit is not None,
        env_steps_to_threshold=hit[0] if hit else None,
        wall_to_threshold_s=hit[1] if hit else None,
        compile_s=t_compile,
        wall_minus_compile_s=hit[1] - t_compile if hit else None,
        best_return=max((e[2] for e in evals), default=math.nan),
        env_steps=evals[-1][0] if evals else 0,
        wall_s=wall,
        evals=[list(e) for e in evals],
    )


def run_ours(config, threshold, time_cap, window=0.0):
    n = config.num_envs
    with C.CompileClock() as clock:
        t0 = time.perf_counter()
        fns = C.train_fns(config)
        ts = fns.init(jax.random.PRNGKey(config.seed))
        chunk = C.compile_chunk(fns, ts)
        eval_fn = jax.jit(fns.evaluate).lower(ts.learner, jax.random.PRNGKey(0)).compile()
        for iters in fns.warmup_chunks():  # as run.py: the warm-up in the chunk program
            ts, _ = chunk(ts, iters, True)
    eval_key = jax.random.PRNGKey(config.seed + 1_000_003)  # as run.py
    evals = []
    while True:
        ts, _ = chunk(ts)
        ev = eval_fn(ts.learner, jax.random.fold_in(eval_key, len(evals)))
        ret = float(ev["eval/episode_return"])
        steps, wall = int(ts.iteration) * n, time.perf_counter() - t0
        evals.append((steps, wall, ret))
        if window_mean(evals, -1, window) >= threshold or wall >= time_cap or steps >= config.total_steps:
            break
    return _result(evals, clock.seconds, time.perf_counter() - t0, threshold, window)


def run_brax(config, threshold, time_cap, window=0.0):
    n = config.num_envs
    prefill = -(-config.learning_starts // n) * n
    per_epoch = -(-config.eval_every // n) * n
    epochs = max(-(-(config.total_steps - prefill) // per_epoch), 1)
    evals = []

    def progress(step, metrics):
        wall = time.perf_counter() - t0
        if step == 0:  # brax's evaluation of the initial policy
            return
        ret = float(metrics["eval/episode_reward"])
        evals.append((int(step), wall, ret))
        if window_mean(evals, -1, window) >= threshold or wall >= time_cap:
            raise _Stop

    with C.CompileClock() as clock:
        t0 = time.perf_counter()
        try:
            _brax.train(config, progress, num_timesteps=prefill + epochs * per_epoch, num_evals=epochs + 1,
                        num_eval_envs=config.num_eval_envs)  # fmt: skip
        except _Stop:
            pass
    return _result(evals, clock.seconds, time.perf_counter() - t0, threshold, window)


if __name__ == "__main__":
    main()
