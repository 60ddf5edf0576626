"""Run-directory outputs: TensorBoard events (spec §8 names), metrics.csv, JSON files, console lines."""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any


def _strict(obj: Any) -> Any:
    """NaN and infinities become null: strict JSON readers reject them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def write_json(path: str, obj: Any) -> None:
    """Write strict JSON atomically (temp file + rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_strict(obj), f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


HPARAM_METRICS = ("eval/episode_return", "train/policy_entropy", "train/alpha")  # the HPARAMS view's columns


class RunLogger:
    """TensorBoard scalars under the metric names, one metrics.csv row per evaluation, and with `track` the same
    scalars in Weights & Biases."""

    def __init__(
        self,
        run_dir: str,
        tensorboard: bool = True,
        resume_step: int | None = None,
        track: dict[str, Any] | None = None,
    ):
        """`resume_step`: the env step of the checkpoint a resumed run continues from. Rows and events logged
        after it by the killed process (whose chunk the checkpoint does not hold) are dropped from metrics.csv
        and hidden from TensorBoard (purge_step), so the repeated chunk is not logged twice. `track`: wandb.init's
        project, name, group and config; the W&B run's id follows from the directory, so a resume continues it."""
        self.run_dir = run_dir
        self.csv_path = os.path.join(run_dir, "metrics.csv")
        self._writer = None
        self._wandb = None
        if track is not None:
            import hashlib

            import wandb

            run_id = hashlib.sha1(os.path.abspath(run_dir).encode()).hexdigest()[:16]
            self._wandb = wandb.init(dir=run_dir, id=run_id, resume="allow", reinit="create_new", **track)
        if resume_step is not None:
            self._drop_rows_after(resume_step)
        if tensorboard:
            from tensorboardX import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(os.path.join(run_dir, "tb"), purge_step=purge)

    def _drop_rows_after(self, env_steps: int) -> None:
        if not os.path.exists(self.csv_path):
            return
        with open(self.csv_path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        col = rows[0].index("env_steps") if "env_steps" in rows[0] else None
        keep = [rows[0]] + [r for r in rows[1:] if col is None or (r and float(r[col]) <= env_steps)]
        if len(keep) == len(rows):
            return
        tmp = self.csv_path + ".tmp"
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(keep)
        os.replace(tmp, self.csv_path)

    def hparams(self, values: dict[str, Any], metrics: tuple[str, ...] = HPARAM_METRICS) -> None:
        """The run's hyperparameters for TensorBoard's HPARAMS view, against the scalar tags `metrics`. Numbers,
        strings and booleans as they are; anything else (hidden_sizes) as its text; None left out."""
        if self._writer is None:
            return
        from tensorboardX.summary import hparams

        flat = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in values.items() if v is not None}
        file_writer = self._writer._get_file_writer()
        for summary in hparams(flat, {m: math.nan for m in metrics}):
            file_writer.add_summary(summary)
        self._writer.flush()

    def scalars(self, metrics: dict[str, float], env_steps: int) -> None:
        if self._wandb is not None:
            self._wandb.log(dict(metrics), step=env_steps)
        if self._writer is None:
            return
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, env_steps)
        self._writer.flush()

    def csv_row(self, row: dict[str, float]) -> None:
        """Append a row; the header is fixed by the first row ever written to the file."""
        exists = os.path.exists(self.csv_path) and os.path.getsize(self.csv_path) > 0
        if exists:
            with open(self.csv_path) as f:
                header = next(csv.reader(f))
        else:
            header = list(row)
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
            if not exists:
                writer.writeheader()
            writer.writerow(row)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_csv(path: str) -> list[dict[str, float]]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def format_line(env_steps: int, total: int, metrics: dict[str, float], sps: float) -> str:
    """One plain log line per evaluation (for CI logs and files)."""
    ret = metrics.get("eval/episode_return", math.nan)
    alpha = metrics.get("train/alpha", math.nan)
    return f"steps {env_steps:>9d}/{total}  eval_return {ret:9.2f}  alpha {alpha:8.4f}  env_steps/s {sps:8.0f}"
