"""The one host loop: resolve the run directory, compile, run chunks, evaluate, log, checkpoint.

Everything here is I/O at the edge; the compiled chunk (`loop.TrainFns.run_chunk`) never calls back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from mjx_tecrl import checkpoint
from mjx_tecrl.config import Config, ConfigError, make_config, validate
from mjx_tecrl.logging import RunLogger, format_line, write_json

# Flags that may differ from the saved config when resuming; anything else must match.
RESUMABLE_OVERRIDES = ("total_steps", "progress", "checkpoint_every", "checkpoint_buffer", "resume", "out")


class NonFiniteError(RuntimeError):
    """Training produced NaN or inf; the last good checkpoint is left as it was."""


@dataclass(frozen=True)
class RunPlan:
    config: Config
    run_dir: str
    resume: bool


def prepare(overrides: dict[str, Any]) -> RunPlan:
    """Resolve flags into a validated config and run directory. Raises ConfigError; writes nothing."""
    resume_dir = overrides.get("resume") or ""
    if resume_dir:
        cfg_path = os.path.join(resume_dir, "config.json")
        if not os.path.isfile(cfg_path):
            raise ConfigError(f"--resume {resume_dir!r} holds no run (no config.json)")
        try:
            checkpoint.load_meta(os.path.join(resume_dir, "checkpoints"))
        except checkpoint.CheckpointError as e:
            raise ConfigError(f"--resume {resume_dir!r}: {e}") from None
        try:
            with open(cfg_path) as f:
                saved = Config.from_dict(json.load(f))
        except ConfigError as e:
            raise ConfigError(f"--resume {resume_dir!r}: config.json: {e}") from None
        except (OSError, ValueError, TypeError, AttributeError) as e:  # not JSON, or not a config's fields
            raise ConfigError(f"--resume {resume_dir!r}: config.json is unreadable ({e})") from None
        for name, value in overrides.items():
            if name not in RESUMABLE_OVERRIDES and getattr(saved, name) != value:
                raise ConfigError(
                    f"--{name.replace('_', '-')} {value!r} differs from the resumed run's "
                    f"{getattr(saved, name)!r}; only {', '.join(RESUMABLE_OVERRIDES[:4])} may change"
                )
        out = overrides.get("out") or resume_dir
        if os.path.abspath(out) != os.path.abspath(resume_dir):
            raise ConfigError(f"--out {out!r} differs from --resume {resume_dir!r}")
        allowed = {k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES}
        config = dataclasses.replace(saved, **{**allowed, "out": resume_dir, "resume": resume_dir})
        _validate(config)
        return RunPlan(config, resume_dir, resume=True)

    config = make_config(**overrides)
    _validate(config)
    run_dir = config.out or os.path.join(
        "runs", f"{config.env}-{config.algo}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if os.path.exists(os.path.join(run_dir, "config.json")):
        raise ConfigError(f"--out {run_dir!r} already holds a run; use --resume {run_dir} or choose another --out")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ConfigError(f"--out {run_dir!r} exists and is not a directory")
    return RunPlan(dataclasses.replace(config, out=run_dir), run_dir, resume=False)


def _validate(config: Config) -> None:
    from mjx_tecrl.envs import registry

    validate(config, known_envs=registry.list_envs(), device_count=jax.local_device_count())


def device_description() -> str:
    devs = jax.local_devices()
    kinds = sorted({d.device_kind for d in devs})
    return f"JAX backend: {jax.default_backend()} ({len(devs)} device(s): {', '.join(kinds)})"


class _StopFlag:
    """SIGINT sets a flag; the loop saves a checkpoint after the current chunk and exits cleanly."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.stop:  # a second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self.stop = True
            print("\ninterrupt: saving a checkpoint after this chunk (Ctrl-C again to abort)", flush=True)

        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not in the main thread
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run(plan: RunPlan, out=sys.stdout) -> dict[str, Any]:
    """Train according to `plan`; returns the summary (also written to summary.json)."""
    from mjx_tecrl.envs import registry
    from mjx_tecrl.loop import make_train

    config, run_dir = plan.config, plan.run_dir
    print(device_description(), file=out, flush=True)
    if jax.default_backend() == "gpu" and config.num_envs < 1024:
        print(
            f"note: on a GPU use many more environments, e.g. --num-envs 4096 --batch-size 1024 "
            f"(now --num-envs {config.num_envs})",
            file=out,
        )
    os.makedirs(run_dir, exist_ok=True)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if not plan.resume:
        write_json(os.path.join(run_dir, "config.json"), config.to_dict())

    env = registry.make(config.env, physics=config.physics)
    fns = make_train(config, env)
    steps_per_chunk = fns.chunk_iters * config.num_envs
    t_start = time.time()
    ts = fns.init(jax.random.PRNGKey(config.seed))
    meta: dict[str, Any] = {"best_eval_return": -math.inf, "wall_time_s": 0.0, "has_buffer": True}
    if plan.resume:
        payload, saved_meta = checkpoint.load_meta(ckpt_dir)
        if saved_meta.get("has_buffer", True):
            restored, meta = checkpoint.restore(ckpt_dir, ts, payload)
        else:  # the buffer was not saved: keep the fresh empty one and warm it up again below
            partial, meta = checkpoint.restore(ckpt_dir, ts.replace(replay=None), payload)
            restored = partial.replace(replay=ts.replay)
        ts = jax.tree.map(jnp.array, restored)
        print(f"resumed {run_dir} at env step {meta['env_steps']}", file=out, flush=True)

    # Compile once, ahead of time: compile time is reported apart, and no chunk can retrace.
    t_compile = time.time()
    chunk_fn = jax.jit(fns.run_chunk, donate_argnums=0).lower(ts).compile()
    eval_fn = jax.jit(fns.evaluate).lower(ts.learner, jax.random.PRNGKey(0)).compile()
    need_warmup = (not plan.resume or not meta.get("has_buffer", True)) and fns.warmup_iters > 0
    warmup_fn = jax.jit(fns.warmup, donate_argnums=0).lower(ts).compile() if need_warmup else None
    compile_time = time.time() - t_compile
    print(f"compiled in {compile_time:.1f}s", file=out, flush=True)

    logger = RunLogger(run_dir)
    env_steps = int(ts.iteration) * config.num_envs
    if warmup_fn is not None:
        ts, _ = warmup_fn(ts)
        env_steps = int(ts.iteration) * config.num_envs
    eval_key = jax.random.PRNGKey(config.seed + 1_000_003)
    best = float(meta.get("best_eval_return", -math.inf))
    last_eval: dict[str, float] = {}
    train_time, prior_wall = 0.0, float(meta.get("wall_time_s", 0.0))
    evals_done = int(meta.get("evals_done", 0))
    loop_start_steps = env_steps
    bar = _progress_bar(config, env_steps, out)
    interrupted = False
    try:
        with _StopFlag() as stop:
            while env_steps < config.total_steps:
                t0 = time.time()
                ts, metrics = chunk_fn(ts)
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                chunk_time = time.time() - t0
                train_time += chunk_time
                env_steps = int(ts.iteration) * config.num_envs
                bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
                if bad:
                    raise NonFiniteError(
                        f"non-finite {', '.join(bad)} in the chunk ending at env step {env_steps}; "
                        f"the last good checkpoint in {ckpt_dir} is intact"
                    )
                evaluation = jax.device_get(eval_fn(ts.learner, jax.random.fold_in(eval_key, evals_done)))
                evals_done += 1
                last_eval = {k: float(v) for k, v in evaluation.items()}
                best = max(best, last_eval["eval/episode_return"])
                sps = steps_per_chunk / max(chunk_time, 1e-9)  # the chunk alone, evaluation excluded
                row = {**last_eval, **metrics, "train/env_steps_per_second": sps}
                logger.scalars(row, env_steps)
                logger.csv_row({"env_steps": env_steps, "wall_time_s": prior_wall + time.time() - t_start,
                                **row})  # fmt: skip
                _report(bar, out, env_steps, config.total_steps, row, steps_per_chunk)
                last_chunk = env_steps >= config.total_steps
                if stop.stop or last_chunk or (config.checkpoint_every and evals_done % config.checkpoint_every == 0):
                    meta = _meta(config, env_steps, best, evals_done, prior_wall + time.time() - t_start)
                    _save(ckpt_dir, ts, config, meta)
                if stop.stop:
                    interrupted = True
                    break
    finally:
        if bar is not None:
            bar.close()
        logger.close()

    wall = prior_wall + time.time() - t_start
    summary = {
        "env": config.env,
        "algo": config.algo,
        "seed": config.seed,
        "env_steps": env_steps,
        "gradient_steps": int(ts.learner.step),
        "final_eval_return": last_eval.get("eval/episode_return", math.nan),
        "best_eval_return": best,
        "wall_time_s": wall,
        "compile_time_s": compile_time,
        "train_time_s": train_time,
        "env_steps_per_second": (env_steps - loop_start_steps) / max(train_time, 1e-9),
        "interrupted": interrupted,
        "backend": jax.default_backend(),
    }
    write_json(os.path.join(run_dir, "summary.json"), summary)
    print(
        f"done: {env_steps} env steps, best eval return {best:.1f}, final {summary['final_eval_return']:.1f}, "
        f"{wall:.0f}s wall ({compile_time:.0f}s compile) -> {run_dir}",
        file=out,
        flush=True,
    )
    return summary


def _meta(config: Config, env_steps: int, best: float, evals_done: int, wall: float) -> dict[str, Any]:
    return {
        "env_steps": env_steps,
        "best_eval_return": best,
        "evals_done": evals_done,
        "wall_time_s": wall,
        "has_buffer": config.checkpoint_buffer,
        "config": config.to_dict(),
    }


def _save(ckpt_dir: str, ts, config: Config, meta: dict[str, Any]) -> None:
    state = ts if config.checkpoint_buffer else ts.replace(replay=None)
    checkpoint.save(ckpt_dir, state, meta)


def _progress_bar(config: Config, env_steps: int, out):
    if not (config.progress and hasattr(out, "isatty") and out.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=config.total_steps, initial=env_steps, unit="step", unit_scale=True, file=out)


def _report(bar, out, env_steps: int, total: int, row: dict[str, float], steps_per_chunk: int) -> None:
    if bar is None:
        print(format_line(env_steps, total, row, row["train/env_steps_per_second"]), file=out, flush=True)
        return
    bar.update(min(env_steps, total) - bar.n)
    bar.set_postfix(eval_return=f"{row['eval/episode_return']:.1f}", sps=f"{row['train/env_steps_per_second']:.0f}")
