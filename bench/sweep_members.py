"""S members in one sweep program against S single runs one after another (issue: sweeps).

For each task and S, side by side in this process:
  sweep:      `train.py --sweep rho=... --seeds ...` with S members: compile once, train all at once;
  sequential: S single runs of the same config (the compiled program is the same for every seed, so the
              fair sequential cost is one compile plus S trainings).
Prints a table and writes JSON. Usage:
  python bench/sweep_members.py --tasks inverted_pendulum hopper --members 1 2 4 8
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time

import jax


def _run(overrides: dict, sweep=None) -> dict:
    from mjx_tecrl import run as run_lib

    plan = run_lib.prepare(overrides, sweep)
    return run_lib.run(plan, out=io.StringIO())


def measure(task: str, s: int, num_envs: int, chunks: int, updates: int, tmp: str) -> dict:
    from mjx_tecrl.sweep import SweepSpec

    base = dict(env=task, num_envs=num_envs, learning_starts=num_envs * 4, eval_every=num_envs * 25,
                updates_per_iter=updates, progress=False, checkpoint_every=0, num_eval_envs=4)  # fmt: skip
    base["total_steps"] = base["learning_starts"] + chunks * base["eval_every"]
    t0 = time.time()
    sw = _run({**base, "out": os.path.join(tmp, f"{task}-sweep{s}")}, SweepSpec((), s) if s > 1 else None)
    sweep_wall = time.time() - t0
    seq_train, seq_compile, seq_wall = 0.0, None, 0.0
    for k in range(s):
        t0 = time.time()
        one = _run({**base, "seed": k, "out": os.path.join(tmp, f"{task}-seq{s}-{k}")})
        seq_wall += time.time() - t0
        seq_train += one["train_time_s"]
        seq_compile = one["compile_time_s"] if seq_compile is None else seq_compile
    steps = s * (sw["env_steps"] - base["learning_starts"])
    return {
        "task": task, "members": s, "num_envs": num_envs, "updates_per_iter": updates,
        "sweep_compile_s": sw["compile_time_s"], "sweep_train_s": sw["train_time_s"], "sweep_wall_s": sweep_wall,
        "sweep_env_steps_per_s": steps / sw["train_time_s"],
        "seq_compile_s": seq_compile, "seq_train_s": seq_train, "seq_wall_s": seq_wall,
        "seq_fair_total_s": seq_compile + seq_train,
        "seq_env_steps_per_s": steps / seq_train,
        "speedup_train": seq_train / sw["train_time_s"],
        "speedup_total": (seq_compile + seq_train) / (sw["compile_time_s"] + sw["train_time_s"]),
        "load_avg": os.getloadavg()[0],
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["inverted_pendulum", "hopper"])
    p.add_argument("--members", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--updates-per-iter", type=int, default=8)
    p.add_argument("--chunks", type=int, default=2, help="training chunks of 25 iterations each")
    p.add_argument("--out", default="bench/results/sweep_members.json")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in a.tasks:
            for s in a.members:
                r = measure(task, s, a.num_envs, a.chunks, a.updates_per_iter, tmp)
                rows.append(r)
                print(
                    f"{task:18s} S={s:<3d} sweep {r['sweep_env_steps_per_s']:8.0f} env steps/s "
                    f"(compile {r['sweep_compile_s']:5.1f}s train {r['sweep_train_s']:6.1f}s)  sequential "
                    f"{r['seq_env_steps_per_s']:8.0f} (train {r['seq_train_s']:6.1f}s)  speedup train "
                    f"{r['speedup_train']:.2f}x, with compile {r['speedup_total']:.2f}x  load {r['load_avg']:.1f}",
                    flush=True,
                )
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "jax": jax.__version__, "backend": jax.default_backend(), "devices": jax.device_count()}  # fmt: skip
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
