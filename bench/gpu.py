"""The GPU script (issue 18): five parts in order, each written into one JSON as it finishes.

    python bench/gpu.py                  # one GPU, about 8 minutes with compiling
    python bench/gpu.py --parts a,b      # some parts only
    python bench/gpu.py --quick          # the same commands at toy sizes: a CPU test of this script

(a) humanoid at 4096 envs with the parallel preset (the default there), trained for --train-seconds: env steps/s,
    eval return, compile time and peak device memory, from train.py's summary.json and metrics.csv;
(b) env steps/s of the simulation alone (bench/sim.py) and of the full pipeline (bench/pipeline.py) at 1024 and
    4096 envs, humanoid and halfcheetah;
(c) our sac against brax's SAC at equal settings (bench/brax_sac.py; issue 7's 1.5x);
(d) a 16-member rho sweep on hopper for --sweep-seconds, then a robustness study of 1000 perturbed worlds of
    (a)'s policy;
(e) MJX's line search as a scan (the GPU default) against the early-exit loop (the CPU default; bench/linesearch.py)
    at 4096 envs, halfcheetah and humanoid: whether the GPU should switch too. Runs if the budget is left;
    `--parts e` runs it alone.

Every command runs as a subprocess with a deadline (its part's, within --budget-s in all); a command that runs
out is stopped and recorded as such, and the JSON keeps what finished before it. The train runs end by SIGINT:
their rc is 130 and their summary says "interrupted", as asked.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import _common as C

from mjx_tecrl.logging import write_json

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PARTS = ("a", "b", "c", "d", "e")
# seconds each part may take at most (within --budget-s); the train parts are stopped by SIGINT before that
PART_LIMIT_S = {"a": 330, "b": 150, "c": 120, "d": 150, "e": 300}
RHOS = ",".join(str(r) for r in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0))
GRID = ",".join(f"{0.5 + 0.1 * i:.1f}" for i in range(10))  # 10 scales per axis, 3 axes: 1000 worlds

FULL = {
    "train": ["--env", "humanoid", "--num-envs", "4096", "--total-steps", "1000000000"],
    "sim": ["--tasks", "humanoid,halfcheetah", "--envs", "1024,4096", "--repeats", "3"],
    "pipeline": ["--tasks", "humanoid,halfcheetah", "--envs", "1024,4096", "--algos", "dsac-e", "--iters", "25",
                 "--repeats", "3", "--batch-size", "8192", "--updates-per-iter", "8"],
    "brax": ["--tasks", "humanoid", "--envs", "1024,4096", "--repeats", "3", "--variants", "sac"],
    "sweep": ["--env", "hopper", "--num-envs", "256", "--total-steps", "1000000000", "--sweep", f"rho={RHOS}"],
    "linesearch": ["--tasks", "halfcheetah,humanoid", "--envs", "4096", "--iters", "20", "--repeats", "3"],
    "episodes": "1",
}  # fmt: skip
QUICK = {
    "train": ["--env", "inverted_pendulum", "--num-envs", "8", "--preset", "parallel", "--hidden-sizes", "16,16",
              "--learning-starts", "64", "--total-steps", "1000000", "--eval-every", "400", "--num-eval-envs", "2",
              "--episode-length", "50"],
    "sim": ["--tasks", "inverted_pendulum", "--envs", "8", "--iters", "5", "--repeats", "1"],
    "pipeline": ["--quick", "--repeats", "1"],
    "brax": ["--quick", "--repeats", "1"],
    "sweep": ["--env", "inverted_pendulum", "--num-envs", "8", "--hidden-sizes", "16,16", "--learning-starts", "64",
              "--total-steps", "1000000", "--eval-every", "400", "--num-eval-envs", "2", "--episode-length", "50",
              "--sweep", "rho=0.5,1.0"],
    "linesearch": ["--quick"],
    "episodes": "1",
}  # fmt: skip
NO_BIG_CHECKPOINTS = ["--no-checkpoint-buffer", "--checkpoint-every", "0", "--no-progress"]


def run_command(cmd: list[str], timeout: float, interrupt_after: float | None = None) -> dict[str, Any]:
    """Run `cmd`; with `interrupt_after`, SIGINT it that many seconds after it prints 'compiled in' (train.py then
    finishes its chunk, writes its summary and exits). Killed at `timeout`. Returns rc, timing and output tail."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: list[str] = []
    compiled: list[float] = []  # when 'compiled in' was printed

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if not compiled and "compiled in" in line:
                compiled.append(time.time())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    interrupted = timed_out = False
    while proc.poll() is None:
        if (
            interrupt_after is not None
            and compiled
            and not interrupted
            and time.time() - compiled[0] >= interrupt_after
        ):
            proc.send_signal(signal.SIGINT)
            interrupted = True
        if time.time() - t0 > timeout:
            proc.kill()
            timed_out = True
            break
        time.sleep(0.1)
    proc.wait()
    reader.join(timeout=5)
    return {
        "command": " ".join(cmd[1:]),
        "rc": proc.returncode,
        "timed_out": timed_out,
        "wall_s": round(time.time() - t0, 1),
        "output_tail": [ln for ln in lines if ln.strip()][-8:],
    }


def _train(args, sizes: dict, key: str, out_dir: str, seconds: float, limit: float) -> dict[str, Any]:
    cmd = [sys.executable, "train.py", *sizes[key], *NO_BIG_CHECKPOINTS, "--out", out_dir]
    result = run_command(cmd, timeout=limit, interrupt_after=seconds)
    summary_path = os.path.join(out_dir, "summary.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            result["summary"] = json.load(f)
    metrics = os.path.join(out_dir, "metrics.csv")
    if os.path.exists(metrics):
        with open(metrics) as f:
            rows = list(csv.DictReader(f))
        result["evals"] = [
            {"env_steps": int(float(r["env_steps"])), "eval_return": float(r["eval/episode_return"]),
             "wall_time_s": float(r["wall_time_s"])}
            for r in rows
        ]  # fmt: skip
    return result


def _script(name: str, flags: list[str], out: str, limit: float) -> dict[str, Any]:
    result = run_command([sys.executable, os.path.join(BENCH, name), *flags, "--out", out], timeout=limit)
    if os.path.exists(out):
        with open(out) as f:
            result["report"] = json.load(f)
    return result


def part_a(args, sizes, work, limit):
    return {"train": _train(args, sizes, "train", os.path.join(work, "humanoid"), args.train_seconds, limit)}


def part_b(args, sizes, work, limit):
    t0 = time.time()
    sim = _script("sim.py", sizes["sim"], os.path.join(work, "sim.json"), limit)
    pipe = _script("pipeline.py", sizes["pipeline"], os.path.join(work, "pipeline.json"), limit - (time.time() - t0))
    return {"sim": sim, "pipeline": pipe}


def part_c(args, sizes, work, limit):
    return {"brax_sac": _script("brax_sac.py", sizes["brax"], os.path.join(work, "brax_sac.json"), limit)}


def part_d(args, sizes, work, limit):
    t0 = time.time()
    sweep = _train(args, sizes, "sweep", os.path.join(work, "sweep"), args.sweep_seconds, limit)
    run_a = os.path.join(work, "humanoid")
    if not os.path.exists(os.path.join(run_a, "checkpoints")):
        return {"sweep": sweep, "robustness": "skipped: part (a)'s run has no checkpoint"}
    out = os.path.join(work, "robustness")
    axes = [f"--perturb={name}={GRID}" for name in ("mass", "friction", "gravity")]
    cmd = [sys.executable, "-m", "mjx_tecrl.robustness", run_a, *axes, "--episodes", sizes["episodes"], "--out", out]
    robust = run_command(cmd, timeout=limit - (time.time() - t0))
    robust["worlds"] = 10**3
    return {"sweep": sweep, "robustness": robust}


def part_e(args, sizes, work, limit):
    return {"linesearch": _script("linesearch.py", sizes["linesearch"], os.path.join(work, "linesearch.json"), limit)}


def main(argv=None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--parts", type=C.str_list, default="a,b,c,d,e", help="which of a, b, c, d, e, in that order")
    p.add_argument("--budget-s", type=float, default=480.0, help="seconds for all parts; later parts are skipped")
    p.add_argument("--train-seconds", type=float, default=180.0, help="(a): training time after compiling")
    p.add_argument("--sweep-seconds", type=float, default=60.0, help="(d): the sweep's training time")
    p.add_argument("--work-dir", default="", help="where the runs go (default: a temporary directory)")
    args = C.parse(p, {}, argv)
    unknown = [x for x in args.parts if x not in PARTS]
    if unknown:
        p.error(f"--parts {','.join(unknown)} is unknown; allowed: {', '.join(PARTS)}")
    for name in ("budget_s", "train_seconds", "sweep_seconds"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)} must be positive")
    sizes = QUICK if args.quick else FULL
    machine = C.machine()
    out = args.out or os.path.join(C.RESULTS_DIR, f"gpu{'_quick' if args.quick else ''}_{machine['backend']}.json")
    work = args.work_dir or tempfile.mkdtemp(prefix="mjx_tecrl_gpu_")
    report: dict[str, Any] = {"machine": machine, "quick": args.quick, "work_dir": work, "parts": {}}
    deadline = time.time() + args.budget_s
    for part in [x for x in PARTS if x in args.parts]:
        left = deadline - time.time()
        if left < 10:
            report["parts"][part] = {"skipped": f"the {args.budget_s:g} s budget was spent"}
        else:
            t0 = time.time()
            fn = {"a": part_a, "b": part_b, "c": part_c, "d": part_d, "e": part_e}[part]
            report["parts"][part] = {**fn(args, sizes, work, min(left, PART_LIMIT_S[part])), "wall_s": time.time() - t0}
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        write_json(out, report)  # after every part: a run cut short keeps what finished
        print(f"part ({part}) done -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
