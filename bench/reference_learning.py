"""Learning against a reference: ours (train.py) and Stable-Baselines3's SAC on the same v5 task, side by side.

    python bench/reference_learning.py --tasks halfcheetah --steps 100000 --seeds 3
    python bench/reference_learning.py --tasks hopper --steps 100000 --systems dsac-e,sb3-sac --jobs 2
    python bench/reference_learning.py --tasks walker2d --steps 150000 --report-only

Per task, every system learns from scratch for `--steps` env steps, `--seeds` seeds (0, 1, ..., or from
`--first-seed`: more seeds of a setting go to a new `--runs-dir`, whose report `--merge`s the first), with an
evaluation (10 deterministic episodes) every 5,000 env steps:
- ours (`dsac-e`, `dsac-t`, `sac`): `python train.py --env TASK --algo A --total-steps N` with the task's defaults
  (plus `--extra` flags), all seeds in one `--seeds` program (each member computes what the single run with its
  seed computes; tests/test_sweep.py), on MJX;
- `sb3-sac`: SB3's SAC (bench/_sb3.py) on Gymnasium's native MuJoCo env, one process per seed, with the same
  warm-up (10,000 uniform random steps), replay ratio (one update per env step) and gamma.

Every system's gamma is the task's preset's, or `--gamma` for all of them (never in `--extra`, since SB3's runs,
shared by variants of ours, must match it: one recorded at another gamma is refused).

Runs go to `--runs-dir/TASK/SYSTEM` and are reused when finished (a run dir with summary.json), so a cut-short
invocation resumes where it stopped (ours from their last checkpoint, `train.py --resume`; SB3's from the start)
and `--report-only` re-tabulates. The report (JSON, default
bench/results/reference_learning_<tasks>_<backend>.json) has every run's curve and, per task and system, the
median (and range) over seeds of the eval return at fixed env steps and of the score: the mean of the last three
evaluations. `--figures DIR` draws one learning-curve figure per task with `mjx_tecrl.plot`.

Wall times: ours is one program for all seeds (its wall / seeds is the per-seed figure); SB3 runs one seed per
process on `--torch-threads` threads. With `--jobs 2` two runs share the machine, which slows both: compare wall
times only between runs made alone.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shlex
import subprocess
import sys
import time

import _common as C
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OURS = ("dsac-e", "dsac-t", "sac")
SYSTEMS = (*OURS, "sb3-sac")
AT_STEPS = (20_000, 50_000, 100_000, 150_000)  # eval return at these env steps (the last evaluation at or before)


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=C.str_list, default="halfcheetah")
    p.add_argument("--systems", type=C.str_list, default=",".join(SYSTEMS))
    p.add_argument("--steps", type=int, default=100_000, help="env steps per run")
    p.add_argument("--seeds", type=int, default=3, help="seeds S .. S+N-1, S the --first-seed")
    p.add_argument("--first-seed", type=int, default=0, metavar="S", help="the first seed (default 0)")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--extra", default="", help="extra train.py flags for our systems, e.g. '--policy-delay 1'")
    p.add_argument("--gamma", type=float, default=None, help="every system's gamma (default: each task's preset's)")
    p.add_argument("--runs-dir", default=os.path.join(ROOT, "runs", "reference"), help="our runs go here")
    p.add_argument("--sb3-dir", default="", help="SB3's runs (default: --runs-dir), shared by variants of ours")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (2 on a 2-core CPU halves each's speed)")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true", help="tabulate finished runs, start none")
    p.add_argument("--figures", default="", help="write DIR/learning_<task>.png per task (mjx_tecrl.plot)")
    p.add_argument("--cut-at", type=int, default=0, metavar="STEPS", help="with --report-only: compare runs cut "
                   "short (unfinished ones included) at a common env step, their curves up to STEPS")  # fmt: skip
    p.add_argument("--merge", type=C.str_list, default=[], metavar="JSON,...", help="earlier reports whose runs "
                   "(directories gone) join this one's table and figures, where this one has no such run")  # fmt: skip
    args = C.parse(p, {"steps": 12_000, "seeds": 1, "eval_every": 1_000, "systems": ["sac", "sb3-sac"]}, argv)
    _check_args(p, args)
    learning_starts = min(10_000, args.steps // 2)
    if not args.out:
        tasks = "+".join(args.tasks)
        args.out = os.path.join(C.RESULTS_DIR, f"reference_learning_{tasks}{'_quick' if args.quick else ''}_cpu.json")
    args.sb3_dir = args.sb3_dir or args.runs_dir
    every = []  # every system's runs: the report holds those finished, whichever systems this invocation runs
    for task in args.tasks:
        for system in SYSTEMS:
            if system in OURS:
                every.append(_ours_job(args, task, system, learning_starts))
            else:
                every += [_sb3_job(args, task, seed, learning_starts) for seed in _seeds(args)]
    if error := _run_of_other_seeds(args, every) or _sb3_run_of_other_gamma(args, every):
        p.error(error)
    report = C.Report("reference_learning", args)
    jobs = [j for j in every if j["system"] in args.systems]
    todo = [j for j in jobs if not _finished(j["dir"])]
    if todo and not args.report_only:
        print(f"{len(todo)} of {len(jobs)} runs to do ({len(jobs) - len(todo)} finished already)", flush=True)
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for job, rc in zip(todo, pool.map(_run, todo), strict=True):
                if rc != 0:
                    print(f"failed ({rc}): {' '.join(job['cmd'])}; see {job['log']}", file=sys.stderr, flush=True)
                _write(report, every, args)  # after each run: a cut-short invocation keeps what finished

    rows = _write(report, every, args)
    print(C.table(HEADERS, [_table_row(r) for r in rows]))
    if args.figures and args.merge:
        _records_figures(args.figures, report.extra["runs"])
    elif args.figures:
        _figures(args, every)
    return 0


def _check_args(p, args) -> None:
    """Bad input: one line naming the value and what is allowed, exit status 2, before any run starts."""
    C.check_tasks(p, args.tasks)
    for s in args.systems:
        if s not in SYSTEMS:
            p.error(f"--systems: unknown {s!r}; allowed: {', '.join(SYSTEMS)}")
    if min(args.steps, args.seeds, args.eval_every, args.jobs, args.torch_threads) <= 0:
        p.error("--steps, --seeds, --eval-every, --jobs and --torch-threads must be positive integers")
    if "--gamma" in shlex.split(args.extra):
        p.error("--extra: --gamma is not allowed there; allowed: --gamma on its own, which SB3's runs share")
    if args.gamma is not None:  # train.py's own check (mjx_tecrl.config), before any run starts
        from mjx_tecrl.config import ConfigError, make_config, validate

        try:
            validate(make_config(env=args.tasks[0], gamma=args.gamma))
        except ConfigError as e:
            p.error(str(e))
    if args.first_seed < 0:
        p.error(f"--first-seed: {args.first_seed} is negative; allowed: an integer >= 0")


def _ours_job(args, task: str, system: str, learning_starts: int) -> dict:
    d = os.path.join(args.runs_dir, task, system)
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--env", task, "--algo", system,
           "--total-steps", str(args.steps), "--eval-every", str(args.eval_every),
           "--learning-starts", str(learning_starts), "--seed", str(args.first_seed), "--out", d, "--no-progress",
           *_gamma_flag(args), *shlex.split(args.extra)]  # fmt: skip
    if args.seeds > 1:
        cmd += ["--seeds", str(args.seeds)]
    resume = [sys.executable, os.path.join(ROOT, "train.py"), "--resume", d, "--total-steps", str(args.steps),
              "--no-progress"]  # fmt: skip
    return dict(task=task, system=system, dir=d, cmd=cmd, resume=resume, log=d + ".log")


def _run_of_other_seeds(args, jobs: list[dict]) -> str:
    """The error for a run of ours in `jobs` started from another seed than `--first-seed` ('' where none): a run
    dir is reused as it is, so its seeds would be reported as these."""
    from mjx_tecrl import rundir

    for job in jobs:
        if job["system"] not in OURS or not os.path.isfile(os.path.join(job["dir"], rundir.CONFIG_FILE)):
            continue
        seed = int(rundir.read_config_dict(job["dir"]).get("seed", 0))  # a --seeds program's first
        if seed != args.first_seed:
            return (f"--first-seed: {args.first_seed}, but {job['dir']} holds a run from seed {seed}; allowed: "
                    f"{seed}, or a new --runs-dir for these seeds")  # fmt: skip
    return ""


def _seeds(args) -> range:
    return range(args.first_seed, args.first_seed + args.seeds)


def _sb3_job(args, task: str, seed: int, learning_starts: int) -> dict:
    d = os.path.join(args.sb3_dir, task, "sb3-sac", f"s{seed}")
    cmd = [sys.executable, os.path.join(HERE, "_sb3.py"), "--task", task, "--seed", str(seed),
           "--total-steps", str(args.steps), "--eval-every", str(args.eval_every),
           "--learning-starts", str(learning_starts), "--torch-threads", str(args.torch_threads),
           "--out", d, *_gamma_flag(args)]  # fmt: skip
    return dict(task=task, system="sb3-sac", dir=d, cmd=cmd, log=d + ".log")


def _gamma_flag(args) -> list[str]:
    return [] if args.gamma is None else ["--gamma", repr(args.gamma)]


def _sb3_run_of_other_gamma(args, jobs: list[dict]) -> str:
    """The error for an SB3 run in `jobs` made at another gamma than this invocation's ('' where none): SB3's runs
    are shared by variants of ours, and reused as they are."""
    from mjx_tecrl import rundir
    from mjx_tecrl.config import make_config

    for job in jobs:
        if job["system"] != "sb3-sac" or not os.path.isfile(os.path.join(job["dir"], rundir.CONFIG_FILE)):
            continue
        recorded = float(rundir.read_config_dict(job["dir"])["gamma"])
        wanted = args.gamma if args.gamma is not None else make_config(env=job["task"]).gamma
        if recorded != wanted:
            return (f"--gamma: {wanted}, but {job['dir']} holds an SB3 run at gamma {recorded}; allowed: {recorded}, "
                    f"or a new --sb3-dir for this gamma")  # fmt: skip
    return ""


def _finished(run_dir: str) -> bool:
    return os.path.isfile(os.path.join(run_dir, "summary.json"))


def _run(job: dict) -> int:
    cmd, mode = job["cmd"], "w"
    if os.path.isdir(job["dir"]) and not _finished(job["dir"]):  # cut short earlier
        if job.get("resume"):  # ours: train.py continues from its last checkpoint
            cmd, mode = job["resume"], "a"
        else:  # SB3 keeps no checkpoint: start it over
            import shutil

            shutil.rmtree(job["dir"])
    os.makedirs(os.path.dirname(job["dir"]), exist_ok=True)
    print(f"start {job['task']} {job['system']}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.time()
    with open(job["log"], mode) as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    print(f"end {job['task']} {job['system']} ({rc}) after {time.time() - t0:.0f}s", flush=True)
    return rc


def _reportable(run_dir: str, cut_at: int) -> bool:
    """Finished, or with `cut_at`, holding evaluations at or past it (a run stopped there)."""
    if _finished(run_dir) or not cut_at or not os.path.isfile(os.path.join(run_dir, "config.json")):
        return _finished(run_dir)
    from mjx_tecrl.plot import load_curves

    return all(c.metrics["env_steps"].size and c.metrics["env_steps"][-1] >= cut_at for c in load_curves(run_dir))


def _curves(job: dict, cut_at: int = 0) -> list[dict]:
    """One record per seed of a run: its evaluations (up to `cut_at` env steps, where given) and its summary (an
    unfinished run's: the wall time of its last row)."""
    from mjx_tecrl.plot import load_curves

    summary = {}
    if _finished(job["dir"]):
        with open(os.path.join(job["dir"], "summary.json")) as f:
            summary = json.load(f)
    out, curves = [], load_curves(job["dir"])
    summary.setdefault("members", len(curves))
    for curve in curves:
        m = curve.metrics
        if cut_at:
            m = {k: v[m["env_steps"] <= cut_at] for k, v in m.items()}
        summary.setdefault("wall_time_s", float(m["wall_time_s"][-1]))
        seeds = summary.get("members", 1)
        out.append(dict(
            task=job["task"], system=job["system"], seed=int(curve.settings.get("seed", 0)), dir=job["dir"],
            env_steps=m["env_steps"].tolist(), eval_return=m["eval/episode_return"].tolist(),
            alpha=m["train/alpha"].tolist() if "train/alpha" in m else None,
            policy_entropy=m["train/policy_entropy"].tolist() if "train/policy_entropy" in m else None,
            wall_s=summary["wall_time_s"] / seeds, program_wall_s=summary["wall_time_s"], seeds_in_program=seeds,
            compile_s=summary.get("compile_time_s", 0.0), gradient_steps=summary.get("gradient_steps"),
        ))  # fmt: skip
    return out


def score(env_steps: list[float], returns: list[float], k: int = 3) -> float:
    """The mean eval return of the last `k` evaluations (issue 17's score at a budget)."""
    return float(np.mean(returns[-k:])) if returns else float("nan")


def return_at(env_steps: list[float], returns: list[float], step: int, within: int) -> float:
    """The eval return of the last evaluation at or before `step`, if it lies within `within` env steps of it."""
    idx = [i for i, s in enumerate(env_steps) if s <= step]
    if not idx or step - env_steps[idx[-1]] >= within:
        return float("nan")
    return float(returns[idx[-1]])


def _summarise(records: list[dict], eval_every: int) -> list[dict]:
    rows = []
    keys = sorted({(r["task"], r["system"]) for r in records}, key=lambda k: (k[0], SYSTEMS.index(k[1])))
    for task, system in keys:
        rs = sorted((r for r in records if (r["task"], r["system"]) == (task, system)), key=lambda r: r["seed"])
        row = dict(task=task, system=system, seeds=[r["seed"] for r in rs])
        for step in AT_STEPS:
            vals = [return_at(r["env_steps"], r["eval_return"], step, eval_every) for r in rs]
            row[f"at_{step}"] = _stats(vals)
        row["score"] = _stats([score(r["env_steps"], r["eval_return"]) for r in rs])
        row["env_steps"] = max(r["env_steps"][-1] for r in rs)
        row["wall_s_per_seed"] = _stats([r["wall_s"] for r in rs])
        row["seeds_in_program"] = sorted({r["seeds_in_program"] for r in rs})  # more than one size: merged reports
        rows.append(row)
    return rows


def _stats(values: list[float]) -> dict:
    v = np.array([x for x in values if np.isfinite(x)], float)
    if not len(v):
        return dict(median=None, min=None, max=None, values=values)
    return dict(median=float(np.median(v)), min=float(v.min()), max=float(v.max()), values=values)


def _write(report, jobs: list[dict], args) -> list[dict]:
    cut = getattr(args, "cut_at", 0)
    records = [c for j in jobs if _reportable(j["dir"], cut) for c in _curves(j, cut)]
    records += _merged(getattr(args, "merge", []), records, args.tasks)
    rows = _summarise(records, args.eval_every)
    report.rows = rows
    report.extra = {"runs": records, "commands": {j["dir"]: " ".join(j["cmd"][1:]) for j in jobs}}
    report.write()
    return rows


def _merged(paths: list[str], records: list[dict], tasks: list[str]) -> list[dict]:
    """The runs of earlier reports (`--merge`) on `tasks` that `records` lack (by task, system and seed)."""
    have = {(r["task"], r["system"], r["seed"]) for r in records}
    out = []
    for path in paths:
        with open(path) as f:
            runs = json.load(f)["runs"]
        out += [r for r in runs if r["task"] in tasks and (r["task"], r["system"], r["seed"]) not in have]
    return out


def _records_figures(out_dir: str, records: list[dict]) -> None:
    """learning_<task>.png from the reports' records (eval return, alpha and policy entropy against env steps), for
    runs whose directories are gone (`--merge`); `mjx_tecrl.plot.figure`, its other panels left empty."""
    from mjx_tecrl.plot import Curve, figure

    columns = {"eval_return": "eval/episode_return", "alpha": "train/alpha", "policy_entropy": "train/policy_entropy"}
    os.makedirs(out_dir, exist_ok=True)
    for task in sorted({r["task"] for r in records}):
        groups: dict[str, list] = {}
        for r in sorted((r for r in records if r["task"] == task), key=lambda r: SYSTEMS.index(r["system"])):
            metrics = {"env_steps": np.asarray(r["env_steps"], float)}
            metrics |= {col: np.asarray(r[k], float) for k, col in columns.items() if r.get(k)}
            settings = {"algo": r["system"], "rho": 0.0, "gamma": 0.99}  # no reference lines: H0 is not recorded
            groups.setdefault(r["system"], []).append(Curve(f"{r['system']} s{r['seed']}", settings, metrics))
        path = os.path.join(out_dir, f"learning_{task}.png")
        figure(groups).savefig(path, dpi=100)
        print(f"wrote {path}")


HEADERS = ["task", "system", "seeds", "at 20k", "at 50k", "at 100k", "at 150k", "score (last 3 evals)",
           "env steps", "wall per seed"]  # fmt: skip


def _table_row(r: dict) -> tuple:
    def cell(s: dict) -> str:
        if s["median"] is None:
            return "-"
        return f"{s['median']:.0f} ({s['min']:.0f} .. {s['max']:.0f})"

    wall, sizes = r["wall_s_per_seed"]["median"], r["seeds_in_program"]
    if len(sizes) > 1:
        wall_cell = f"{wall:.0f} s (median; programs of {' and '.join(map(str, sizes))} seeds)"
    else:
        wall_cell = f"{wall:.0f} s" + (f" (1/{sizes[0]} of one program)" if sizes[0] > 1 else "")
    return (
        r["task"],
        r["system"],
        len(r["seeds"]),
        *(cell(r[f"at_{s}"]) for s in AT_STEPS),
        cell(r["score"]),
        f"{r['env_steps']:.0f}",
        wall_cell,
    )


def _figures(args, jobs: list[dict]) -> None:
    from mjx_tecrl.plot import plot_runs

    os.makedirs(args.figures, exist_ok=True)
    for task in args.tasks:
        dirs = [j["dir"] for j in jobs if j["task"] == task and _finished(j["dir"])]
        if dirs:
            path = os.path.join(args.figures, f"learning_{task}.png")
            plot_runs(dirs, path, group_by="algo")
            print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
