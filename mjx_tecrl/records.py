"""What a run records on the host, per member: its logs and learning curve (`MemberLog`), the progress line
(`Reporter`, a progress callback), its policy files, the checkpoint's meta and the summaries at the end."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from mjx_tecrl import export, memory
from mjx_tecrl import sweep as sweep_lib
from mjx_tecrl.config import Config
from mjx_tecrl.logging import RunLogger, format_line, write_json

MAX_TENSORBOARD_MEMBERS = 256  # beyond this many members, only metrics.csv per member (file handles)


@dataclass
class MemberLog:
    """Host-side record of one member (or the single run): loggers, best and last eval, learning curve."""

    logger: RunLogger | None
    best: float = -math.inf
    last_return: float = math.nan
    diverged_at: int | None = None
    steps: list[int] = dataclasses.field(default_factory=list)
    returns: list[float] = dataclasses.field(default_factory=list)

    @classmethod
    def open(cls, directory: str, writer: bool, tensorboard: bool, resume_step: int | None = None,
             track: dict[str, Any] | None = None) -> MemberLog:  # fmt: skip
        if not writer:
            return cls(None)
        os.makedirs(directory, exist_ok=True)
        return cls(RunLogger(directory, tensorboard=tensorboard, resume_step=resume_step, track=track))

    def restore(self, meta: dict[str, Any], index: int) -> None:
        saved = meta.get("members")
        record = saved[index] if saved else meta
        self.best = float(record.get("best_eval_return", -math.inf) or -math.inf)
        self.diverged_at = record.get("diverged_at_env_step")
        if self.logger is not None and os.path.exists(self.logger.csv_path):  # the curve so far (resume)
            import csv

            with open(self.logger.csv_path) as f:
                for r in csv.DictReader(f):
                    self.steps.append(int(float(r["env_steps"])))
                    self.returns.append(float(r["eval/episode_return"]))

    def log(self, row: dict[str, float], env_steps: int, wall: float) -> bool:
        """Record one evaluation; returns whether it is the best so far."""
        ret = row["eval/episode_return"]
        self.last_return = ret
        improved = math.isfinite(ret) and ret > self.best
        if improved:
            self.best = ret
        self.steps.append(env_steps)
        self.returns.append(ret)
        if self.logger is not None:
            self.logger.scalars(row, env_steps)
            self.logger.csv_row({"env_steps": env_steps, "wall_time_s": wall, **row})
        return improved

    def last_mean(self, k: int) -> float:
        """Mean eval return of the last `k` evaluations (the score at a budget: issue 17 uses k = 3)."""
        return float(np.mean(self.returns[-k:])) if self.returns else math.nan

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()


def open_member_logs(pop, meta: dict[str, Any], writer: bool, resume_step: int | None) -> list[MemberLog]:
    """Every member's log, its best and curve restored from `meta` on a resume; on a new run the member's
    hyperparameters go to TensorBoard's HPARAMS view (and to Weights & Biases' config under --track)."""
    config, logs = pop.plan.config, []
    for i in range(len(pop)):
        hparams = {**config.to_dict(), "seed": pop.seed(i), **pop.members[i].get("hyperparams", {})}
        log = MemberLog.open(pop.metrics_dir(i), writer, len(pop) <= MAX_TENSORBOARD_MEMBERS, resume_step,
                             _wandb_init(config, pop, i, hparams))  # fmt: skip
        log.restore(meta, i)
        if log.logger is not None and resume_step is None:
            log.logger.hparams(hparams)
        logs.append(log)
    return logs


def _wandb_init(config: Config, pop, member: int, hparams: dict[str, Any]) -> dict[str, Any] | None:
    """wandb.init's arguments for one member under --track (a sweep's members grouped by the sweep), else None."""
    if not config.track:
        return None
    name = os.path.basename(os.path.normpath(pop.plan.run_dir))
    if pop.is_sweep:
        return {"project": config.wandb_project, "name": f"{name}/m{member:03d}", "group": name, "config": hparams}
    return {"project": config.wandb_project, "name": name, "config": hparams}


# How far below rho * H0 the policy entropy may sit, unwarned, under a satisfied budget: healthy HalfCheetah runs at
# gamma 0.99 sat up to 2.1 nats below it; Swimmer's collapse at 0.9999 passed 3 at 60k env steps (docs/decisions.md).
ENTROPY_WARNING_NATS = 3.0


def entropy_warning(row: dict[str, float]) -> str | None:
    """A warning when dsac-e's policy entropy is `ENTROPY_WARNING_NATS` or more per step below the budget's
    rho * H0 while the trajectory constraint reads satisfied (so alpha keeps falling) and the entropy floor is not
    acting: the entropy critic reports an older, wider policy (docs/decisions.md, "The entropy floor"). Else None."""
    names = ("train/policy_entropy", "train/step_entropy_budget", "train/trajectory_entropy", "train/entropy_budget")
    if not all(math.isfinite(row.get(n, math.nan)) for n in names) or row.get("diag/entropy_floor_binds", 0.0) > 0:
        return None
    entropy, per_step, trajectory, budget = (row[n] for n in names)
    if entropy > per_step - ENTROPY_WARNING_NATS or trajectory < budget:
        return None
    return (
        f"policy entropy {entropy:.1f} nats per step is {per_step - entropy:.1f} below rho*H0 = {per_step:.1f}, yet "
        f"the trajectory constraint reads satisfied ({trajectory:.4g} against the budget {budget:.4g}) and alpha "
        f"({row.get('train/alpha', math.nan):.2g}) keeps falling: the entropy critic trails the falling entropy; "
        f"--entropy-floor N raises alpha whenever the entropy is N nats below rho*H0 (docs/decisions.md, "
        f"'The entropy floor')"
    )


class Reporter:
    """The progress callback that prints: a tqdm bar on a terminal, else one line per evaluation; and, once per
    member, `entropy_warning`'s line."""

    def __init__(self, config: Config, env_steps: int, out):
        self.out, self.total, self.bar = out, config.total_steps, None
        self.warned: set[int] = set()
        if config.progress and hasattr(out, "isatty") and out.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=env_steps, unit="step", unit_scale=True, file=out)

    def __call__(self, env_steps: int, rows: list[dict[str, float]]) -> None:
        for i, member_row in enumerate(rows):
            warning = None if i in self.warned else entropy_warning(member_row)
            if warning:
                self.warned.add(i)
                who = f"member {i}: " if len(rows) > 1 else ""
                self._print(f"warning at env step {env_steps}: {who}{warning}")
        row = mean_row(rows)
        if self.bar is None:
            self._print(format_line(env_steps, self.total, row, row["train/env_steps_per_second"]))
            return
        self.bar.update(min(env_steps, self.total) - self.bar.n)
        self.bar.set_postfix(eval_return=f"{row['eval/episode_return']:.1f}",
                             sps=f"{row['train/env_steps_per_second']:.0f}")  # fmt: skip

    def _print(self, line: str) -> None:
        if self.bar is None:
            print(line, file=self.out, flush=True)
        else:
            self.bar.write(line, file=self.out)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def mean_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """The members' mean of each quantity (NaN members left out); one member's row as it is."""
    if len(rows) == 1:
        return rows[0]
    out = {}
    for k in rows[0]:
        vals = [r[k] for r in rows if math.isfinite(r[k])]
        out[k] = sum(vals) / len(vals) if vals else math.nan
    return out


def write_policies(pop, ts, env, writer: bool, members=None, best_at=None) -> None:
    """The policy files (mjx_tecrl.export) of `members` (default all): policy.npz, or with `best_at` (env steps,
    eval rows) policy_best.npz, the policy of the best evaluation so far. Every process gathers; 0 writes."""
    learner = pop.to_host(ts.learner)
    if not writer:
        return
    config = pop.plan.config
    for i in range(len(pop)) if members is None else members:
        info = {} if best_at is None else {"env_steps": best_at[0], "eval_return": best_at[1][i]["eval/episode_return"]}
        name = export.BEST_NAME if best_at else export.FILE_NAME
        path = export.policy_path(pop.plan.run_dir, i if pop.is_sweep else None, name)
        export.save(path, export.policy_arrays(config, env, pop.member(learner, i), i, pop.seed(i), info))


def checkpoint_meta(config: Config, env_steps: int, logs: list[MemberLog], evals_done: int, wall: float,
                    best_mean: float) -> dict[str, Any]:  # fmt: skip
    """What a checkpoint records beside the state (resume reads it back: `MemberLog.restore`)."""
    return {
        "env_steps": env_steps,
        "best_eval_return": max(m.best for m in logs),
        "evals_done": evals_done,
        "wall_time_s": wall,
        "best_mean_eval_return": best_mean,
        "config": config.to_dict(),
        "members": [{"best_eval_return": m.best, "diverged_at_env_step": m.diverged_at} for m in logs],
    }


def write_summaries(pop, logs: list[MemberLog], common: dict[str, Any], writer: bool, out) -> dict[str, Any]:
    """summary.json per member and of the run (a sweep's also sweep.csv, sweep.png and the table); returns the
    run's summary. `common`: what every member shares (env steps, timings, backend)."""
    run_dir = pop.plan.run_dir
    summaries = [
        {**common, "seed": pop.seed(i), "final_eval_return": m.last_return, "final_eval_return_last3": m.last_mean(3),
         "best_eval_return": m.best, "diverged_at_env_step": m.diverged_at,
         **({"member": i, "hyperparams": pop.members[i]["hyperparams"]} if pop.is_sweep else {})}
        for i, m in enumerate(logs)
    ]  # fmt: skip
    if writer:
        for i, s in enumerate(summaries):
            write_json(os.path.join(pop.metrics_dir(i), "summary.json"), s)
    if not pop.is_sweep:
        summary = {k: v for k, v in summaries[0].items() if k != "diverged_at_env_step"}
        if writer:
            write_json(os.path.join(run_dir, "summary.json"), summary)
        return summary
    sps = common["env_steps_per_second"]
    summary = {**common, "members": len(pop), "member_env_steps_per_second": sps,
               "env_steps_per_second": sps * len(pop)}  # fmt: skip
    rows = [{"member": i, "seed": s["seed"], **pop.hyperparams(i), "final_eval_return": s["final_eval_return"],
             "best_eval_return": s["best_eval_return"],
             "auc_eval_return": sweep_lib.area_under_curve(np.array(m.steps), np.array(m.returns)),
             "env_steps": s["env_steps"], "env_steps_per_second": sps,
             "diverged_at_env_step": "" if m.diverged_at is None else m.diverged_at}
            for i, (m, s) in enumerate(zip(logs, summaries, strict=True))]  # fmt: skip
    if writer:
        write_json(os.path.join(run_dir, "summary.json"), summary)
        sweep_lib.write_csv(os.path.join(run_dir, "sweep.csv"), rows)
        curves = [{"steps": m.steps, "returns": m.returns} for m in logs]
        try:
            sweep_lib.plot(os.path.join(run_dir, "sweep.png"), curves, rows, pop.plan.sweep.names)
        except ImportError:
            print("note: matplotlib is not installed, so sweep.png was not drawn", file=out)
    print(sweep_lib.group_table(rows, pop.plan.sweep.names), file=out)
    return summary


def run_totals(pop, ts, env_steps: int, timing: dict[str, float], interrupted: bool) -> dict[str, Any]:
    """What every member's summary shares."""
    config = pop.plan.config
    return {
        "env": config.env,
        "algo": config.algo,
        "env_steps": env_steps,
        "gradient_steps": pop.iteration(ts.learner.step),
        "updates_per_step": config.updates_per_iter / config.num_envs,  # as run (rounded to whole blocks)
        "wall_time_s": timing["wall"],
        "compile_time_s": timing["compile"],
        "train_time_s": timing["train"],
        "env_steps_per_second": timing["steps"] / max(timing["train"], 1e-9),
        "interrupted": interrupted,
        "backend": jax.default_backend(),
        "device_peak_bytes": memory.device_peak_bytes(),  # None on a CPU
    }
