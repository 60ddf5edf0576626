#!/usr/bin/env bash
# bench/linesearch.py's question end to end: the same train.py run with MJX's scan line search (forced) and with
# the early exit (the CPU default), in ABBA order, one run at a time, same seed. Writes the four runs' summaries and
# whether their metrics (every column but the timings) are identical to one JSON.
#
#   bash bench/linesearch_train.sh OUT_DIR [train.py flags]
#   bash bench/linesearch_train.sh /tmp/ls --env halfcheetah --num-envs 256 --preset parallel --total-steps 40960 \
#       --eval-every 10240
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash bench/linesearch_train.sh OUT_DIR [train.py flags]}
shift
mkdir -p "$out"
scan() {  # train.py with EARLY_EXIT_LINESEARCH forced off before anything is traced
  python -c 'import runpy, sys
import mjx_tecrl.envs.gym_base as g
g.EARLY_EXIT_LINESEARCH = False
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")' "$@"
}
early() { python train.py "$@"; }
scan "$@" --no-progress --out "$out/scan1"
early "$@" --no-progress --out "$out/exit1"
early "$@" --no-progress --out "$out/exit2"
scan "$@" --no-progress --out "$out/scan2"
python - "$out" "$@" <<'PY'
import csv, json, os, sys

out, flags = sys.argv[1], sys.argv[2:]
runs = {}
for name in ("scan1", "exit1", "exit2", "scan2"):
    with open(os.path.join(out, name, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out, name, "metrics.csv")) as f:
        metrics = [{k: v for k, v in row.items() if "time" not in k and "per_second" not in k} for row in csv.DictReader(f)]
    runs[name] = {"summary": summary, "metrics": metrics}
train = {n: r["summary"]["train_time_s"] for n, r in runs.items()}
report = {
    "flags": flags,
    "train_time_s": train,
    "speedup": (train["scan1"] + train["scan2"]) / (train["exit1"] + train["exit2"]),
    "metrics_identical": all(r["metrics"] == runs["scan1"]["metrics"] for r in runs.values()),
    "summaries": {n: r["summary"] for n, r in runs.items()},
}
with open(os.path.join(out, "linesearch_train.json"), "w") as f:
    json.dump(report, f, indent=1)
print(json.dumps({k: report[k] for k in ("train_time_s", "speedup", "metrics_identical")}))
PY
