"""The robustness study's command line (the study itself: `mjx_tecrl.study`, its report `mjx_tecrl.study_report`):

    python -m mjx_tecrl.robustness RUN_DIR [RUN_DIR...] --perturb mass=0.5,1,1.5 --perturb friction=0.5,1,2

Writes robustness.csv (one row per policy and grid point), episodes.npz (every episode's return, length and
whether it fell), study.json, summary.txt and the plots, and prints the summary (relative to the unperturbed
return).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import NoReturn

import numpy as np

from mjx_tecrl import commands
from mjx_tecrl.config import ConfigError
from mjx_tecrl.envs.perturb import DEFAULT_PUSH_EVERY, NAMES
from mjx_tecrl.study import CSV_NAME, Axis, Settings, grid, parse_axis, run_study, write_csv
from mjx_tecrl.study_report import plot, summary

PROG = "python -m mjx_tecrl.robustness"


def fail(message: str) -> NoReturn:
    commands.fail(PROG, message)


# --- the command line ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from mjx_tecrl.policy import add_checkpoint_flag

    p = commands.Parser(
        error_name=PROG,
        prog=PROG,
        description="Evaluate every policy of the given runs (every member of a sweep) on a grid of perturbed "
        "physics and noise, with the deterministic policy, in one jitted program per run configuration.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (train.py --out, or a sweep)")
    p.add_argument(
        "--perturb",
        action="append",
        required=True,
        metavar="NAME=V1,V2,...",
        help=f"one grid axis; NAME in {', '.join(NAMES)} (scales: 1 is unperturbed; noise, push, delay: 0)",
    )
    p.add_argument("--one-at-a-time", action="store_true", help="each axis alone instead of their product")
    p.add_argument("--episodes", type=int, default=32, metavar="N", help="episodes per policy and grid point")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="key of the episodes' initial states and noise")
    p.add_argument(
        "--max-envs", type=int, default=4096, metavar="N", help="environments simulated at once (memory bound)"
    )
    p.add_argument(
        "--push-every", type=int, default=DEFAULT_PUSH_EVERY, metavar="N", help="mean control steps between pushes"
    )
    p.add_argument("--out", default="", help="output directory (default RUN_DIR/robustness, or ./robustness-<time>)")
    add_checkpoint_flag(p)
    return p


def _out_dir(args: argparse.Namespace) -> str:
    if args.out:
        if os.path.exists(os.path.join(args.out, CSV_NAME)):
            raise ConfigError(f"--out {args.out!r} already holds a study ({CSV_NAME}); choose another --out")
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ConfigError(f"--out {args.out!r} exists and is not a directory")
        return args.out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if len(args.runs) == 1:
        out = os.path.join(args.runs[0], "robustness")
        return out if not os.path.exists(out) else f"{out}-{stamp}"
    return f"robustness-{stamp}"


def validate(args: argparse.Namespace) -> tuple[list[Axis], Settings]:
    """Everything checkable before loading: the grid, the sizes and the run directories' configs."""
    from mjx_tecrl.rundir import read_config

    axes = [parse_axis(t) for t in args.perturb]
    seen = [a.name for a in axes]
    dup = sorted({n for n in seen if seen.count(n) > 1})
    if dup:
        raise ConfigError(f"--perturb {dup[0]} is given twice; give each perturbation once with all its values")
    for flag, value, low in (("--episodes", args.episodes, 1), ("--max-envs", args.max_envs, 1),
                             ("--push-every", args.push_every, 1), ("--seed", args.seed, 0)):  # fmt: skip
        if value < low:
            raise ConfigError(f"{flag} {value} must be {'positive' if low else 'non-negative'}")
    envs = {}
    for run_dir in args.runs:
        if not os.path.isdir(run_dir):
            raise ConfigError(f"RUN_DIR {run_dir!r} does not exist")
        envs[run_dir] = read_config(run_dir).env
    if len(set(envs.values())) > 1:
        detail = ", ".join(f"{d}: {e}" for d, e in envs.items())
        raise ConfigError(f"the runs are on different envs ({detail}); study one env at a time")
    settings = Settings(args.one_at_a_time, args.episodes, args.seed, args.max_envs, args.push_every)
    return axes, settings


def _check_perturbable(run, axes: list[Axis]) -> None:
    from mjx_tecrl.envs.perturb import NotPerturbable, PerturbedEnv

    try:
        perturbable = PerturbedEnv(getattr(run.fns.env, "nominal", run.fns.env))
    except NotPerturbable as e:
        fail(f"--perturb: {run.config.env}: {e}")
    if any(a.name == "push" for a in axes) and not perturbable.can_push:
        fail(f"--perturb push: {run.config.env} has no root body that can move horizontally to push")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        axes, settings = validate(args)
        out_dir = _out_dir(args)
        from mjx_tecrl.policy import load_run

        runs = [load_run(d, which=args.checkpoint) for d in args.runs]
    except ConfigError as e:
        fail(str(e))
    _check_perturbable(runs[0], axes)
    points = grid(axes, settings.one_at_a_time)
    n_policies = sum(len(r.members) for r in runs)
    print(f"{n_policies} policies from {len(runs)} run(s) on {runs[0].config.env}: {len(points)} grid points "
          f"x {settings.episodes} episodes", flush=True)  # fmt: skip
    rows, arrays, timing = run_study(runs, axes, settings, log=lambda s: print(s, flush=True))
    os.makedirs(out_dir, exist_ok=True)
    write_csv(os.path.join(out_dir, CSV_NAME), rows, axes)
    np.savez_compressed(os.path.join(out_dir, "episodes.npz"), **arrays)
    plots = plot(rows, points, axes, out_dir)
    text = summary(rows, points)
    with open(os.path.join(out_dir, "summary.txt"), "w") as f:
        f.write(text + "\n")
    study = {"runs": args.runs, "axes": {a.name: list(a.values) for a in axes}, "checkpoint": args.checkpoint,
             **{k: v for k, v in dataclasses.asdict(settings).items() if k != "max_envs"}, "policies": n_policies,
             **timing}  # fmt: skip
    with open(os.path.join(out_dir, "study.json"), "w") as f:
        json.dump(study, f, indent=2)
    print(text)
    print(f"wrote {os.path.join(out_dir, CSV_NAME)} and {len(plots)} plot(s) in {out_dir} "
          f"({timing['wall_s']:.1f}s, of which compiling {timing['compile_s']:.1f}s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
