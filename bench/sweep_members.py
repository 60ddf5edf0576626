"""S members in one sweep program against S single runs one after another (issue: sweeps).

Per task, in this process, alternating so that both see the same machine load:
  single runs: seeds 0 .. max(S)-1, each `train.py`'s run at the same config (compile, warm-up, train,
               evaluate); "S runs in a row" is the first S of them, so its cost is measured, not scaled;
  sweeps:      `train.py --seeds S` for each S > 1 (S members stacked, vmapped, one compiled program).
A sweep of S = 1 is the single run itself. Wall times are whole runs (compile included); the training
time is the chunks alone (summary.json's train_time_s). Prints a table and writes JSON:

    python bench/sweep_members.py --tasks inverted_pendulum,hopper --members 1,2,4,8
    python bench/sweep_members.py --quick
"""

from __future__ import annotations

import io
import os
import tempfile
import time

import _common as C


def _run(overrides: dict, seeds: int | None = None) -> tuple[dict, float]:
    from mjx_tecrl import run as run_lib
    from mjx_tecrl import rundir
    from mjx_tecrl.sweep import SweepSpec

    t0 = time.perf_counter()
    plan = rundir.prepare(overrides, SweepSpec((), seeds) if seeds else None)
    summary = run_lib.run(plan, out=io.StringIO())
    return summary, time.perf_counter() - t0


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=C.str_list, default="inverted_pendulum,hopper")
    p.add_argument("--members", type=C.int_list, default="1,2,4,8", help="sweep sizes S")
    p.add_argument("--num-envs", type=int, default=32, help="environments per member")
    p.add_argument("--updates-per-iter", type=int, default=8)
    p.add_argument("--chunks", type=int, default=4, help="training chunks of 25 iterations each")
    args = C.parse(p, {"tasks": ["inverted_pendulum"], "members": [1, 2], "num_envs": 8, "chunks": 1}, argv)
    C.check_tasks(p, args.tasks)
    if min(args.num_envs, args.updates_per_iter, args.chunks) <= 0:
        p.error("--num-envs, --updates-per-iter and --chunks must be positive integers")
    report = C.Report("sweep_members", args)
    largest = max(args.members)
    sweeps = sorted(s for s in set(args.members) if s > 1)
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            n = args.num_envs
            base = dict(env=task, num_envs=n, learning_starts=n * 4, eval_every=n * 25, num_eval_envs=4,
                        updates_per_step=args.updates_per_iter / n, progress=False, checkpoint_every=0)  # fmt: skip
            base["total_steps"] = base["learning_starts"] + args.chunks * base["eval_every"]
            singles, swept = [], {}
            order = [("single", k) for k in range(largest)]
            for i, s in enumerate(sweeps):  # interleave: single 0, sweep, single 1, sweep, ...
                order.insert(2 * i + 1, ("sweep", s))
            for kind, v in order:
                if kind == "single":
                    summary, wall = _run({**base, "seed": v, "out": os.path.join(tmp, f"{task}-single{v}")})
                    singles.append((summary, wall))
                else:
                    swept[v] = _run({**base, "out": os.path.join(tmp, f"{task}-sweep{v}")}, seeds=v)
                print(f"{task} {kind} {v} done, load {os.getloadavg()[0]:.2f}", flush=True)
            for s in sorted(set(args.members)):
                seq = singles[:s]
                seq_wall = sum(w for _, w in seq)
                seq_train = sum(x["train_time_s"] for x, _ in seq)
                sw, sw_wall = swept[s] if s > 1 else singles[0]
                steps = s * (sw["env_steps"] - base["learning_starts"])  # trained env steps of all members
                report.add(
                    task=task, members=s, num_envs=n, updates_per_iter=args.updates_per_iter,
                    env_steps_per_member=sw["env_steps"],
                    sweep_compile_s=sw["compile_time_s"], sweep_train_s=sw["train_time_s"], sweep_wall_s=sw_wall,
                    sweep_env_steps_per_s=steps / sw["train_time_s"],
                    seq_compile_s=sum(x["compile_time_s"] for x, _ in seq), seq_train_s=seq_train,
                    seq_wall_s=seq_wall, seq_env_steps_per_s=steps / seq_train,
                    speedup_train=seq_train / sw["train_time_s"], speedup_wall=seq_wall / sw_wall,
                )  # fmt: skip
    headers = ["task", "S", "sweep wall s", "compile s", "train s", "env steps/s", "S runs in a row: wall s",
               "train s", "env steps/s", "speedup: wall", "train"]  # fmt: skip
    keys = ["task", "members", "sweep_wall_s", "sweep_compile_s", "sweep_train_s", "sweep_env_steps_per_s",
            "seq_wall_s", "seq_train_s", "seq_env_steps_per_s", "speedup_wall", "speedup_train"]  # fmt: skip
    print(C.table(headers, [[r[k] for k in keys] for r in report.rows]))
    report.write()


if __name__ == "__main__":
    main()
